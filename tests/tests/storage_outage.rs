//! Storage fails under a running server: ingest answers 503 with `Retry-After` at once
//! instead of hanging, `/health` reports the storage check failing, and when storage is back
//! the server recovers by itself with nothing acknowledged lost. PostgreSQL's outage is a TCP
//! proxy in front of the real server that drops every connection while "down"; SQLite's is a
//! second connection holding the file's write lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use homepot_core::DeviceId;
use homepot_storage::Store;
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::{TestServer, postgres_url};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Forwards connections to `target` while up; while down, cuts every open connection and
/// drops new ones at once (a restarting or unreachable database).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accepting, tasks) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                tasks.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, up, links }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db?...` → (`host:port`, the same URL through `proxy_port`).
fn through_proxy(url: &str, proxy_port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let target = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:5432") };
    let at = if credentials.is_empty() { String::new() } else { format!("{credentials}@") };
    (target, format!("{scheme}://{at}127.0.0.1:{proxy_port}{}", &rest[end..]))
}

/// A storage fault that a test can switch on and off under a running server.
#[async_trait::async_trait]
trait Fault {
    async fn begin(&self);
    async fn end(&self);
}

#[async_trait::async_trait]
impl Fault for Proxy {
    async fn begin(&self) {
        self.down().await;
    }
    async fn end(&self) {
        self.up();
    }
}

/// Another process holds SQLite's write lock (a backup tool, a `sqlite3` shell left in a
/// transaction). Reads and pings still work; only writes fail.
struct WriteLockHolder(sea_orm::DatabaseConnection);

#[async_trait::async_trait]
impl Fault for WriteLockHolder {
    async fn begin(&self) {
        self.0.execute_unprepared("BEGIN IMMEDIATE").await.expect("take the write lock");
    }
    async fn end(&self) {
        self.0.execute_unprepared("ROLLBACK").await.expect("release the write lock");
    }
}

/// Acknowledged checks, then the fault: ingest must answer 503 with `Retry-After` promptly and
/// `/health` must report the store failing. Then the fault ends: the server must recover by
/// itself, and every acknowledged check must be in storage.
async fn refuses_during_and_recovers_after(store: Arc<dyn Store>, s: TestServer, fault: &dyn Fault) {
    let device = homepot_tests::unique("outage-");
    let key = s.register(&device).await;
    let path = format!("/api/v1/devices/{device}/health");
    let check = json!({"is_healthy": true, "response_time_ms": 3});
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let (status, body) = s.call(Method::POST, &path, Some(&key), Some(&check)).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(body["health_check_id"].as_i64().unwrap());
    }

    fault.begin().await;
    let started = Instant::now();
    let refused = s.client.post(s.url(&path)).header("X-API-Key", &key).json(&check).send().await.expect("answered");
    let took = started.elapsed();
    assert_eq!(refused.status().as_u16(), 503, "{:?}", refused.text().await);
    assert!(refused.headers().contains_key("retry-after"), "{:?}", refused.headers());
    eprintln!("ingest during the storage fault answered 503 in {took:?}");
    let (status, health) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!((status, health["checks"]["store"].clone()), (503, json!(false)), "{health}");

    fault.end().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.call(Method::POST, &path, Some(&key), Some(&check)).await;
        if status == 200 {
            acknowledged.push(body["health_check_id"].as_i64().unwrap());
            break;
        }
        assert_eq!(status, 503, "only 503 while recovering: {body}");
        assert!(Instant::now() < deadline, "the server never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);
    let stored: Vec<i64> = store
        .health_since(&DeviceId::parse(&device).unwrap(), chrono::DateTime::UNIX_EPOCH, 100)
        .await
        .expect("read back")
        .into_iter()
        .map(|c| c.id.0)
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged check {id} lost");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_postgres_is_down_and_recovers() {
    let Some(url) = postgres_url("ingest_answers_503_while_postgres_is_down_and_recovers") else { return };
    homepot_tests::init();
    let (target, _) = through_proxy(&url, 0);
    let proxy = Proxy::start(target).await;
    let (_, proxied) = through_proxy(&url, proxy.port);
    let options = StoreOptions { acquire_timeout: Duration::from_secs(2), ..StoreOptions::default() };
    let store: Arc<dyn Store> = Arc::new(SeaOrmStore::connect(&proxied, &options).await.expect("connect"));
    let s = TestServer::start_on(Arc::clone(&store), None, Default::default()).await;
    refuses_during_and_recovers_after(store, s, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_the_sqlite_file_is_locked_and_recovers() {
    homepot_tests::init();
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("homepot.db").display());
    let options = StoreOptions { sqlite_busy_timeout: Duration::from_millis(300), ..StoreOptions::default() };
    let store: Arc<dyn Store> = Arc::new(SeaOrmStore::connect(&url, &options).await.expect("open SQLite"));
    let s = TestServer::start_on(Arc::clone(&store), Some(dir), Default::default()).await;
    let mut other = sea_orm::ConnectOptions::new(url);
    other.max_connections(1).min_connections(1);
    let holder = WriteLockHolder(sea_orm::Database::connect(other).await.expect("a second connection"));
    refuses_during_and_recovers_after(store, s, &holder).await;
}

#[test]
fn urls_are_routed_through_the_proxy() {
    assert_eq!(
        through_proxy("postgres://postgres@127.0.0.1:5432/test", 9),
        ("127.0.0.1:5432".to_owned(), "postgres://postgres@127.0.0.1:9/test".to_owned())
    );
    assert_eq!(
        through_proxy("postgres://u:p@db.local/test?sslmode=disable", 9),
        ("db.local:5432".to_owned(), "postgres://u:p@127.0.0.1:9/test?sslmode=disable".to_owned())
    );
}
