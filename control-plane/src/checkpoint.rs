//! The checkpointer: signs the audit chain's head ([`Checkpoint`]) every `--checkpoint-interval`
//! (at most a minute), on every policy change and at start, and sends it to every configured
//! sink: an append-only file, syslog, a webhook, S3 with Object Lock. A failed delivery is retried
//! at the next checkpoint (the newest checkpoint covers everything before it) and counted.
//!
//! The newest checkpoint is also kept in the state directory: at start, a database whose chain
//! no longer contains it (rolled back, cut, rewritten) is reported at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use ringfence_proto::{Checkpoint, GENESIS_HASH};
use tokio::sync::{watch, Notify};

use crate::config::{CheckpointConfig, S3Sink};
use crate::db::{self, Db, DbError};
use crate::metrics::{inc, Metrics};
use ringfence_proto::s3::S3;

/// The newest checkpoint, in the state directory.
pub const LAST_CHECKPOINT: &str = "audit-checkpoint.last";

/// Asks the checkpointer for a checkpoint now (after a policy change, for an evidence export),
/// with the reason it will carry.
#[derive(Clone, Default)]
pub struct CheckpointTrigger(Arc<Notify>, Arc<std::sync::Mutex<Option<&'static str>>>);

impl CheckpointTrigger {
    /// A checkpoint as soon as possible, after a policy change.
    pub fn now(&self) {
        self.now_for("policy-change");
    }

    /// A checkpoint as soon as possible, for `reason`.
    pub fn now_for(&self, reason: &'static str) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.0.notify_one();
    }

    fn reason(&self) -> &'static str {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or("policy-change")
    }
}

/// The key, the sinks, and where the last checkpoint is kept.
pub struct Checkpointer {
    key: SigningKey,
    config: CheckpointConfig,
    s3: Option<(S3, S3Sink)>,
    http: reqwest::Client,
    db: Db,
    metrics: Arc<Metrics>,
    last_path: PathBuf,
}

impl Checkpointer {
    /// Prepares the sinks (S3 credentials are read here).
    pub fn new(
        key: SigningKey,
        config: CheckpointConfig,
        db: Db,
        metrics: Arc<Metrics>,
        state_dir: &std::path::Path,
    ) -> Result<Checkpointer, String> {
        let s3 = match &config.s3 {
            Some(sink) => Some((S3::from_env(&sink.endpoint, &sink.region)?, sink.clone())),
            None => None,
        };
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        if config.file.is_none() && config.syslog.is_none() && config.webhook.is_none() && s3.is_none() {
            tracing::warn!("no audit checkpoint sink (--checkpoint-file, -syslog, -webhook, -s3): the audit log cannot prove that its newest records were not deleted");
        }
        Ok(Checkpointer { key, config, s3, http, db, metrics, last_path: state_dir.join(LAST_CHECKPOINT) })
    }

    /// Runs until shutdown: a checkpoint at start, every interval and when triggered.
    pub async fn run(self, trigger: CheckpointTrigger, mut shutdown: watch::Receiver<bool>) {
        self.check_against_last().await;
        let mut reason = "start";
        loop {
            if let Err(e) = self.checkpoint(reason).await {
                tracing::error!(error = %e, "audit checkpoint failed");
                inc(&self.metrics.checkpoints_failed);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.config.interval) => reason = "interval",
                _ = trigger.0.notified() => reason = trigger.reason(),
            }
        }
    }

    /// Signs the head now and sends it everywhere.
    pub async fn checkpoint(&self, reason: &str) -> Result<Checkpoint, String> {
        let head = db::audit::head(self.db.pool()).await.map_err(|e| e.to_string())?;
        let (seq, hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        let checkpoint = Checkpoint::sign(seq, &hash, ringfence_proto::now_ms(), reason, &self.key);
        let line = serde_json::to_string(&checkpoint).expect("checkpoint serializes");
        let mut failures = Vec::new();
        for (sink, result) in self.deliver(&checkpoint, &line).await {
            match result {
                Ok(()) => inc(&self.metrics.checkpoints_sent),
                Err(e) => {
                    inc(&self.metrics.checkpoints_failed);
                    failures.push(format!("{sink}: {e}"));
                }
            }
        }
        if let Err(e) = std::fs::write(&self.last_path, format!("{line}\n")) {
            failures.push(format!("{}: {e}", self.last_path.display()));
        }
        tracing::debug!(seq, reason, "audit checkpoint signed");
        if failures.is_empty() {
            Ok(checkpoint)
        } else {
            Err(format!("checkpoint of record {seq} not delivered everywhere: {}", failures.join("; ")))
        }
    }

    async fn deliver(&self, c: &Checkpoint, line: &str) -> Vec<(&'static str, Result<(), String>)> {
        let mut out = Vec::new();
        if let Some(path) = &self.config.file {
            out.push(("file", append_line(path, line)));
        }
        if let Some(addr) = self.config.syslog {
            out.push(("syslog", send_syslog(addr, line).await));
        }
        if let Some(url) = &self.config.webhook {
            let sent = self
                .http
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(line.to_owned())
                .send()
                .await;
            let result = match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            out.push(("webhook", result));
        }
        if let Some((s3, sink)) = &self.s3 {
            let key = object_key(&sink.location.prefix, c);
            let until = SystemTime::now() + sink.retention;
            out.push((
                "s3",
                s3.put_locked(&sink.location.bucket, &key, line.as_bytes().to_vec(), &sink.mode, until).await,
            ));
        }
        out
    }

    /// Reports a database that no longer holds the last checkpoint's head.
    async fn check_against_last(&self) {
        let Ok(text) = std::fs::read_to_string(&self.last_path) else { return };
        let Ok(last) = Checkpoint::parse_verified(&text, &self.key.verifying_key()) else {
            return tracing::warn!(path = %self.last_path.display(), "the last audit checkpoint does not verify; ignoring it");
        };
        match record_hash(&self.db, last.seq).await {
            Ok(Some(hash)) if hash == last.hash => {}
            Ok(found) => {
                inc(&self.metrics.checkpoint_mismatch);
                tracing::error!(seq = last.seq, signed_ms = last.time_ms, found = ?found,
                    "AUDIT LOG DOES NOT MATCH ITS LAST CHECKPOINT: records were deleted, rewritten or the database was rolled back (run `ringfence audit verify --checkpoint`)");
            }
            Err(e) => tracing::warn!(error = %e, "could not compare the audit log with its last checkpoint"),
        }
    }
}

/// The hash of record `seq` (`None` if it is missing; seq 0 is the genesis).
async fn record_hash(db: &Db, seq: u64) -> Result<Option<String>, DbError> {
    if seq == 0 {
        return Ok(Some(GENESIS_HASH.to_owned()));
    }
    let page = db::audit::page(db.pool(), seq - 1, 1).await?;
    Ok(page.into_iter().find(|r| r.seq == seq).map(|r| r.hash))
}

/// `PREFIX<inverted time>-<seq>.json`: newest first in a listing.
pub fn object_key(prefix: &str, c: &Checkpoint) -> String {
    format!("{prefix}{:020}-{:020}.json", u64::MAX - c.time_ms.max(0) as u64, c.seq)
}

fn append_line(path: &std::path::Path, line: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
    f.write_all(format!("{line}\n").as_bytes()).and_then(|()| f.sync_data()).map_err(|e| e.to_string())
}

async fn send_syslog(addr: SocketAddr, line: &str) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
    let host =
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "-".into());
    let time = humantime::format_rfc3339_millis(SystemTime::now());
    // local0.notice
    let message = format!("<133>1 {time} {host} ringfence-control - audit-checkpoint - {line}");
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.send_to(message.as_bytes(), addr).await.map(|_| ()).map_err(|e| e.to_string())
}
