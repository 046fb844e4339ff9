//! Running the control plane: open the state directory and the database, bind, hand the
//! listener to [`crate::accept`] (TLS connections, each request carrying the connection's
//! verified client certificate), and on shutdown stop accepting, wake long-polls and drain
//! within the grace time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::accept::{accept_loop, connection_cap, Limits};
use crate::api::{self, AppState};
use crate::checkpoint::{CheckpointTrigger, Checkpointer};
use crate::config::Config;
use crate::conn::ConnLimits;
use crate::db::{Db, DbError};
use crate::evidence::EvidenceSources;
use crate::flows::FlowBus;
use crate::forward::{Forwarder, Sinks};
use crate::hub::Hub;
use crate::limits::{LongPolls, RateLimiter};
use crate::metrics::Metrics;
use crate::state_dir::{self, StateError};

/// Room in the accept queue for a burst of connection attempts (an idle flood included) while
/// the accept loop catches up, so that an honest client's SYN is queued rather than dropped: a
/// dropped SYN costs that client a one-second retransmission. The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Console logins per source address: bursts of 10, then one every 30 s.
const LOGIN_BURST: u32 = 10;
const LOGIN_RATE: f64 = 1.0 / 30.0;

/// Live (allow) flows per node: 2,000 a second, bursts of 4,000 (beyond: 429, the agent drops
/// them and counts them).
const LIVE_FLOW_BURST: u32 = 4000;
const LIVE_FLOW_RATE: f64 = 2000.0;

/// Binds `addr` with [`LISTEN_BACKLOG`] (tokio's `TcpListener::bind` asks for 1024).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
    let listener =
        listen(config.listen).map_err(|source| ServeError::Bind { addr: config.listen, source })?;
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
    let evidence = EvidenceSources::new(
        state.evidence_key,
        &state.checkpoint_key,
        &config.checkpoints,
        &config.state_dir,
        state.ca.pem.clone(),
    );
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
        live_flows: RateLimiter::new(LIVE_FLOW_RATE, LIVE_FLOW_BURST),
        long_polls: LongPolls::new(fleet.max_long_polls_per_node),
        refused_claims: Default::default(),
        logins: RateLimiter::new(LOGIN_RATE, LOGIN_BURST),
        state_dir: config.state_dir.clone(),
        checkpoints: trigger.clone(),
        flows: FlowBus::default(),
        ingest: crate::ingest::Ingest::start(db.clone()),
        evidence,
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
