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

use crate::api::auth::PeerIdentity;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::forward::{Forwarder, Sinks};
use crate::hub::Hub;
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
    let app = Arc::new(AppState {
        db: db.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        forwarder: Forwarder::start(sinks, metrics),
        ca: Arc::new(state.ca),
        signing_key: state.signing_key,
        admin_token: state.admin_token,
        cert_ttl: config.cert_ttl,
        long_poll_max: config.long_poll_max,
        shutdown: shutdown_rx.clone(),
    });
    tokio::spawn(hub.follow(Duration::from_secs(5), shutdown_rx.clone()));
    let router = api::router(app);
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tracing::info!(%addr, db = redact(db.url()), "control plane listening (HTTPS, TLS 1.3)");
    let task = tokio::spawn(accept_loop(listener, acceptor, router, shutdown_rx, config.shutdown_grace));
    Ok(Running {
        addr,
        admin_token_path: state.admin_token_path,
        ca_path: state.ca_path,
        db,
        shutdown: shutdown_tx,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
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
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| crate::pki::parse_peer(der));
            let identity = match peer {
                Some(Ok(cert)) => PeerIdentity(Some(cert)),
                Some(Err(e)) => {
                    tracing::warn!(%peer_addr, error = %e, "unreadable client certificate");
                    PeerIdentity(None)
                }
                None => PeerIdentity(None),
            };
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(identity.clone());
                router.clone().oneshot(req)
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer_addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace = ?grace, "shutting down: draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace time over; closing the remaining connections");
    }
}
