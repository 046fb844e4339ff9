//! Waiting that gives way to shutdown: the loops of [`run_sync`](super::sync::run_sync) stop
//! as soon as `shutdown` turns true (or its sender is dropped).
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Waits for shutdown (true, or the sender gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `fut`'s output, or `None` if shutdown comes first.
pub(crate) async fn unless_stopped<T>(
    shutdown: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stopped(shutdown) => None,
        value = fut => Some(value),
    }
}

/// Sleeps `d`; false if shutdown came first.
pub(crate) async fn sleep(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    unless_stopped(shutdown, tokio::time::sleep(d)).await.is_some()
}
