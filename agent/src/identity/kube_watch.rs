//! The pod watch as a state machine, without I/O: what to request next (a list, or a watch
//! from a resource version), what each response and watch line does to the [`PodCache`], the
//! JSON-lines framing of the watch stream, and the reconnect backoff.
//! [`kube_client`](crate::identity::kube_client) does the HTTP.
//!
//! Like client-go's reflector: list, then watch from the list's `resourceVersion`, following
//! every event's; an expired version (410 Gone, as an `ERROR` event or as the response
//! status) forgets it, so the next request is a fresh list that replaces the cache.
use std::time::Duration;

use crate::identity::kube_api::{Pod, PodList, Status, WatchEvent};
use crate::identity::pod_cache::{PodCache, PodInfo};

/// The longest watch line accepted (a pod is a few KiB; a huge one means a broken stream).
pub const MAX_LINE: usize = 8 << 20;

/// Why a response or watch line could not be used; the caller reconnects after a backoff.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("undecodable {what}: {error}")]
    Decode { what: &'static str, error: String },
    #[error("watch line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("watch error event: {code} {reason}: {message}")]
    Status { code: u16, reason: String, message: String },
    #[error("unknown watch event type `{0}`")]
    UnknownEvent(String),
}

/// What to request next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    List,
    /// Watch from this resource version.
    Watch(String),
}

/// What a watch line asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// The resource version expired: end this watch and list again.
    Relist,
}

/// The watch's position in the pods' history.
#[derive(Clone, Debug, Default)]
pub struct PodWatch {
    resource_version: Option<String>,
}

fn decode<'a, T: serde::Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, WatchError> {
    serde_json::from_slice(bytes).map_err(|e| WatchError::Decode { what, error: e.to_string() })
}

impl PodWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next request: a list if there is no resource version to watch from.
    pub fn next_request(&self) -> Request {
        match &self.resource_version {
            Some(rv) => Request::Watch(rv.clone()),
            None => Request::List,
        }
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// A list response body: replaces the cache; the number of pods.
    pub fn on_list(&mut self, body: &[u8], cache: &PodCache) -> Result<usize, WatchError> {
        let list: PodList = decode("pod list", body)?;
        let pods: Vec<PodInfo> =
            list.items.into_iter().filter(|p| !p.metadata.uid.is_empty()).map(PodInfo::from).collect();
        let n = pods.len();
        cache.replace_all(pods);
        self.resource_version = list.metadata.resource_version.filter(|rv| !rv.is_empty());
        Ok(n)
    }

    /// A watch (or list) response with status 410 Gone: forget the version.
    pub fn on_gone(&mut self) {
        self.resource_version = None;
    }

    /// One line of the watch stream.
    pub fn on_line(&mut self, line: &[u8], cache: &PodCache) -> Result<Outcome, WatchError> {
        let event: WatchEvent = decode("watch event", line)?;
        let pod = |object: serde_json::Value| -> Result<Pod, WatchError> {
            serde_json::from_value(object)
                .map_err(|e| WatchError::Decode { what: "pod", error: e.to_string() })
        };
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let deleted = event.kind == "DELETED";
                let pod = pod(event.object)?;
                self.advance(pod.metadata.resource_version.clone());
                if pod.metadata.uid.is_empty() {
                    tracing::warn!(name = %pod.metadata.name, "pod watch: event for a pod without uid ignored");
                } else if deleted {
                    cache.remove(&pod.metadata.uid);
                } else {
                    cache.upsert(PodInfo::from(pod));
                }
                Ok(Outcome::Continue)
            }
            "BOOKMARK" => {
                self.advance(pod(event.object)?.metadata.resource_version);
                Ok(Outcome::Continue)
            }
            "ERROR" => {
                let status: Status = serde_json::from_value(event.object)
                    .map_err(|e| WatchError::Decode { what: "status", error: e.to_string() })?;
                if status.code == 410 {
                    self.on_gone();
                    return Ok(Outcome::Relist);
                }
                Err(WatchError::Status { code: status.code, reason: status.reason, message: status.message })
            }
            other => Err(WatchError::UnknownEvent(other.to_owned())),
        }
    }

    fn advance(&mut self, rv: Option<String>) {
        if let Some(rv) = rv.filter(|rv| !rv.is_empty()) {
            self.resource_version = Some(rv);
        }
    }
}

/// Splits a byte stream into lines (`\n`-terminated; blank lines dropped).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The complete lines `chunk` finishes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, WatchError> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.partial);
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            self.partial = Vec::new();
            return Err(WatchError::LineTooLong);
        }
        Ok(lines)
    }

    /// The unterminated last line, if the stream ended inside one.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let line = std::mem::take(&mut self.partial);
        (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
    }
}

/// Exponential reconnect backoff: doubles from `min` up to `max`, back to `min` on success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max: max.max(min), next: min }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
#[path = "kube_watch_tests.rs"]
mod tests;
