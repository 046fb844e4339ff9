//! Problem 2 of the fleet-hardening issue: 2,000 idle connections (most never start TLS, some
//! finish the handshake and then say nothing) against the real `ringfence-control` binary with
//! the usual 1024 open files; a real client from another address still enrolls and long-polls
//! within a second, and the flood's connections are capped and time out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use ringfence_proto::api::{PolicyApplyRequest, Selector, TokenRequest, TokenResponse, WireGuardInfo};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::metrics::{metric, scrape, wait_for_metric, METRIC_WAIT};
use crate::common::process::ServerProcess;
use crate::common::{client_at, pg, policy_yaml, wg, Agent, Backend};

const FLOOD: usize = 2000;
/// Of which finish the TLS handshake.
const TLS_IDLE: usize = 100;
const SOURCES: u8 = 10;
const HONEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 200));

/// The binary, as a service manager would start it with the default soft limit of 1024 open
/// files; killed on drop.
async fn serve(backend: Backend) -> ServerProcess {
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(pg::fresh_database().await),
    };
    let mut args =
        vec!["--idle-timeout", "3s", "--tls-handshake-timeout", "2s", "--max-connections-per-source", "64"];
    if let Some(db) = &db {
        args.extend(["--db", db.as_str()]);
    }
    ServerProcess::start(&args, Some(1024)).await
}

/// A TCP connection from `source` that sends nothing.
async fn idle_tcp(source: IpAddr, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.ok()?.ok()
}

/// A connection that completes the TLS handshake, then says nothing.
async fn idle_tls(
    source: IpAddr,
    to: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = idle_tcp(source, to).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connecting = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(5), connecting).await.ok()?.ok()
}

/// Room for the flood's client sockets in this process (CI may start it with 1024).
fn raise_own_open_files_limit() {
    let pid = std::process::id().to_string();
    let ok = Command::new("prlimit").args(["--pid", &pid, "--nofile=16384:16384"]).status();
    assert!(ok.is_ok_and(|s| s.success()), "prlimit (util-linux) could not raise the open-file limit");
}

async fn idle_flood_does_not_lock_out_real_clients(backend: Backend) {
    raise_own_open_files_limit();
    let server = serve(backend).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut server.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    // The flood: 2,000 connections from 10 loopback addresses, opened together.
    let mut opening = Vec::new();
    for i in 0..FLOOD {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCES as usize) as u8));
        let (to, tls) = (server.addr, tls.clone());
        opening.push(tokio::spawn(async move {
            if i < TLS_IDLE {
                idle_tls(source, to, tls).await.map(|s| Box::new(s) as Box<dyn Send>)
            } else {
                idle_tcp(source, to).await.map(|s| Box::new(s) as Box<dyn Send>)
            }
        }));
    }
    let mut flood = Vec::new();
    for o in opening {
        flood.extend(o.await.unwrap());
    }
    println!("flood: {} of {FLOOD} connections opened", flood.len());
    assert!(flood.len() >= FLOOD / 2, "the flood could open only {} connections", flood.len());

    // A real client, from its own address, while the flood holds its connections.
    let admin = client_at(&server.ca_pem, None, Some(HONEST));
    let t0 = Instant::now();
    let req = TokenRequest { region: "eu".into(), labels: Default::default(), ttl_seconds: None };
    let resp = admin.post(format!("{}/v1/tokens", server.base)).bearer_auth(&server.admin_token).json(&req);
    let token: TokenResponse = resp.send().await.unwrap().json().await.unwrap();
    let honest = WireGuardInfo { endpoint: None, ..wg("honest") };
    let agent = Agent::enroll_at(&server.base, &server.ca_pem, Some(HONEST), &token.token, Some(honest))
        .await
        .expect("the real client enrolls");
    let enrolled = t0.elapsed();
    let waiting = tokio::spawn(async move {
        let poll_started = Instant::now();
        let bundle = agent.poll(0, 20).await;
        (bundle, poll_started.elapsed())
    });
    let honest = client_at(&server.ca_pem, None, Some(HONEST));
    wait_for_metric(&honest, &server.base, "ringfence_longpoll_watchers", 1.0, METRIC_WAIT).await;
    let apply = PolicyApplyRequest {
        policy_yaml: policy_yaml("p", "198.51.100.0/24"),
        selector: Selector::parse("region=eu").unwrap(),
        author: None,
        comment: None,
        strict: false,
    };
    let applied_at = Instant::now();
    let resp =
        admin.post(format!("{}/v1/policies", server.base)).bearer_auth(&server.admin_token).json(&apply);
    assert_eq!(resp.send().await.unwrap().status(), StatusCode::OK);
    let (bundle, _) = waiting.await.unwrap();
    let delivered = applied_at.elapsed();
    assert!(bundle.is_some(), "the long-poll delivered the bundle");
    println!("during the flood: enrolled in {enrolled:?}; bundle {delivered:?} after apply");
    assert!(enrolled < Duration::from_secs(1), "enrollment took {enrolled:?}");
    assert!(delivered < Duration::from_secs(1), "long-poll answered {delivered:?} after the apply");

    // Within the limits, and the idle flood is closed by the timeouts.
    let metrics = || async { scrape(&client_at(&server.ca_pem, None, Some(HONEST)), &server.base).await };
    let text = metrics().await;
    assert!(metric(&text, "ringfence_connections") <= 768.0, "{text}");
    assert!(metric(&text, "ringfence_connections_refused_total") > 0.0, "{text}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics().await;
        if metric(&text, "ringfence_connections") <= 2.0 {
            assert!(metric(&text, "ringfence_connections_timed_out_total") >= 64.0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "idle connections still open:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(flood);
}

/// A node holds at most --max-long-polls-per-node (2) long-polls: a third ends the oldest at once
/// (204), so a node cannot pile up waiting requests and one that lost track of its own recovers.
async fn long_polls_are_capped_per_node(backend: Backend) {
    let server = crate::common::TestServer::start(backend).await;
    let agent = std::sync::Arc::new(server.agent("eu", &[], "poller").await);
    let poll = |agent: std::sync::Arc<Agent>| {
        tokio::spawn(async move {
            let t = Instant::now();
            (agent.poll(0, 20).await.is_none(), t.elapsed())
        })
    };
    let first = poll(agent.clone());
    server.wait_for_metric("ringfence_longpoll_watchers", 1.0).await;
    let second = poll(agent.clone());
    server.wait_for_metric("ringfence_longpoll_watchers", 2.0).await;
    let third = poll(agent.clone());
    let (empty, waited) = first.await.unwrap();
    assert!(empty && waited < Duration::from_secs(5), "the oldest poll ends when a third comes: {waited:?}");
    server.apply(&policy_yaml("p", "198.51.100.0/24"), "region=eu").await;
    for p in [second, third] {
        let (empty, waited) = p.await.unwrap();
        assert!(!empty && waited < Duration::from_secs(10), "the newer polls get the bundle");
    }
    server.stop().await;
}

crate::on_both_backends!(idle_flood_does_not_lock_out_real_clients, long_polls_are_capped_per_node);
