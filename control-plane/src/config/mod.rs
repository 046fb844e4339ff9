//! `ringfence-control serve` options, validated all at once before anything is bound or opened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::db::Backend;

mod checkpoint;
mod fleet;
mod values;
pub use checkpoint::{CheckpointArgs, CheckpointConfig, S3Sink};
pub use fleet::{FleetArgs, FleetConfig};
use values::{duration, http_url};

/// The longest client certificate lifetime the control plane issues.
pub const MAX_CERT_TTL: Duration = Duration::from_secs(4 * 3600);

/// Exit status for invalid configuration.
pub const EXIT_CONFIG: u8 = 64;

/// `ringfence-control serve` flags.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Database URL: sqlite:///path/file.db or postgres://user@host/db (default: a SQLite file in
    /// the state directory).
    #[arg(long, env = "RINGFENCE_DB", value_name = "URL")]
    pub db: Option<String>,
    /// Address to listen on (HTTPS).
    #[arg(long, env = "RINGFENCE_LISTEN", default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: String,
    /// Directory for the CA, the bundle-signing key and the admin credential (created 0700).
    #[arg(
        long,
        env = "RINGFENCE_STATE_DIR",
        default_value = "/var/lib/ringfence-control",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Extra DNS name or IP address for the server certificate (repeatable); localhost,
    /// 127.0.0.1 and the listen address are always included.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Lifetime of node client certificates (at most 4h), e.g. 4h, 30m, 10s.
    #[arg(long, default_value = "4h", value_name = "DURATION")]
    pub cert_ttl: String,
    /// Longest wait of a bundle long-poll (`GET /v1/bundle?wait=`).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub long_poll_max: String,
    /// Forward events to this Alertmanager (its base URL; alerts go to /api/v2/alerts).
    #[arg(long, value_name = "URL")]
    pub alertmanager_url: Option<String>,
    /// Forward events to this webhook (POST of JSON).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Forward events to this syslog server (RFC 5424 over UDP), HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub syslog: Option<String>,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub shutdown_grace: String,
    /// Mesh identity rules and resource limits.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Signed audit checkpoints.
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
}

impl ServeArgs {
    /// Parses `serve` flags the way the binary does (`["--listen", "127.0.0.1:0", ...]`): for
    /// embedding the server, in tests and benchmarks.
    pub fn from_flags<I, T>(flags: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let argv =
            std::iter::once(std::ffi::OsString::from("serve")).chain(flags.into_iter().map(Into::into));
        <Wrap as clap::Parser>::try_parse_from(argv).map(|w| w.serve)
    }
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Database URL.
    pub db_url: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// Server certificate names and addresses.
    pub sans: Vec<String>,
    /// Client certificate lifetime.
    pub cert_ttl: Duration,
    /// Longest long-poll.
    pub long_poll_max: Duration,
    /// Alertmanager base URL.
    pub alertmanager_url: Option<url::Url>,
    /// Webhook URL.
    pub webhook_url: Option<url::Url>,
    /// Syslog target.
    pub syslog: Option<SocketAddr>,
    /// Drain time at shutdown.
    pub shutdown_grace: Duration,
    /// Mesh identity rules and resource limits.
    pub fleet: FleetConfig,
    /// Signed audit checkpoints.
    pub checkpoints: CheckpointConfig,
}

impl ServeArgs {
    /// Checks every option; on failure returns every problem.
    pub fn validate(&self) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let listen = self.listen.parse::<SocketAddr>().map_err(|e| {
            errors.push(format!("--listen {:?}: {e} (expected IP:PORT, e.g. 0.0.0.0:8443)", self.listen))
        });
        let cert_ttl = duration(&mut errors, "cert-ttl", &self.cert_ttl);
        if cert_ttl > MAX_CERT_TTL {
            errors.push(format!(
                "--cert-ttl {}: at most 4h (client certificates are short-lived)",
                self.cert_ttl
            ));
        } else if cert_ttl < Duration::from_secs(1) && !errors.iter().any(|e| e.starts_with("--cert-ttl")) {
            errors.push(format!("--cert-ttl {}: at least 1s", self.cert_ttl));
        }
        let long_poll_max = duration(&mut errors, "long-poll-max", &self.long_poll_max);
        let shutdown_grace = duration(&mut errors, "shutdown-grace", &self.shutdown_grace);
        let fleet = self.fleet.validate(&mut errors);
        let checkpoints = self.checkpoints.validate(&mut errors);
        let alertmanager_url = http_url(&mut errors, "alertmanager-url", &self.alertmanager_url);
        let webhook_url = http_url(&mut errors, "webhook-url", &self.webhook_url);
        let syslog = self.syslog.as_ref().and_then(|s| {
            use std::net::ToSocketAddrs;
            match s.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => Some(addr),
                Ok(None) | Err(_) => {
                    errors.push(format!("--syslog {s:?}: expected HOST:PORT of a syslog server (UDP)"));
                    None
                }
            }
        });
        let db_url = match &self.db {
            Some(url) => {
                if Backend::of_url(url).is_none() {
                    errors.push(format!(
                        "--db {url:?}: expected sqlite:///path/file.db or postgres://user@host/database"
                    ));
                }
                url.clone()
            }
            None => format!("sqlite://{}", self.state_dir.join("control.db").display()),
        };
        if self.state_dir.as_os_str().is_empty() {
            errors.push("--state-dir: must not be empty".into());
        } else if self.state_dir.exists() && !self.state_dir.is_dir() {
            errors.push(format!("--state-dir {}: exists and is not a directory", self.state_dir.display()));
        }
        for san in &self.sans {
            if san.is_empty() || san.contains(char::is_whitespace) {
                errors.push(format!("--san {san:?}: expected a DNS name or an IP address"));
            }
        }
        let Ok(listen) = listen else { return Err(errors) };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !listen.ip().is_unspecified() {
            sans.push(listen.ip().to_string());
        }
        for san in &self.sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        Ok(Config {
            db_url,
            listen,
            state_dir: self.state_dir.clone(),
            sans,
            cert_ttl,
            long_poll_max,
            alertmanager_url,
            webhook_url,
            syslog,
            shutdown_grace,
            fleet,
            checkpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve", "--state-dir", "/tmp/ringfence-config-test"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn defaults_are_valid() {
        let config = args(&["--listen", "127.0.0.2:9000"]).validate().unwrap();
        assert_eq!(config.cert_ttl, MAX_CERT_TTL);
        assert_eq!(config.db_url, "sqlite:///tmp/ringfence-config-test/control.db");
        assert_eq!(config.sans, ["localhost", "127.0.0.1", "127.0.0.2"]);
    }

    #[test]
    fn every_error_is_listed() {
        let errors = args(&[
            "--listen",
            "nowhere",
            "--cert-ttl",
            "5h",
            "--db",
            "mysql://x",
            "--webhook-url",
            "ftp://x",
            "--syslog",
            "no-port",
            "--long-poll-max",
            "soon",
        ])
        .validate()
        .unwrap_err();
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 6, "{joined}");
        for needle in
            ["--listen", "--cert-ttl 5h: at most 4h", "--db", "--webhook-url", "--syslog", "--long-poll-max"]
        {
            assert!(joined.contains(needle), "{needle} missing in {joined}");
        }
    }
}
