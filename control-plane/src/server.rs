//! Running the control plane: open the state directory and the database, bind, accept TLS
//! connections (each request carries the connection's verified client certificate), and on
//! shutdown stop accepting, wake long-polls and drain within the grace time.

use std::future::Future;
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
use crate::api::{self, AppState};
use crate::checkpoint::{CheckpointTrigger, Checkpointer};
use crate::config::Config;
use crate::conn::{ConnLimits, InFlight, Permit};
use crate::db::{Db, DbError};
use crate::forward::{Forwarder, Sinks};
use crate::hub::Hub;
use crate::limits::{LongPolls, RateLimiter};
use crate::metrics::inc;
use crate::metrics::Metrics;
use crate::state_dir::{self, StateError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state directory.
    #[error("state directory: {0}")]
    State(#[from] StateError),
    /// The database.
    #[error("cannot open the database {url}: {source} (check --db; for PostgreSQL, that the server is up and the database exists)")]
    Db {
        /// The URL, without its password.
        url: String,
        /// What failed.
        #[source]
        source: DbError,
    },
    /// A checkpoint sink.
    #[error("audit checkpoints: {0}")]
    Checkpoint(String),
    /// TLS setup.
    #[error("TLS setup: {0}")]
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// Binding the listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// A started server.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The admin credential file.
    pub admin_token_path: std::path::PathBuf,
    /// The CA certificate file.
    pub ca_path: std::path::PathBuf,
    /// Storage (tests reach behind the server's back through it).
    pub db: Db,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, wakes long-polls, drains, and waits until done.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops after `shutdown` fires.
    pub async fn wait_for(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop().await;
    }
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Opens everything and starts serving in the background.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    let state = state_dir::load_or_create(&config.state_dir)?;
    tracing::info!(path = %state.admin_token_path.display(), "admin credential (send as `Authorization: Bearer`)");
    let db_error = |source| ServeError::Db { url: redact(&config.db_url), source };
    let db = Db::connect(&config.db_url).await.map_err(db_error)?;
    let hub = Hub::new(db.clone()).await.map_err(db_error)?;
    let tls = crate::tls::server_config(&state.ca, &config.sans).map_err(ServeError::Tls)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let sinks = Sinks {
        alertmanager: config.alertmanager_url.clone(),
        webhook: config.webhook_url.clone(),
        syslog: config.syslog,
    };
    let fleet = &config.fleet;
    let trigger = CheckpointTrigger::default();
    let checkpointer = Checkpointer::new(
        state.checkpoint_key.clone(),
        config.checkpoints.clone(),
        db.clone(),
        metrics.clone(),
        &config.state_dir,
    )
    .map_err(ServeError::Checkpoint)?;
    let app = Arc::new(AppState {
        db: db.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        forwarder: Forwarder::start(sinks, metrics.clone()),
        ca: Arc::new(state.ca),
        signing_key: state.signing_key,
        admin_token: state.admin_token,
        cert_ttl: config.cert_ttl,
        long_poll_max: config.long_poll_max,
        shutdown: shutdown_rx.clone(),
        mesh: fleet.mesh.clone(),
        reports: RateLimiter::new(f64::from(fleet.report_rate) / 60.0, fleet.report_rate),
        events: RateLimiter::new(f64::from(fleet.event_rate), fleet.event_burst),
        long_polls: LongPolls::new(fleet.max_long_polls_per_node),
        refused_claims: Default::default(),
        checkpoints: trigger.clone(),
    });
    tokio::spawn(checkpointer.run(trigger, shutdown_rx.clone()));
    tokio::spawn(hub.follow(Duration::from_secs(5), shutdown_rx.clone()));
    let router = api::router(app);
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tracing::info!(%addr, db = redact(db.url()), "control plane listening (HTTPS, TLS 1.3)");
    let limits = Limits {
        conns: ConnLimits::new(connection_cap(fleet.max_connections), fleet.max_connections_per_source),
        handshake: fleet.tls_handshake_timeout,
        idle: fleet.idle_timeout,
        metrics,
    };
    let task =
        tokio::spawn(accept_loop(listener, acceptor, router, limits, shutdown_rx, config.shutdown_grace));
    Ok(Running {
        addr,
        admin_token_path: state.admin_token_path,
        ca_path: state.ca_path,
        db,
        shutdown: shutdown_tx,
        task,
    })
}

/// `--max-connections`, lowered to fit the open-file limit (with room for the database and
/// files).
fn connection_cap(wanted: usize) -> usize {
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
struct Limits {
    conns: Arc<ConnLimits>,
    handshake: Duration,
    idle: Duration,
    metrics: Arc<Metrics>,
}

async fn accept_loop(
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
