//! `ringfence audit verify|export`: both stream the log (constant memory however long it is).
//! Verification recomputes the chain here (the server's own verdict is not trusted) and, with
//! checkpoints, compares the log with the newest signed checkpoint it can find.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use ringfence_proto::{AuditRecord, ChainVerifier, Checkpoint};

use ringfence_proto::s3::{Location, S3};

use crate::client::{ApiClient, CliError};
use crate::commands::{AuditCommand, ServerArgs};
use crate::output::time_text;

/// Runs an audit command.
pub async fn run(args: &ServerArgs, command: AuditCommand, out: &mut impl Write) -> Result<(), CliError> {
    match command {
        AuditCommand::Export { output } => {
            let response = ApiClient::new(args)?.get_stream("/v1/audit").await?;
            let mut stream = response.bytes_stream();
            let mut sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::fs::File::create(path).map_err(|e| CliError::Input {
                    path: path.clone(),
                    reason: format!("cannot write: {e}"),
                })?),
                None => Box::new(&mut *out),
            };
            while let Some(chunk) = stream.next().await {
                sink.write_all(&chunk.map_err(|e| CliError::Protocol(e.to_string()))?)?;
            }
            sink.flush()?;
        }
        AuditCommand::Verify { file, checkpoint, checkpoint_key, s3_endpoint, s3_region } => {
            let newest = if checkpoint.is_empty() {
                None
            } else {
                let key = read_key(&checkpoint_key)?;
                let s3 = S3Options { endpoint: s3_endpoint, region: s3_region };
                Some(newest_checkpoint(&checkpoint, &key, &s3).await?)
            };
            let want = newest.as_ref().map(|c| c.seq);
            let mut check = Check { verifier: ChainVerifier::default(), want, found: None, line: 0 };
            match &file {
                Some(path) => {
                    let f = std::fs::File::open(path)
                        .map_err(|e| CliError::Input { path: path.clone(), reason: e.to_string() })?;
                    for line in std::io::BufRead::lines(std::io::BufReader::new(f)) {
                        check.line(&line?)?;
                    }
                }
                None => {
                    let response = ApiClient::new(args)?.get_stream("/v1/audit").await?;
                    let mut stream = response.bytes_stream();
                    let mut pending = Vec::new();
                    while let Some(chunk) = stream.next().await {
                        pending.extend_from_slice(&chunk.map_err(|e| CliError::Protocol(e.to_string()))?);
                        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=i).collect();
                            check.line(&String::from_utf8_lossy(&line))?;
                        }
                    }
                    check.line(&String::from_utf8_lossy(&pending))?;
                }
            }
            let n = check.verifier.count();
            match newest {
                None => writeln!(out, "audit log ok: {n} records, hash chain intact")?,
                Some(c) => {
                    compare(&c, n, check.found.as_deref())?;
                    writeln!(
                        out,
                        "audit log ok: {n} records, hash chain intact, matches the checkpoint of record {} signed {}",
                        c.seq,
                        time_text(c.time_ms)
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Streaming state of a verification.
pub(crate) struct Check {
    verifier: ChainVerifier,
    /// The checkpoint's seq, whose hash is kept.
    want: Option<u64>,
    found: Option<String>,
    line: usize,
}

impl Check {
    /// A check of a chain segment starting at record `first_seq` (linked to `prev_hash`) that
    /// keeps the hash of record `want`.
    pub(crate) fn resumed(first_seq: u64, prev_hash: &str, want: u64) -> Check {
        Check {
            verifier: ChainVerifier::resume(first_seq, prev_hash),
            want: Some(want),
            found: None,
            line: 0,
        }
    }

    /// Records up to the last checked (from seq 1).
    pub(crate) fn count(&self) -> u64 {
        self.verifier.count()
    }

    /// The hash of record `want`, once checked.
    pub(crate) fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// Checks one JSON line.
    pub(crate) fn line(&mut self, text: &str) -> Result<(), CliError> {
        self.line += 1;
        if text.trim().is_empty() {
            return Ok(());
        }
        let record: AuditRecord = serde_json::from_str(text)
            .map_err(|e| CliError::Protocol(format!("audit line {}: {e}", self.line)))?;
        self.verifier
            .push(&record)
            .map_err(|e| CliError::AuditBroken { seq: e.seq(), reason: e.to_string() })?;
        if Some(record.seq) == self.want {
            self.found = Some(record.hash);
        }
        Ok(())
    }
}

/// The log against the checkpoint: long enough, and the same record at the checkpoint's seq.
pub(crate) fn compare(c: &Checkpoint, records: u64, found: Option<&str>) -> Result<(), CliError> {
    let signed = time_text(c.time_ms);
    if records < c.seq {
        return Err(CliError::AuditBroken {
            seq: records + 1,
            reason: format!(
                "the log ends at record {records} but the checkpoint signed {signed} covers {} records: records {}..={} were deleted, or the database was rolled back",
                c.seq,
                records + 1,
                c.seq
            ),
        });
    }
    let matches = if c.seq == 0 { true } else { found == Some(c.hash.as_str()) };
    if !matches {
        return Err(CliError::AuditBroken {
            seq: c.seq,
            reason: format!(
                "record {} differs from the checkpoint signed {signed}: the chain was rewritten and rehashed, or the database was rolled back and written again",
                c.seq
            ),
        });
    }
    Ok(())
}

fn read_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input { path: path.into(), reason: e.to_string() })?;
    ringfence_proto::parse_public_key(&text).map_err(|e| CliError::Input {
        path: path.into(),
        reason: format!("not a checkpoint public key: {e}"),
    })
}

struct S3Options {
    endpoint: Option<String>,
    region: String,
}

/// Every checkpoint text of one source.
async fn fetch(source: &str, s3: &S3Options) -> Result<Vec<String>, CliError> {
    let bad = |reason: String| CliError::Usage(format!("--checkpoint {source}: {reason}"));
    if let Some(location) = Location::parse(source) {
        let default = format!("https://s3.{}.amazonaws.com", s3.region);
        let endpoint =
            url::Url::parse(s3.endpoint.as_deref().unwrap_or(&default)).map_err(|e| bad(e.to_string()))?;
        let client = S3::from_env(&endpoint, &s3.region).map_err(bad)?;
        // Newest keys first (inverted times); every version of each, so an overwrite cannot hide one.
        let versions = client.list_versions(&location.bucket, &location.prefix, 50).await.map_err(bad)?;
        let mut out = Vec::new();
        for (key, version) in versions {
            let body = client.get(&location.bucket, &key, Some(&version)).await.map_err(bad)?;
            out.push(String::from_utf8_lossy(&body).into_owned());
        }
        return Ok(out);
    }
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let response = reqwest::get(source).await.map_err(|e| bad(e.to_string()))?;
        if !response.status().is_success() {
            return Err(bad(format!("HTTP {}", response.status())));
        }
        response.text().await.map_err(|e| bad(e.to_string()))?
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| CliError::Input { path: source.into(), reason: e.to_string() })?
    };
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect())
}

/// The newest checkpoint (highest seq, then newest) of all sources that verifies with `key`.
async fn newest_checkpoint(
    sources: &[String],
    key: &ed25519_dalek::VerifyingKey,
    s3: &S3Options,
) -> Result<Checkpoint, CliError> {
    let mut best: Option<Checkpoint> = None;
    let mut refused = 0;
    for source in sources {
        for text in fetch(source, s3).await? {
            match Checkpoint::parse_verified(&text, key) {
                Ok(c) => {
                    if best.as_ref().is_none_or(|b| (c.seq, c.time_ms) > (b.seq, b.time_ms)) {
                        best = Some(c);
                    }
                }
                Err(e) => {
                    refused += 1;
                    eprintln!("warning: {source}: checkpoint ignored: {e}");
                }
            }
        }
    }
    best.ok_or_else(|| {
        CliError::Usage(format!("no valid checkpoint found in {} ({refused} refused)", sources.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            out.push(AuditRecord::next(prev, i as i64, "admin", "x", serde_json::json!({"i": i})));
        }
        out
    }

    fn checked(records: &[AuditRecord], want: u64) -> Result<(u64, Option<String>), CliError> {
        let mut check = Check { verifier: ChainVerifier::default(), want: Some(want), found: None, line: 0 };
        for r in records {
            check.line(&serde_json::to_string(r).unwrap())?;
        }
        Ok((check.verifier.count(), check.found))
    }

    #[test]
    fn tail_deletion_rehash_and_rollback_are_caught() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let records = chain(5);
        let c = Checkpoint::sign(5, &records[4].hash, 1, "interval", &key);
        let (n, found) = checked(&records, 5).unwrap();
        assert!(compare(&c, n, found.as_deref()).is_ok());
        // Tail deleted: the chain itself is intact.
        let (n, found) = checked(&records[..3], 5).unwrap();
        let e = compare(&c, n, found.as_deref()).unwrap_err();
        assert!(
            matches!(&e, CliError::AuditBroken { seq: 4, reason } if reason.contains("were deleted")),
            "{e}"
        );
        // Rehashed: record 2 edited and every hash after it recomputed.
        let mut rehashed = chain(1);
        for i in 1..6 {
            let prev = rehashed.last().map(|r| (r.seq, r.hash.as_str()));
            rehashed.push(AuditRecord::next(
                prev,
                i,
                "admin",
                "x",
                serde_json::json!({"i": i, "forged": true}),
            ));
        }
        let (n, found) = checked(&rehashed, 5).unwrap();
        let e = compare(&c, n, found.as_deref()).unwrap_err();
        assert!(
            matches!(&e, CliError::AuditBroken { seq: 5, reason } if reason.contains("rewritten")),
            "{e}"
        );
        // An edit that was not rehashed is a chain break, as before.
        let mut edited = chain(5);
        edited[1].actor = "someone".into();
        assert!(matches!(checked(&edited, 5), Err(CliError::AuditBroken { seq: 2, .. })));
    }
}
