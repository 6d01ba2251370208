//! A webhook receiver for alert notifications: a real HTTP server on `127.0.0.1` that
//! records every body, and can be down (its port closed) or answer with an error status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use poem::listener::{Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, Response, Route, Server, handler, http::StatusCode, post};
use serde_json::Value;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Value>>,
    /// 0 answers 200; anything else is the status to answer with.
    status: AtomicU16,
}

/// A webhook receiver.
#[derive(Debug)]
pub struct Webhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

#[handler]
async fn receive(shared: Data<&Arc<Shared>>, body: Json<Value>) -> Response {
    match shared.status.load(Ordering::SeqCst) {
        0 => {
            shared.received.lock().unwrap().push(body.0);
            Response::builder().status(StatusCode::OK).finish()
        }
        status => Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("Retry-After", "1")
            .finish(),
    }
}

impl Webhook {
    /// A receiver that is listening.
    pub async fn start() -> Self {
        let mut hook = Self::down().await;
        hook.up().await;
        hook
    }

    /// A receiver whose port is reserved but closed: connections are refused until [`Webhook::up`].
    pub async fn down() -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = probe.local_addr().expect("address");
        drop(probe);
        Self { addr, shared: Arc::default(), server: None }
    }

    /// Starts listening on its port.
    pub async fn up(&mut self) {
        let acceptor = TcpListener::bind(self.addr.to_string()).into_acceptor().await.expect("bind the webhook port");
        // Alertmanager clients (vmalert) post below the URL they are given: /hook/api/v2/alerts.
        let app =
            Route::new().at("/hook", post(receive)).at("/hook/*rest", post(receive)).data(Arc::clone(&self.shared));
        self.server = Some(tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        }));
    }

    /// Where to post.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer every later request with `status` (0: accept again).
    pub fn answer_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every body accepted so far.
    pub fn received(&self) -> Vec<Value> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, up to `seconds`.
    pub async fn wait_for(&self, seconds: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if done(&received) || tokio::time::Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
