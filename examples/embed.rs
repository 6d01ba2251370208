//! Embedding homepot in an existing poem application: the app keeps its own routes, nests
//! homepot's whole API under `/telemetry`, and calls the engine directly, here to record a
//! health check from code rather than over HTTP.
//!
//! `cargo run -p homepot-examples --example embed` (in memory, on 127.0.0.1:8080), then
//! `curl http://127.0.0.1:8080/hello` and
//! `curl -H "X-API-Key: embed-admin" http://127.0.0.1:8080/telemetry/api/v1/devices`.

use std::sync::Arc;

use homepot_core::{ApiKey, DeviceId, HealthCheck, HealthReport, NewDevice};
use homepot_engine::{Engine, Homepot, Settings, SystemClock};
use homepot_http::ServerConfig;
use homepot_storage::InMemoryStore;
use poem::listener::TcpListener;
use poem::{Endpoint, EndpointExt, Route, get, handler};

#[handler]
fn hello() -> &'static str {
    "hello from the host application"
}

/// The host application with homepot inside it, and the engine to call and to shut down.
async fn application(admin_key: &str) -> Result<(impl Endpoint + use<>, Homepot, Engine), homepot_engine::EngineError> {
    let settings = Settings { admin_key: Some(ApiKey::from_configured(admin_key.to_owned())), ..Settings::default() };
    let (homepot, engine) = Homepot::start(Arc::new(InMemoryStore::new()), settings, Arc::new(SystemClock)).await?;
    let app = Route::new()
        .at("/hello", get(hello))
        .nest("/telemetry", homepot_http::routes(&homepot, &ServerConfig::default()))
        .boxed();
    Ok((app, homepot, engine))
}

/// Records a health check from code: validated by core, durable when this returns.
async fn record_from_code(homepot: &Homepot, device: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let device = DeviceId::parse(device)?;
    if homepot.device(&device).await?.is_none() {
        homepot.register_device(&NewDevice::with_id(device.clone())).await?;
    }
    let check = HealthCheck::validate(HealthReport::minimal(true, 42))?;
    let (write, _accepted_at) = homepot.record_health(device, check, None).await?;
    Ok(write.answer().0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (app, homepot, engine) = application("embed-admin").await?;
    let id = record_from_code(&homepot, "embedded-pos-1").await?;
    println!("recorded health check {id} from code; serving on http://127.0.0.1:8080 (Ctrl-C stops)");
    poem::Server::new(TcpListener::bind("127.0.0.1:8080"))
        .run_with_graceful_shutdown(
            app,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            None,
        )
        .await?;
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::listener::{Acceptor, Listener};

    #[tokio::test]
    async fn the_host_serves_its_route_and_homepot_beside_it() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (app, homepot, engine) = application("embed-test-admin").await.expect("engine");
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().expect("address");
        let server = tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();

        let greeting = client.get(format!("{base}/hello")).send().await.unwrap().text().await.unwrap();
        assert_eq!(greeting, "hello from the host application");

        // Recorded by calling the engine, read back over the nested HTTP API.
        let id = record_from_code(&homepot, "embedded-pos-1").await.expect("recorded");
        let history: serde_json::Value = client
            .get(format!("{base}/telemetry/api/v1/devices/embedded-pos-1/health"))
            .header("X-API-Key", "embed-test-admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(history["count"], 1, "{history}");
        assert_eq!(history["health_checks"][0]["id"], id);

        // And the other way round: written over HTTP, seen by the engine.
        let response = client
            .post(format!("{base}/telemetry/api/v1/devices/embedded-pos-1/health"))
            .header("X-API-Key", "embed-test-admin")
            .json(&serde_json::json!({"is_healthy": false, "response_time_ms": 7}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let device = DeviceId::parse("embedded-pos-1").unwrap();
        let checks = homepot.health_history(&device, 1, 10).await.unwrap();
        assert_eq!(checks.len(), 2);
        assert!(!checks[0].is_healthy, "newest first");

        server.abort();
        engine.shutdown().await;
    }
}
