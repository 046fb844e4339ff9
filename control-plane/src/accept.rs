//! Accepting and serving connections: the connection limits, the TLS handshake (bounded), then
//! HTTP/1.1 with the verified client certificate and peer address attached to each request,
//! the idle timeout, and draining at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::auth::{PeerAddr, PeerIdentity};
use crate::conn::{ConnLimits, InFlight, Permit};
use crate::metrics::{inc, Metrics};

/// `--max-connections`, lowered to fit the open-file limit (with room for the database and
/// files).
pub fn connection_cap(wanted: usize) -> usize {
    const RESERVE: u64 = 256;
    match crate::conn::open_files_limit() {
        Some(limit) if (wanted as u64) + RESERVE > limit => {
            let cap = limit.saturating_sub(RESERVE).max(16) as usize;
            tracing::warn!(
                wanted,
                cap,
                open_files_limit = limit,
                "--max-connections is above what the open-file limit allows; raise LimitNOFILE (ulimit -n)"
            );
            cap
        }
        _ => wanted,
    }
}

/// The connection limits and timeouts.
pub struct Limits {
    pub conns: Arc<ConnLimits>,
    pub handshake: Duration,
    pub idle: Duration,
    pub metrics: Arc<Metrics>,
}

/// Accepts connections until shutdown, then drains them for at most `grace`.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    loop {
        let (stream, peer_addr) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = limits.conns.admit(peer_addr.ip()) else {
            inc(&limits.metrics.connections_refused);
            tracing::debug!(%peer_addr, "connection refused: connection limits reached and every connection busy");
            continue;
        };
        let (acceptor, router, limits) = (acceptor.clone(), router.clone(), limits.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            limits.metrics.connections.inc();
            serve_connection(stream, peer_addr, acceptor, router, &limits, permit, watcher).await;
            limits.metrics.connections.dec();
        });
    }
    drop(listener);
    tracing::info!(grace = ?grace, "shutting down: draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace time over; closing the remaining connections");
    }
}

/// One connection: the TLS handshake (bounded), then HTTP/1.1 until the client closes, the
/// connection stays idle too long, or a newer connection evicts it.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer_addr: SocketAddr,
    acceptor: TlsAcceptor,
    router: axum::Router,
    limits: &Limits,
    permit: Permit,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let activity = permit.activity.clone();
    let handshake = tokio::select! {
        done = tokio::time::timeout(limits.handshake, acceptor.accept(stream)) => done,
        _ = activity.evicted.notified() => return inc(&limits.metrics.connections_refused),
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::debug!(%peer_addr, error = %e, "TLS handshake failed"),
        Err(_) => {
            inc(&limits.metrics.connections_timed_out);
            return tracing::debug!(%peer_addr, "TLS handshake timed out");
        }
    };
    let peer =
        tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|der| crate::pki::parse_peer(der));
    let identity = match peer {
        Some(Ok(cert)) => PeerIdentity(Some(cert)),
        Some(Err(e)) => {
            tracing::warn!(%peer_addr, error = %e, "unreadable client certificate");
            PeerIdentity(None)
        }
        None => PeerIdentity(None),
    };
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(identity.clone());
        req.extensions_mut().insert(PeerAddr(peer_addr));
        let in_flight = InFlight::new(&requests);
        let response = router.clone().oneshot(req);
        async move {
            let r = response.await;
            drop(in_flight);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    let idle = limits.idle;
    let mut check = tokio::time::interval(idle / 4);
    loop {
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!(%peer_addr, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.evicted.notified() => return inc(&limits.metrics.connections_refused),
            _ = check.tick() => {
                if activity.idle_for().is_some_and(|d| d >= idle) {
                    inc(&limits.metrics.connections_timed_out);
                    return tracing::debug!(%peer_addr, "idle connection closed");
                }
            }
        }
    }
}
