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

/// Slowloris: header bytes trickled more often than the idle timeout do not keep a
/// connection; its first request head must be complete within the header timeout.
#[tokio::test]
async fn a_trickled_request_head_gets_408_and_is_closed() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(700),
        idle_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let s = TestServer::start(Backend::Sqlite, "trickled_head", config).await.expect("SQLite");
    let mut stream = TcpStream::connect(s.base.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.expect("send the start");
    let trickle = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle).await.expect("the server cut the trickle off");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Request head not received within 0.7 s"), "{answer}");

    // A prompt client on a fresh connection is served, and may stay idle past the header
    // timeout between requests.
    let mut stream = TcpStream::connect(s.base.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("send again");
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    s.shutdown().await;
}
