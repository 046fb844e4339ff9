//! Group commit of agents' events: `POST /v1/events` requests that arrive while a write is under
//! way are stored together, in one transaction, by one writer task: one writer lock, one read of
//! the audit head, one commit (and, on PostgreSQL, one WAL flush) for all of them instead of one
//! each. The audit chain is exactly as it would be one request at a time: each stored event gets
//! its own record, chained in order after the head, in the same transaction as the events.
//!
//! A failed group fails every request in it (nothing of it is stored; agents resend).

use std::collections::HashSet;

use ringfence_proto::api::Event;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::db::{self, Db, DbError};

/// Events written in one group at most (requests are never split).
const MAX_GROUP_EVENTS: usize = 10_000;
/// Requests waiting for the writer at most (more wait to be queued).
const QUEUE: usize = 1024;

/// One request's events.
struct Job {
    node_id: String,
    events: Vec<Event>,
    received_ms: i64,
    reply: oneshot::Sender<Result<Stored, String>>,
}

/// What became of one request's events.
pub struct Stored {
    /// The events, as sent.
    pub events: Vec<Event>,
    /// Per event: stored now (the first occurrence of an id not stored before).
    pub fresh: Vec<bool>,
}

/// Why a request's events were not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The group's transaction failed.
    #[error("database error: {0}")]
    Db(String),
    /// The writer is gone (shutting down).
    #[error("the event writer stopped")]
    Stopped,
}

/// The handle handlers store events through.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

impl Ingest {
    /// Starts the writer task on `db`.
    pub fn start(db: Db) -> Ingest {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(db, rx));
        Ingest { tx }
    }

    /// Stores `events` of `node_id` (each (node, id) once) with their audit records; returns
    /// which were stored now.
    pub async fn store(
        &self,
        node_id: &str,
        events: Vec<Event>,
        received_ms: i64,
    ) -> Result<Stored, IngestError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { node_id: node_id.to_owned(), events, received_ms, reply };
        self.tx.send(job).await.map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?.map_err(IngestError::Db)
    }
}

/// Takes what is queued (at least one request), writes it as one group, answers each request.
async fn writer(db: Db, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        match write(&db, &jobs).await {
            Ok(fresh) => {
                for (job, fresh) in jobs.into_iter().zip(fresh) {
                    let _ = job.reply.send(Ok(Stored { events: job.events, fresh }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = jobs.len(), events = n, "storing a group of events failed");
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Per event of `events`: whether it is the first occurrence of an id in `new_ids`.
fn first_occurrences(events: &[Event], mut new_ids: HashSet<String>) -> Vec<bool> {
    events.iter().map(|e| new_ids.remove(&e.id)).collect()
}

/// One transaction: every request's events, then one audit record per stored event.
async fn write(db: &Db, jobs: &[Job]) -> Result<Vec<Vec<bool>>, DbError> {
    let mut tx = db.begin().await?;
    let mut out = Vec::with_capacity(jobs.len());
    let mut entries = Vec::new();
    for job in jobs {
        let new_ids = db::events::insert_many(&mut tx, &job.node_id, &job.events, job.received_ms).await?;
        let fresh = first_occurrences(&job.events, new_ids);
        let actor = format!("node:{}", job.node_id);
        for (e, _) in job.events.iter().zip(&fresh).filter(|(_, f)| **f) {
            let summary = json!({"node_id": job.node_id, "id": e.id, "kind": e.kind, "severity": e.severity, "summary": e.summary});
            entries.push((actor.clone(), summary));
        }
        out.push(fresh);
    }
    db::audit::append_entries(&mut tx, "alert", entries).await?;
    tx.commit().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_occurrence_of_a_new_id_is_fresh() {
        let event = |id: &str| Event {
            id: id.into(),
            kind: "deny".into(),
            time_ms: 0,
            severity: "warning".into(),
            summary: String::new(),
            details: serde_json::Value::Null,
        };
        let events = [event("a"), event("b"), event("a"), event("c")];
        let new: HashSet<String> = ["a".to_owned(), "c".to_owned()].into();
        assert_eq!(first_occurrences(&events, new), [true, false, false, true]);
    }
}
