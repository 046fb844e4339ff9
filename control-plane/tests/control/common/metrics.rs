//! Reading `/metrics`: one series' value, and waiting (with a deadline) until a counter reaches
//! a value, so a test can wait for evidence that the server did something instead of sleeping.

use std::time::{Duration, Instant};

use reqwest::Client;

use super::server::TestServer;

/// How long [`wait_for_metric`] waits by default.
pub const METRIC_WAIT: Duration = Duration::from_secs(15);

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

/// Scrapes until `series` is at least `at_least`; returns that text. Panics after `timeout`
/// with the last text.
pub async fn wait_for_metric(
    client: &Client,
    base: &str,
    series: &str,
    at_least: f64,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = scrape(client, base).await;
        if try_metric(&text, series).is_some_and(|v| v >= at_least) {
            return text;
        }
        assert!(Instant::now() < deadline, "{series} did not reach {at_least} in {timeout:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestServer {
    /// This server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        scrape(&self.anonymous(), &self.base).await
    }

    /// Waits until `series` is at least `at_least` (see [`wait_for_metric`]).
    pub async fn wait_for_metric(&self, series: &str, at_least: f64) -> String {
        wait_for_metric(&self.anonymous(), &self.base, series, at_least, METRIC_WAIT).await
    }
}
