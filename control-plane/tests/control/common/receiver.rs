//! Tiny local receivers for forwarded alerts: an HTTP server (one request per connection,
//! optionally failing the first requests with 503) and a UDP syslog listener.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// One received HTTP request.
#[derive(Debug)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
}

/// Starts an HTTP receiver on 127.0.0.1; the first `fail_first` requests get 503.
pub async fn http(fail_first: usize) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0usize;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    break (Some(pos + 4), length);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + length {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..start]).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            served += 1;
            let status = if served <= fail_first { "503 Service Unavailable" } else { "200 OK" };
            let _ = stream
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                )
                .await;
            if served > fail_first {
                let body =
                    serde_json::from_slice(&buf[start..start + length]).unwrap_or(serde_json::Value::Null);
                let _ = tx.send(Received { path, body });
            }
        }
    });
    (url, rx)
}

/// Starts a UDP listener on 127.0.0.1; returns its address and the datagrams.
pub async fn udp() -> (String, mpsc::UnboundedReceiver<String>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = socket.recv_from(&mut buf).await {
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    (addr, rx)
}

/// The next item, or a panic naming `what` after 10 s.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing received within 10 s"))
        .unwrap_or_else(|| panic!("{what}: receiver closed"))
}
