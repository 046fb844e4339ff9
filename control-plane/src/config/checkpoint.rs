//! `serve` flags of the signed audit checkpoints and where they go.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::{duration, http_url};
use ringfence_proto::s3::Location;

/// Checkpoint flags.
#[derive(Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// How often the audit chain's head is signed and sent to the sinks (at most 60s; also on
    /// every policy change).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub checkpoint_interval: String,
    /// Append checkpoints (one JSON line each) to this file; make it append-only
    /// (`chattr +a`) or ship it elsewhere.
    #[arg(long, value_name = "FILE")]
    pub checkpoint_file: Option<PathBuf>,
    /// Send checkpoints to this syslog server (RFC 5424 over UDP), HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub checkpoint_syslog: Option<String>,
    /// POST checkpoints (JSON) to this URL.
    #[arg(long, value_name = "URL")]
    pub checkpoint_webhook: Option<String>,
    /// Put checkpoints into this S3 bucket (s3://BUCKET/PREFIX) under Object Lock retention
    /// (the bucket must have Object Lock enabled; credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "S3URL")]
    pub checkpoint_s3: Option<String>,
    /// The S3 endpoint (default https://s3.REGION.amazonaws.com; MinIO: its URL).
    #[arg(long, value_name = "URL")]
    pub checkpoint_s3_endpoint: Option<String>,
    /// The S3 region.
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    pub checkpoint_s3_region: String,
    /// How long each checkpoint object is retained (locked).
    #[arg(long, default_value = "365d", value_name = "DURATION")]
    pub checkpoint_s3_retention: String,
    /// Object Lock mode: compliance (nobody can shorten it) or governance.
    #[arg(long, default_value = "compliance", value_parser = ["compliance", "governance"])]
    pub checkpoint_s3_mode: String,
}

/// Validated S3 sink settings.
#[derive(Clone, Debug)]
pub struct S3Sink {
    /// Bucket and prefix.
    pub location: Location,
    /// Endpoint.
    pub endpoint: url::Url,
    /// Region.
    pub region: String,
    /// Retention of each object.
    pub retention: Duration,
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
}

/// Validated checkpoint settings.
#[derive(Clone, Debug, Default)]
pub struct CheckpointConfig {
    /// Interval.
    pub interval: Duration,
    /// Append-only file.
    pub file: Option<PathBuf>,
    /// Syslog server.
    pub syslog: Option<SocketAddr>,
    /// Webhook.
    pub webhook: Option<url::Url>,
    /// S3 Object Lock.
    pub s3: Option<S3Sink>,
}

impl CheckpointArgs {
    /// Checks every flag, pushing each problem.
    pub fn validate(&self, errors: &mut Vec<String>) -> CheckpointConfig {
        let interval = duration(errors, "checkpoint-interval", &self.checkpoint_interval);
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&interval)
            && !errors.iter().any(|e| e.starts_with("--checkpoint-interval"))
        {
            errors.push(format!("--checkpoint-interval {}: between 1s and 60s", self.checkpoint_interval));
        }
        let syslog = self.checkpoint_syslog.as_ref().and_then(|s| {
            use std::net::ToSocketAddrs;
            let addr = s.to_socket_addrs().ok().and_then(|mut a| a.next());
            if addr.is_none() {
                errors
                    .push(format!("--checkpoint-syslog {s:?}: expected HOST:PORT of a syslog server (UDP)"));
            }
            addr
        });
        let webhook = http_url(errors, "checkpoint-webhook", &self.checkpoint_webhook);
        let retention = duration(errors, "checkpoint-s3-retention", &self.checkpoint_s3_retention);
        let s3 = self.checkpoint_s3.as_ref().and_then(|text| {
            let Some(location) = Location::parse(text) else {
                errors.push(format!("--checkpoint-s3 {text:?}: expected s3://BUCKET/PREFIX"));
                return None;
            };
            let default = format!("https://s3.{}.amazonaws.com", self.checkpoint_s3_region);
            let endpoint = http_url(
                errors,
                "checkpoint-s3-endpoint",
                &Some(self.checkpoint_s3_endpoint.clone().unwrap_or(default)),
            )?;
            Some(S3Sink {
                location,
                endpoint,
                region: self.checkpoint_s3_region.clone(),
                retention,
                mode: self.checkpoint_s3_mode.to_ascii_uppercase(),
            })
        });
        if let Some(file) = &self.checkpoint_file {
            if file.is_dir() || file.parent().is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
                errors.push(format!(
                    "--checkpoint-file {}: expected a file in an existing directory",
                    file.display()
                ));
            }
        }
        CheckpointConfig { interval, file: self.checkpoint_file.clone(), syslog, webhook, s3 }
    }
}
