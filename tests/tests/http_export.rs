//! `GET /api/v1/export` on every backend, through the real server: each kind in CSV (read
//! back with a standard CSV reader) and NDJSON, the filters, exports longer than one page,
//! and the refusals.

use std::collections::HashMap;
use std::time::Duration;

use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

mod scenarios {
    use super::*;
    on_every_backend!(
        health_checks_export_as_csv_and_ndjson,
        points_and_rollups_export_by_name_and_device,
        analytics_tables_export,
        long_exports_span_pages,
        refused_exports
    );
}

/// Status, content type and body of an export.
async fn export(s: &TestServer, key: &str, query: &str) -> (u16, String, String) {
    let response =
        s.client.get(s.url(&format!("/api/v1/export?{query}"))).header("X-API-Key", key).send().await.expect("sent");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

/// CSV rows as column → value maps, read by a standard reader.
fn csv_rows(text: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header line").clone();
    reader
        .records()
        .map(|record| {
            headers.iter().zip(record.expect("a CSV record").iter()).map(|(h, v)| (h.into(), v.into())).collect()
        })
        .collect()
}

fn ndjson_rows(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect()
}

async fn health_checks_export_as_csv_and_ndjson(s: &TestServer) {
    let device = unique("till-");
    let key = s.register(&device).await;
    let other = unique("till-");
    let other_key = s.register(&other).await;
    for (cpu, key) in [(10.5, &key), (20.0, &key), (99.0, &other_key), (30.0, &key)] {
        let target = if key == &other_key { &other } else { &device };
        let check = json!({"is_healthy": cpu < 25.0, "response_time_ms": 100, "endpoint": "/pos, main",
                           "response_data": {"note": "a \"quoted\"\nline"}, "system": {"cpu_percent": cpu}});
        let (status, body) =
            s.call(Method::POST, &format!("/api/v1/devices/{target}/health"), Some(key), Some(&check)).await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, content_type, body) = export(s, &s.admin_key, &format!("kind=health&device_id={device}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let rows = csv_rows(&body);
    assert_eq!(rows.iter().map(|r| r["cpu_percent"].as_str()).collect::<Vec<_>>(), ["10.5", "20", "30"]);
    assert!(rows.iter().all(|r| r["device_id"] == device && r["endpoint"] == "/pos, main"));
    assert_eq!(rows.iter().map(|r| r["is_healthy"].as_str()).collect::<Vec<_>>(), ["true", "true", "false"]);
    let data: Value = serde_json::from_str(&rows[0]["response_data"]).expect("response_data is JSON text");
    assert_eq!(data["note"], "a \"quoted\"\nline", "quotes and line breaks survive CSV");
    let times: Vec<&str> = rows.iter().map(|r| r["checked_at"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");

    let (status, content_type, body) =
        export(s, &s.admin_key, &format!("kind=health&device_id={device}&format=ndjson")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"));
    let rows = ndjson_rows(&body);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["cpu_percent"], 10.5);
    assert_eq!(rows[0]["response_data"]["system"]["cpu_percent"], 10.5);
    assert_eq!(rows[0]["error_message"], Value::Null);
    assert!(rows[0]["id"].is_i64() && rows[0]["response_time_ms"] == 100);

    // A window before anything was written holds nothing: CSV still has its header.
    let (status, _, body) = export(s, &s.admin_key, &format!("kind=health&device_id={device}&to=1000")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("id,device_id,checked_at,") && body.lines().count() == 1, "{body}");
}

async fn points_and_rollups_export_by_name_and_device(s: &TestServer) {
    let name = unique("temp");
    let now = chrono::Utc::now().timestamp();
    let lines = [
        format!("{name},device_id=a,site=x value=1.5 {}", now * 1_000_000_000),
        format!("{name},device_id=b value=2i {}", (now + 1) * 1_000_000_000),
        format!("{name},device_id=a state=\"ok\",value=3.5 {}", (now + 2) * 1_000_000_000),
    ];
    let (status, body) = s.post_text("/write", &s.admin_key, &lines.join("\n")).await;
    assert_eq!(status, 204, "{body}");

    let (status, _, body) = export(s, &s.admin_key, &format!("kind=metrics&name={name}&format=ndjson")).await;
    assert_eq!(status, 200, "{body}");
    let rows = ndjson_rows(&body);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["tags"], json!({"device_id": "a", "site": "x"}));
    assert_eq!(rows[1]["fields"], json!({"value": 2}));
    assert_eq!(rows[2]["fields"], json!({"state": "ok", "value": 3.5}));
    assert_eq!(rows[0]["time_ns"], now * 1_000_000_000);
    assert_eq!(rows[0]["name"], name);

    let (_, _, body) = export(s, &s.admin_key, &format!("kind=metrics&name={name}&device_id=a")).await;
    assert_eq!(csv_rows(&body).len(), 2, "points narrowed by their device_id tag: {body}");

    // Rollups gathered a moment ago are stored before the export reads them.
    let (status, _, body) =
        export(s, &s.admin_key, &format!("kind=rollups&tier=1m&name={name}&device_id=a&format=ndjson")).await;
    assert_eq!(status, 200, "{body}");
    let rows = ndjson_rows(&body);
    let count: i64 = rows.iter().filter(|r| r["field"] == "value").map(|r| r["count"].as_i64().unwrap()).sum();
    assert_eq!(count, 2, "{body}");
    assert!(rows.iter().all(|r| r["tier"] == "1m" && r["tags"]["device_id"] == "a"), "{body}");
    let sum: f64 = rows.iter().filter(|r| r["field"] == "value").map(|r| r["sum"].as_f64().unwrap()).sum();
    assert_eq!(sum, 5.0);
    let (_, _, body) = export(s, &s.admin_key, &format!("kind=rollups&tier=1d&name={name}")).await;
    let days = csv_rows(&body);
    assert_eq!(
        days.iter().filter(|r| r["field"] == "value").map(|r| r["count"].parse::<i64>().unwrap()).sum::<i64>(),
        3
    );
    assert!(days.iter().all(|r| r["bucket_start"].ends_with("T00:00:00Z")), "{body}");
}

async fn analytics_tables_export(s: &TestServer) {
    let admin = Some(s.admin_key.as_str());
    let device = unique("kiosk-");
    s.register(&device).await;
    let marker = unique("m-");
    let change = json!({"device_id": device, "previous_state": "online", "new_state": "offline", "reason": marker});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/device-state-change", admin, Some(&change)).await;
    assert_eq!(status, 201, "{body}");
    let job = json!({"job_id": marker, "job_type": "restart", "device_id": device, "status": "success",
                     "duration_ms": 1200, "metadata": {"attempt": 1}});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/job-outcome", admin, Some(&job)).await;
    assert_eq!(status, 201, "{body}");
    let error = json!({"category": marker, "severity": "critical", "error_message": "disk, full", "device_id": device,
                       "context": {"mount": "/"}});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/error", admin, Some(&error)).await;
    assert_eq!(status, 201, "{body}");
    let activity = json!({"activity_type": "search", "search_query": marker, "duration_ms": 7});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/user-activity", admin, Some(&activity)).await;
    assert_eq!(status, 201, "{body}");

    let (_, _, body) = export(s, &s.admin_key, &format!("kind=state_changes&device_id={device}")).await;
    let rows = csv_rows(&body);
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!((rows[0]["new_state"].as_str(), rows[0]["reason"].as_str()), ("offline", marker.as_str()));

    let (_, _, body) = export(s, &s.admin_key, &format!("kind=job_outcomes&device_id={device}&format=ndjson")).await;
    let rows = ndjson_rows(&body);
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!((rows[0]["status"].clone(), rows[0]["duration_ms"].clone()), (json!("success"), json!(1200)));
    assert_eq!(rows[0]["metadata"], json!({"attempt": 1}));

    let (_, _, body) = export(s, &s.admin_key, &format!("kind=error_logs&device_id={device}")).await;
    let rows = csv_rows(&body);
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!((rows[0]["error_message"].as_str(), rows[0]["severity"].as_str()), ("disk, full", "critical"));
    assert_eq!(rows[0]["resolved"], "false");

    let (_, _, body) = export(s, &s.admin_key, "kind=user_activity&format=ndjson").await;
    let mine: Vec<Value> = ndjson_rows(&body).into_iter().filter(|r| r["search_query"] == json!(marker)).collect();
    assert_eq!(mine.len(), 1, "{body}");
    assert_eq!(mine[0]["duration_ms"], 7);

    // Request logs are written a moment after the answer.
    let mut last = String::new();
    for _ in 0..100 {
        let (_, _, body) = export(s, &s.admin_key, "kind=request_logs").await;
        let rows = csv_rows(&body);
        if rows.iter().any(|r| r["endpoint"] == "/api/v1/analytics/user-activity" && r["status_code"] == "201") {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the request log never showed the activity post: {last}");
}

/// More rows than one storage page: every row once, in order.
async fn long_exports_span_pages(s: &TestServer) {
    let name = unique("bulk");
    let rows = homepot_engine::EXPORT_PAGE * 2 + 7;
    let start = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 1_000_000_000_000;
    let lines: Vec<String> = (0..rows).map(|i| format!("{name},n={} value={i}i {}", i % 3, start + i as i64)).collect();
    let (status, body) = s.post_text("/write", &s.admin_key, &lines.join("\n")).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = export(s, &s.admin_key, &format!("kind=metrics&name={name}&format=ndjson")).await;
    assert_eq!(status, 200);
    let values: Vec<i64> = ndjson_rows(&body).iter().map(|r| r["fields"]["value"].as_i64().unwrap()).collect();
    assert_eq!(values, (0..rows as i64).collect::<Vec<_>>());
}

async fn refused_exports(s: &TestServer) {
    let device = unique("till-");
    let device_key = s.register(&device).await;
    let (status, _, _) = export(s, &device_key, &format!("kind=health&device_id={device}")).await;
    assert_eq!(status, 403, "a device key does not export");
    let response = s.client.get(s.url("/api/v1/export?kind=health")).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 401);

    for (query, loc) in [
        ("kind=everything", "kind"),
        ("kind=health&format=xml", "format"),
        ("kind=rollups&tier=1w", "tier"),
        ("kind=health&from=yesterday", "from"),
        ("kind=health&from=200&to=100", "from"),
        ("kind=request_logs&device_id=a", "device_id"),
        ("kind=health&name=cpu", "name"),
    ] {
        let (status, _, body) = export(s, &s.admin_key, query).await;
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["query", loc])), "{query}: {body}");
    }
    let (status, _, body) = export(s, &s.admin_key, "kind=health&device_id=nobody-here").await;
    assert_eq!(status, 404, "{body}");
    let response = s.client.get(s.url("/api/v1/export")).header("X-API-Key", &s.admin_key).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422, "kind is required");
}
