//! Reading `/metrics`: the text, one series' value.

use reqwest::Client;

use super::server::TestServer;

/// The value of `series` (its name, with labels if any, exactly) in an exposition text.
pub fn try_metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{series} "))).and_then(|v| v.trim().parse().ok())
}

/// [`try_metric`], panicking when the series is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    try_metric(text, series).unwrap_or_else(|| panic!("{series} in {text}"))
}

/// `GET {base}/metrics` with `client`.
pub async fn scrape(client: &Client, base: &str) -> String {
    client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()
}

impl TestServer {
    /// This server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        scrape(&self.anonymous(), &self.base).await
    }
}
