//! Slow and idle clients are cut off: a body that does not arrive in time gets 408, and a
//! keep-alive connection without traffic is closed, so stalled clients cannot pin tasks.

use std::time::Duration;

use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn impatient() -> ServerConfig {
    ServerConfig {
        body_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    }
}

/// Reads until the server closes the connection (or 10 s pass, which fails the test).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept a stalled connection open; read so far: {}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_trickled_body_gets_408() {
    let s = TestServer::start(Backend::Sqlite, "trickled_body", impatient()).await.expect("SQLite");
    let device = homepot_tests::unique("pos-");
    s.register(&device).await;
    let mut stream = TcpStream::connect(s.base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "POST /api/v1/devices/{device}/health HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"is_",
        s.admin_key
    );
    stream.write_all(head.as_bytes()).await.expect("send the start");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Request body not received within"), "{answer}");
    s.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start(Backend::Sqlite, "idle_connection", impatient()).await.expect("SQLite");
    let mut stream = TcpStream::connect(s.base.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "answered, then closed once idle: {answer}");
    s.shutdown().await;
}
