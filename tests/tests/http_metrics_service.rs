//! The metrics service's own endpoints over real HTTP: detailed health, statistics, the SSE stream
//! (and its browser page), per-client rate limiting, and open-metrics mode.

use std::num::NonZeroU32;
use std::time::Duration;

use homepot_http::{RateLimitConfig, ServerConfig};
use homepot_tests::{Backend, TestServer, unique};
use reqwest::Method;
use serde_json::{Value, json};

async fn server(config: ServerConfig) -> TestServer {
    TestServer::start(Backend::Sqlite, "metrics-service", config).await.expect("SQLite")
}

/// Reads the stream until `events` data events arrived.
async fn read_events(response: &mut reqwest::Response, events: usize) -> Vec<Value> {
    let mut buffer = String::new();
    let mut found = Vec::new();
    while found.len() < events {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .expect("stream readable")
            .expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    found.push(serde_json::from_str(data.trim()).expect("JSON event"));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn detailed_health_and_stats_count_what_happened() {
    let s = server(ServerConfig::default()).await;
    let name = unique("fps_");
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/metrics",
            Some(&s.admin_key),
            Some(&json!({"metrics": [{"name": name, "fields": {"a": 1, "b": 2}}]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, "/api/v1/devices/nobody", Some(&s.admin_key), None).await;
    assert_eq!(status, 404);

    let (status, health) = s.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["checks"]["store"], true);
    assert_eq!(health["metrics_store"]["total_metrics"], 1);
    assert_eq!(health["metrics_store"]["metric_names"], json!([name]));
    assert_eq!(health["metrics_store"]["retention_seconds"], 300);
    assert_eq!(health["metrics_store"]["max_metrics"], 100_000);
    assert_eq!(health["sse_subscribers"], 0);

    let (status, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["metrics_received_total"], 1, "one point with two fields");
    assert!(stats["requests_total"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["errors_total"].as_u64().unwrap() >= 1, "the 404 counts: {stats}");
    assert!(stats["uptime_seconds"].is_number() && stats["sse_events_sent"].is_number());
    s.shutdown().await;
}

#[tokio::test]
async fn the_stream_sends_the_documented_event_format_and_forgets_gone_clients() {
    let s = server(ServerConfig { stream_interval: Duration::from_millis(50), ..ServerConfig::default() }).await;
    let name = unique("cpu_");
    let lines = format!("{name},host=myhost usage_user=0.14,idle=90i");
    assert_eq!(s.post_text("/api/v1/metrics/influx", &s.admin_key, &lines).await.0, 200);

    let mut stream = s
        .client
        .get(s.url("/metrics/stream"))
        .header("X-API-Key", &s.admin_key)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = read_events(&mut stream, 2).await;
    let event = &events[0];
    assert!(event["timestamp"].as_i64().unwrap() > 1_700_000_000_000, "Unix ms");
    let metrics = event["metrics"].as_array().unwrap();
    let usage =
        metrics.iter().find(|m| m["name"] == format!("{name}_usage_user")).expect("sample named <name>_<field>");
    assert_eq!((usage["labels"].clone(), usage["value"].clone()), (json!({"host": "myhost"}), json!(0.14)));
    assert!(usage["timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    let (_, health) = s.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(health["sse_subscribers"], 1);
    drop(stream);
    let mut subscribers = 1;
    for _ in 0..100 {
        subscribers = s.call(Method::GET, "/api/health", None, None).await.1["sse_subscribers"].as_u64().unwrap();
        if subscribers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(subscribers, 0, "a client that went away is no longer counted");
    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    assert!(stats["sse_events_sent"].as_u64().unwrap() >= 2);

    let page = s
        .client
        .get(s.url(&format!("/metrics/stream?p={}", s.admin_key)))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("new EventSource(location.href)"), "the page renders the stream");
    let (status, _) = s.call(Method::GET, "/metrics/stream", None, None).await;
    assert_eq!(status, 401);
    s.shutdown().await;
}

fn limit(per_minute: u32, burst: u32, trust_forwarded_headers: bool) -> Option<RateLimitConfig> {
    Some(RateLimitConfig {
        trust_forwarded_headers,
        ..RateLimitConfig::new(NonZeroU32::new(per_minute).unwrap(), NonZeroU32::new(burst).unwrap())
    })
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_reset_headers() {
    let s = server(ServerConfig { rate_limit: limit(60, 3, false), ..ServerConfig::default() }).await;
    let key = read_key(&s).await;
    for _ in 0..3 {
        let (status, _) = s.call(Method::GET, "/api/v1/metrics/names", Some(&key), None).await;
        assert_eq!(status, 200);
    }
    let refused = s.client.get(s.url("/api/v1/metrics/names")).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let headers = refused.headers();
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: i64 = headers["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > chrono::Utc::now().timestamp() - 1);
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(refused.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("Rate limit"));
    for path in ["/health", "/api/v1/stats"] {
        assert_eq!(s.call(Method::GET, path, None, None).await.0, 200, "{path} is exempt");
    }
    s.shutdown().await;
}

/// A read key stored directly, so issuing it spends no request quota.
async fn read_key(s: &TestServer) -> String {
    let key = homepot_engine::generate_key();
    let new = homepot_storage::NewKey {
        hash: key.hash(),
        role: homepot_core::Role::Read,
        device_id: None,
        created_at: chrono::Utc::now(),
    };
    s.store.insert_key(&new).await.expect("read key");
    key.expose().to_owned()
}

async fn names_status(s: &TestServer, ip: &str, key: &str) -> u16 {
    let request = s.client.get(s.url("/api/v1/metrics/names")).header("X-API-Key", key).header("X-Forwarded-For", ip);
    request.send().await.unwrap().status().as_u16()
}

/// Requests without a valid key are limited by address: wrong keys cost their sender.
#[tokio::test]
async fn forwarded_clients_are_told_apart_only_when_trusted() {
    for trusted in [true, false] {
        let s = server(ServerConfig { rate_limit: limit(60, 1, trusted), ..ServerConfig::default() }).await;
        assert_eq!(names_status(&s, "203.0.113.1", "wrong-1").await, 401);
        assert_eq!(
            names_status(&s, "203.0.113.2", "wrong-2").await,
            if trusted { 401 } else { 429 },
            "trusted: {trusted}"
        );
        assert_eq!(names_status(&s, "203.0.113.1", "wrong-3").await, 429, "invented keys share the address's quota");
        s.shutdown().await;
    }
}

/// Each role has its own quota: admin keys are unlimited by default, so provisioning more
/// devices than the burst works; a configured admin quota applies per admin key; device and
/// read keys keep theirs, whatever address they come from.
#[tokio::test]
async fn each_role_has_its_own_quota() {
    let s = server(ServerConfig { rate_limit: limit(60, 2, true), ..ServerConfig::default() }).await;
    for _ in 0..5 {
        let device = unique("quota-");
        let (status, body) =
            s.call(Method::POST, "/api/v1/devices", Some(&s.admin_key), Some(&json!({"device_id": device}))).await;
        assert_eq!(status, 201, "admin keys are not limited by default: {body}");
    }
    let device = unique("quota-dev-");
    let device_key = s.register(&device).await;
    let health = json!({"is_healthy": true, "response_time_ms": 1});
    let mut statuses = Vec::new();
    for ip in ["203.0.113.7", "203.0.113.8", "203.0.113.9"] {
        let request = s
            .client
            .post(s.url(&format!("/api/v1/devices/{device}/health")))
            .header("X-API-Key", &device_key)
            .header("X-Forwarded-For", ip)
            .json(&health);
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "a device key's quota follows the key, not the address");
    assert_eq!(names_status(&s, "203.0.113.9", &read_key(&s).await).await, 200, "a read key has its own quota");
    s.shutdown().await;

    let limited = RateLimitConfig {
        admin_requests_per_minute: NonZeroU32::new(60),
        ..RateLimitConfig::new(NonZeroU32::new(60).unwrap(), NonZeroU32::new(2).unwrap())
    };
    let s = server(ServerConfig { rate_limit: Some(limited), ..ServerConfig::default() }).await;
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(s.call(Method::GET, "/api/v1/devices", Some(&s.admin_key), None).await.0);
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 429], "RATE_LIMIT_ADMIN_REQUESTS_PER_MINUTE limits admin keys");
    s.shutdown().await;
}

/// One key used from many addresses shares one quota: a leaked key or a fleet behind
/// changing addresses cannot multiply its rate.
#[tokio::test]
async fn one_key_from_many_addresses_is_limited() {
    let s = server(ServerConfig { rate_limit: limit(60, 2, true), ..ServerConfig::default() }).await;
    let key = read_key(&s).await;
    assert_eq!(names_status(&s, "203.0.113.1", &key).await, 200);
    assert_eq!(names_status(&s, "203.0.113.2", &key).await, 200);
    assert_eq!(names_status(&s, "203.0.113.3", &key).await, 429, "a fresh address, a spent key");
    let other = read_key(&s).await;
    assert_eq!(names_status(&s, "203.0.113.3", &other).await, 200, "other keys are unaffected");
    s.shutdown().await;
}

#[tokio::test]
async fn open_metrics_mode_serves_metrics_without_a_key_and_nothing_else() {
    let s = server(ServerConfig { open_metrics: true, ..ServerConfig::default() }).await;
    let name = unique("open_");
    let (status, answer) =
        s.call(Method::POST, "/api/v1/metrics/simple", None, Some(&json!({"name": name, "value": 42.5}))).await;
    assert_eq!((status, answer), (200, json!({"accepted": 1, "message": "Accepted 1 metric"})));
    let (status, all) = s.call(Method::GET, "/api/v1/metrics", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(all["metrics"][&name]["fields"]["value"], 42.5);
    assert_eq!(s.client.get(s.url("/metrics")).send().await.unwrap().status().as_u16(), 200);
    let (status, _) =
        s.call(Method::POST, "/api/v1/metrics/simple", Some("wrong"), Some(&json!({"name": name, "value": 1}))).await;
    assert_eq!(status, 401, "a presented key is still checked");
    let (status, _) = s.call(Method::GET, "/api/v1/devices", None, None).await;
    assert_eq!(status, 401, "only the metrics endpoints open");

    let closed = server(ServerConfig::default()).await;
    let (status, _) = closed.call(Method::GET, "/api/v1/metrics", None, None).await;
    assert_eq!(status, 401, "closed by default");
    closed.shutdown().await;
    s.shutdown().await;
}

/// Unique tag values from one key cannot take the live store: a batch that would exceed the
/// key's series limit is refused whole with 422 (nothing stored), while the key's known
/// series keep updating and other keys are unaffected.
#[tokio::test]
async fn one_key_cannot_fill_the_live_store_with_unique_tags() {
    let live = homepot_core::live::LiveLimits { max_series_per_owner: 3, ..Default::default() };
    let s = server(ServerConfig { live, ..ServerConfig::default() }).await;
    let name = unique("card_");
    let lines = |hosts: std::ops::Range<u32>| hosts.map(|h| format!("{name},host=h{h} v=1\n")).collect::<String>();

    let (status, body) = s.post_text("/write", &s.admin_key, &lines(0..5)).await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"][0].clone();
    assert_eq!(detail["loc"], json!(["body", "tags"]), "{body}");
    assert!(detail["msg"].as_str().unwrap().contains("would add 5, over the limit of 3 per key"), "{body}");
    let (_, history) =
        s.call(Method::GET, &format!("/api/v1/metrics/history?name={name}"), Some(&s.admin_key), None).await;
    assert_eq!(history["count"], 0, "a refused batch stores nothing: {history}");

    assert_eq!(s.post_text("/write", &s.admin_key, &lines(0..3)).await.0, 204);
    assert_eq!(s.post_text("/write", &s.admin_key, &lines(3..4)).await.0, 422, "a fourth series");
    assert_eq!(s.post_text("/write", &s.admin_key, &lines(0..3)).await.0, 204, "known series update");

    let device_key = s.register(&unique("card-dev-")).await;
    assert_eq!(s.post_text("/write", &device_key, &lines(3..5)).await.0, 204, "another key has its own limit");
    let (_, live) = s.call(Method::GET, &format!("/api/v1/metrics?name={name}"), Some(&s.admin_key), None).await;
    assert_eq!(live["metrics"].as_object().map(serde_json::Map::len), Some(5), "{live}");
    s.shutdown().await;
}
