//! A small S3 client for audit checkpoints: AWS Signature Version 4 (signed here with HMAC-SHA256),
//! path-style URLs (AWS S3, MinIO and other S3 servers), and only what checkpoints need: put an
//! object under Object Lock retention, list object versions, get one, delete one (which a lock
//! refuses), create a bucket with Object Lock (for setting up and for tests).
//!
//! Requests are signed by [`sigv4`] (a leaf). Credentials come from the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! optionally `AWS_SESSION_TOKEN`.

use std::time::{Duration, SystemTime};

mod sigv4;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};

pub use sigv4::{amz_date, authorization};
use sigv4::{hex_sha256, uri_encode};

/// Access to one S3 endpoint.
#[derive(Clone)]
pub struct S3 {
    endpoint: url::Url,
    region: String,
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
    http: reqwest::Client,
}

/// `s3://bucket/prefix`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (may be empty).
    pub prefix: String,
}

impl Location {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Option<Location> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        ok.then(|| Location { bucket: bucket.into(), prefix: prefix.into() })
    }
}

/// The text between `<tag>` and `</tag>` of each occurrence in `xml`.
pub fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

impl S3 {
    /// A client for `endpoint` (e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO URL) with
    /// credentials from the environment.
    pub fn from_env(endpoint: &url::Url, region: &str) -> Result<S3, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(access_key), Some(secret_key)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
        };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| format!("S3 client: {e}"))?;
        Ok(S3 {
            endpoint: endpoint.clone(),
            region: region.into(),
            access_key,
            secret_key,
            session_token: var("AWS_SESSION_TOKEN"),
            http,
        })
    }

    /// Sends a signed request to `/bucket/key`.
    pub async fn send(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
        extra: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, String> {
        let path = if key.is_empty() { format!("/{bucket}") } else { format!("/{bucket}/{key}") };
        let host = match self.endpoint.port() {
            Some(p) => format!("{}:{p}", self.endpoint.host_str().unwrap_or_default()),
            None => self.endpoint.host_str().unwrap_or_default().to_owned(),
        };
        let payload_hash = hex_sha256(&body);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-date".into(), amz_date(SystemTime::now())),
            ("x-amz-content-sha256".into(), payload_hash.clone()),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        headers.extend(extra.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
        let query: Vec<(String, String)> =
            query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let auth = authorization(
            &self.access_key,
            &self.secret_key,
            &self.region,
            method.as_str(),
            &path,
            &query,
            &headers,
            &payload_hash,
        );
        let mut url = self.endpoint.clone();
        url.set_path(&uri_encode(&path, true));
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    uri_encode(k, false)
                } else {
                    format!("{}={}", uri_encode(k, false), uri_encode(v, false))
                }
            })
            .collect();
        url.set_query((!qs.is_empty()).then(|| qs.join("&")).as_deref());
        let mut request = self.http.request(method, url).header("authorization", auth).body(body);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            request = request.header(k.as_str(), v.as_str());
        }
        request.send().await.map_err(|e| format!("S3 {}: {e}", self.endpoint))
    }

    async fn expect_ok(
        response: Result<reqwest::Response, String>,
        what: &str,
    ) -> Result<reqwest::Response, String> {
        let response = response?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let code = xml_values(&body, "Code").first().map(|c| c.to_string()).unwrap_or_default();
        Err(format!("S3 {what}: {status} {code}"))
    }

    /// Creates a bucket with Object Lock (and so versioning) enabled.
    pub async fn create_locked_bucket(&self, bucket: &str) -> Result<(), String> {
        let lock = [("x-amz-bucket-object-lock-enabled", "true".to_owned())];
        Self::expect_ok(self.send(Method::PUT, bucket, "", &[], &lock, Vec::new()).await, "create bucket")
            .await?;
        Ok(())
    }

    /// Puts an object retained until `until` in `mode` (`COMPLIANCE` or `GOVERNANCE`).
    pub async fn put_locked(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        mode: &str,
        until: SystemTime,
    ) -> Result<(), String> {
        let md5 = STANDARD.encode(Md5::digest(&body));
        let headers = [
            ("content-md5", md5),
            ("content-type", "application/json".to_owned()),
            ("x-amz-object-lock-mode", mode.to_owned()),
            ("x-amz-object-lock-retain-until-date", humantime::format_rfc3339_seconds(until).to_string()),
        ];
        Self::expect_ok(self.send(Method::PUT, bucket, key, &[], &headers, body).await, "put object").await?;
        Ok(())
    }

    /// Up to `max` (key, version id) under `prefix`, in key order.
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, String)>, String> {
        let max = max.to_string();
        let query = [("versions", ""), ("prefix", prefix), ("max-keys", max.as_str())];
        let response = Self::expect_ok(
            self.send(Method::GET, bucket, "", &query, &[], Vec::new()).await,
            "list versions",
        )
        .await?;
        let xml = response.text().await.map_err(|e| format!("S3 list versions: {e}"))?;
        Ok(xml_values(&xml, "Version")
            .into_iter()
            .filter_map(|v| {
                Some((
                    xml_values(v, "Key").first()?.to_string(),
                    xml_values(v, "VersionId").first()?.to_string(),
                ))
            })
            .collect())
    }

    /// One object (a version of it, if given).
    pub async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, String> {
        let query: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let response =
            Self::expect_ok(self.send(Method::GET, bucket, key, &query, &[], Vec::new()).await, "get object")
                .await?;
        response.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("S3 get object: {e}"))
    }

    /// Tries to delete one version; the status the server answered.
    pub async fn delete_version(&self, bucket: &str, key: &str, version: &str) -> Result<StatusCode, String> {
        let response =
            self.send(Method::DELETE, bucket, key, &[("versionId", version)], &[], Vec::new()).await?;
        Ok(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_dates_and_xml() {
        assert_eq!(
            Location::parse("s3://audit-bucket/ringfence/"),
            Some(Location { bucket: "audit-bucket".into(), prefix: "ringfence/".into() })
        );
        assert_eq!(Location::parse("s3://b"), None);
        assert_eq!(Location::parse("https://x"), None);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
        let xml = "<R><Version><Key>a</Key><VersionId>1</VersionId></Version><Version><Key>b</Key><VersionId>2</VersionId></Version></R>";
        assert_eq!(xml_values(xml, "Key"), ["a", "b"]);
    }
}
