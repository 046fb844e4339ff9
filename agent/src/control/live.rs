//! Upload of allow verdicts to the live flow view (`POST /v1/flows`): best effort. A batch is
//! sent once; if that fails its records are counted as dropped (the control plane hears the
//! count with the next batch) and nothing is retried, so a control-plane outage costs memory
//! bounded by [`crate::spool::live::LIVE_QUEUE`] and nothing else.

use std::sync::Arc;
use std::time::Duration;

use ringfence_proto::api::{Event, LiveFlowBatch};
use tokio::sync::watch;

use super::client::ControlClient;
use super::periodic::Quiet;
use super::upload::event_from_record;
use super::wait::{sleep, unless_stopped};
use crate::spool::LiveFlows;

/// Most flows per request (the control plane takes up to 1000).
const BATCH: usize = 1000;
/// How long records gather after the first one before a batch is sent.
const GATHER: Duration = Duration::from_millis(100);
/// The pause after a failed upload.
const AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Sends what is queued, a batch at a time; false if an upload failed.
async fn send_queued(client: &ControlClient, live: &LiveFlows, quiet: &mut Quiet) -> bool {
    loop {
        let (records, dropped) = live.take(BATCH);
        if records.is_empty() && dropped == 0 {
            return true;
        }
        let flows: Vec<Event> = records.iter().filter_map(event_from_record).collect();
        let n = flows.len() as u64;
        match client.live_flows(&LiveFlowBatch { flows, dropped }).await {
            Ok(_) => quiet.ok("live flow upload works again"),
            Err(e) => {
                live.count_dropped(n);
                // The drops this batch reported were not heard either.
                live.report_later(dropped);
                quiet.failed("live flow upload failed; allow verdicts are dropped (counted)", &e);
                return false;
            }
        }
    }
}

/// Uploads allow verdicts as they come, until shutdown.
pub(crate) async fn live_loop(
    client: &ControlClient,
    live: Arc<LiveFlows>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut quiet = Quiet::default();
    loop {
        if unless_stopped(&mut shutdown, live.notify.notified()).await.is_none() {
            return;
        }
        if !sleep(&mut shutdown, GATHER).await {
            return;
        }
        let sent = unless_stopped(&mut shutdown, send_queued(client, &live, &mut quiet)).await;
        match sent {
            None => return,
            Some(true) => {}
            Some(false) => {
                if !sleep(&mut shutdown, AFTER_FAILURE).await {
                    return;
                }
            }
        }
    }
}
