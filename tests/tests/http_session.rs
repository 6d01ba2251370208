//! Browser sessions through the real server: the cookie's attributes, CSRF on every route that
//! changes something, read-only sessions, revocation and sign-out, and CORS.

use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

struct Signed {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn sign_in(s: &TestServer, key: &str, headers: &[(&str, &str)]) -> (u16, Option<Signed>) {
    let mut request = s.client.post(s.url("/api/v1/session")).json(&json!({"api_key": key}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let set_cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let signed = set_cookie.map(|set_cookie| Signed {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
        set_cookie,
    });
    (status, signed)
}

async fn with_cookie(
    s: &TestServer,
    method: Method,
    path: &str,
    signed: &Signed,
    csrf: bool,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = s.client.request(method, s.url(path)).header("Cookie", &signed.cookie);
    if csrf {
        request = request.header("X-CSRF-Token", &signed.csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sessions_act_as_their_key_and_writes_need_the_csrf_token() {
    let s = TestServer::start(Backend::Sqlite, "sessions", ServerConfig::default()).await.unwrap();
    let (status, signed) = sign_in(&s, &s.admin_key, &[]).await;
    let signed = signed.expect("a cookie");
    assert_eq!(status, 201);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(signed.set_cookie.contains(attribute), "{attribute}: {}", signed.set_cookie);
    }
    assert!(!signed.set_cookie.contains("Secure"), "plain HTTP: {}", signed.set_cookie);
    let (_, behind_tls) = sign_in(&s, &s.admin_key, &[("X-Forwarded-Proto", "https")]).await;
    assert!(behind_tls.unwrap().set_cookie.contains("; Secure"));

    assert_eq!(
        with_cookie(&s, Method::GET, "/api/v1/devices", &signed, false, None).await.0,
        200,
        "reads need no token"
    );
    let (status, body) =
        with_cookie(&s, Method::POST, "/api/v1/devices", &signed, false, Some(json!({"device_id": "csrf-1"}))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("CSRF"));
    assert_eq!(s.call(Method::GET, "/api/v1/devices/csrf-1", Some(&s.admin_key), None).await.0, 404, "nothing ran");
    let (status, _) =
        with_cookie(&s, Method::POST, "/api/v1/devices", &signed, true, Some(json!({"device_id": "csrf-1"}))).await;
    assert_eq!(status, 201);
    let (status, me) = with_cookie(&s, Method::GET, "/api/v1/session", &signed, false, None).await;
    assert_eq!((status, me["role"].clone(), me["csrf_token"].clone()), (200, json!("admin"), json!(signed.csrf)));

    // The live stream takes the session: no key in the URL.
    let stream = s
        .client
        .get(s.url("/metrics/stream"))
        .header("Cookie", &signed.cookie)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);

    // Read keys sign in to a read-only dashboard; device keys do not sign in.
    let (_, read) = s.call(Method::POST, "/api/v1/keys", Some(&s.admin_key), Some(&json!({"role": "read"}))).await;
    let (_, reader) = sign_in(&s, read["api_key"].as_str().unwrap(), &[]).await;
    let reader = reader.unwrap();
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/session", &reader, false, None).await.1["role"], "read");
    let rule = json!({"id": "r", "kind": "unhealthy"});
    assert_eq!(with_cookie(&s, Method::POST, "/api/v1/alerts/rules", &reader, true, Some(rule)).await.0, 403);
    let device_key = s.register("session-device").await;
    assert_eq!(sign_in(&s, &device_key, &[]).await.0, 403);
    assert_eq!(sign_in(&s, "hpk_not_a_key", &[]).await.0, 401);

    // Revoking the key ends its sessions.
    let (_, admin2) = s.call(Method::POST, "/api/v1/keys", Some(&s.admin_key), Some(&json!({"role": "admin"}))).await;
    let (_, second) = sign_in(&s, admin2["api_key"].as_str().unwrap(), &[]).await;
    let second = second.unwrap();
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/devices", &second, false, None).await.0, 200);
    let path = format!("/api/v1/keys/{}", admin2["key_id"]);
    assert_eq!(s.call(Method::DELETE, &path, Some(&s.admin_key), None).await.0, 204);
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/devices", &second, false, None).await.0, 401);
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/session", &second, false, None).await.0, 401);

    // Signing out needs the token too, then the cookie is worth nothing.
    assert_eq!(with_cookie(&s, Method::DELETE, "/api/v1/session", &signed, false, None).await.0, 403);
    let response = s
        .client
        .delete(s.url("/api/v1/session"))
        .header("Cookie", &signed.cookie)
        .header("X-CSRF-Token", &signed.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/session", &signed, false, None).await.0, 401);
    assert_eq!(with_cookie(&s, Method::GET, "/api/v1/devices", &signed, false, None).await.0, 401);
    s.shutdown().await;
}

/// Every documented operation that changes something refuses the cookie without the token.
#[tokio::test]
async fn no_route_takes_a_cookie_write_without_the_csrf_token() {
    let s = TestServer::start(Backend::Sqlite, "sessions_walk", ServerConfig::default()).await.unwrap();
    s.register("walk-1").await;
    let (_, signed) = sign_in(&s, &s.admin_key, &[]).await;
    let signed = signed.unwrap();
    let (_, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = match method.as_str() {
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                _ => continue,
            };
            let concrete = path
                .split('/')
                .map(|part| if part.starts_with('{') { "walk-1" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = with_cookie(&s, method.clone(), &concrete, &signed, false, Some(json!({}))).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} operations");
    assert_eq!(s.call(Method::GET, "/api/v1/devices/walk-1", Some(&s.admin_key), None).await.0, 200, "not removed");
    s.shutdown().await;
}

#[tokio::test]
async fn cors_admits_only_the_configured_origins() {
    let config = ServerConfig { cors_origins: vec!["https://shop.example".into()], ..ServerConfig::default() };
    let s = TestServer::start(Backend::Sqlite, "cors", config).await.unwrap();
    let preflight = |origin: &'static str| {
        s.client
            .request(Method::OPTIONS, s.url("/api/v1/analytics/user-activity"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type,x-api-key")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
    s.shutdown().await;

    let closed = TestServer::start(Backend::Sqlite, "cors_default", ServerConfig::default()).await.unwrap();
    let response = closed
        .client
        .request(Method::OPTIONS, closed.url("/api/v1/analytics/user-activity"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "nothing is open by default");
    closed.shutdown().await;
}
