//! The Prometheus query API against Prometheus itself. The same generated samples (one a
//! minute per series for 50 minutes: counters with a reset, gauges) are remote-written to
//! homepot and to a real Prometheus 2.42 (Debian's `prometheus`, receiving remote write); a
//! fixed list of PromQL queries then runs through both, instant at two times and as range
//! queries at two steps, and every answer must agree within float tolerance. Then
//! `promtool query` reads homepot as it reads Prometheus, and vmalert evaluates a recording
//! and an alerting rule with homepot as its datasource. Skips with a notice without the
//! binaries; the API's own shapes and errors are checked on every backend without them.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homepot_core::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use homepot_http::ServerConfig;
use homepot_tests::{Backend, KilledOnDrop, TestServer, free_port, on_every_backend, unique};
use serde_json::Value;

on_every_backend!(answers_have_prometheus_shapes_and_errors);

/// One `WriteRequest` per minute, oldest first, ending at `end_ms`: every series' sample of
/// that minute. `prefix` keeps runs on a shared database apart.
fn generated(prefix: &str, end_ms: i64, minutes: i64) -> Vec<WriteRequest> {
    let name = |n: &str| format!("{prefix}_{n}");
    let mut counters: BTreeMap<(&str, &str, &str), f64> = BTreeMap::new();
    (0..minutes)
        .map(|m| {
            let t = end_ms - (minutes - 1 - m) * 60_000;
            let mut timeseries = Vec::new();
            let mut push = |name: String, labels: &[(&str, &str)], value: f64| {
                let mut l = vec![Label { name: "__name__".into(), value: name }];
                l.extend(labels.iter().map(|(k, v)| Label { name: (*k).into(), value: (*v).into() }));
                timeseries.push(TimeSeries { labels: l, samples: vec![Sample { value, timestamp: t }] });
            };
            for (i, job) in ["api", "web"].into_iter().enumerate() {
                for (j, code) in ["200", "500"].into_iter().enumerate() {
                    for instance in ["a:80", "b:80"] {
                        let total = counters.entry((job, code, instance)).or_insert(0.0);
                        // A restart of instance b at minute 25 resets its counters.
                        if instance == "b:80" && m == 25 {
                            *total = 0.0;
                        }
                        *total += ((m * 7 + i as i64 * 3 + j as i64 * 5) % 11) as f64
                            + if code == "200" { 20.0 } else { 1.0 };
                        push(name("requests_total"), &[("code", code), ("instance", instance), ("job", job)], *total);
                    }
                }
            }
            for (k, room) in ["a", "b", "c"].into_iter().enumerate() {
                let temperature = 20.0 + k as f64 + ((m + k as i64 * 4) % 9) as f64 * 0.25;
                push(name("temperature"), &[("room", room)], temperature);
            }
            for shard in ["0", "1", "2", "3"] {
                let depth = ((m * 13 + shard.parse::<i64>().unwrap() * 17) % 40) as f64;
                push(name("queue"), &[("shard", shard)], depth);
            }
            WriteRequest { timeseries, metadata: vec![] }
        })
        .collect()
}

/// The queries both must answer alike; `P` stands for the metric prefix.
const QUERIES: &[&str] = &[
    "P_temperature",
    r#"P_temperature{room="a"}"#,
    r#"P_temperature{room!="a"}"#,
    r#"P_temperature{room=~"a|b"}"#,
    r#"P_temperature{room!~"a"}"#,
    r#"{__name__="P_temperature"}"#,
    r#"{__name__=~"P_temp.*", room="b"}"#,
    r#"{__name__=~"P_(queue|temperature)", room!="c"}"#,
    "rate(P_requests_total[5m])",
    "rate(P_requests_total[10m])",
    "irate(P_requests_total[5m])",
    "increase(P_requests_total[10m])",
    r#"increase(P_requests_total{instance="b:80"}[30m])"#,
    "delta(P_temperature[10m])",
    "avg_over_time(P_temperature[10m])",
    "min_over_time(P_temperature[10m])",
    "max_over_time(P_temperature[10m])",
    "sum_over_time(P_queue[10m])",
    "count_over_time(P_queue[10m])",
    "last_over_time(P_queue[10m])",
    "sum(P_queue)",
    "sum by (job) (rate(P_requests_total[5m]))",
    "sum without (instance) (P_requests_total)",
    "avg by (code) (P_requests_total)",
    "max(P_temperature)",
    "min by (room) (P_temperature)",
    "count(P_queue)",
    "count by (job) (P_requests_total)",
    "topk(2, P_queue)",
    "bottomk(1, P_temperature)",
    "topk(1, sum by (job, code) (rate(P_requests_total[5m])))",
    "P_temperature * 2 + 1",
    "P_temperature > 21",
    "P_temperature > bool 21",
    "100 - P_queue",
    "-P_queue",
    "P_queue % 7",
    r#"P_requests_total{code="500"} / ignoring(code) P_requests_total{code="200"}"#,
    r#"sum by (job) (P_requests_total{code="500"}) / on(job) sum by (job) (P_requests_total)"#,
    r#"rate(P_requests_total{job="api"}[15m]) * 60 >= 20"#,
    "P_temperature offset 5m",
    "rate(P_requests_total[5m] offset 10m)",
    "2 ^ 3 - 1",
];

/// `{labels: [(t, v)]}` of an answer, or the scalar as one series without labels.
fn normalize(answer: &Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    assert_eq!(answer["status"], "success", "{answer}");
    let data = &answer["data"];
    let point = |p: &Value| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().parse::<f64>().unwrap());
    let mut out = BTreeMap::new();
    match data["resultType"].as_str().unwrap() {
        "scalar" => {
            out.insert("{}".to_owned(), vec![point(&data["result"])]);
        }
        "vector" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), vec![point(&s["value"])]);
            }
        }
        "matrix" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), s["values"].as_array().unwrap().iter().map(point).collect());
            }
        }
        other => panic!("result type {other}"),
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

async fn get(client: &reqwest::Client, url: &str, key: Option<&str>, params: &[(&str, String)]) -> Value {
    let mut request = client.get(url).query(params);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("send").json().await.expect("JSON")
}

async fn remote_write(client: &reqwest::Client, url: &str, key: Option<&str>, request: &WriteRequest) {
    let mut call = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(encode(request));
    if let Some(key) = key {
        call = call.bearer_auth(key);
    }
    let response = call.send().await.expect("send");
    assert_eq!(response.status().as_u16(), 204, "{url}: {}", response.text().await.unwrap_or_default());
}

#[tokio::test]
async fn answers_agree_with_prometheus() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!("SKIPPED answers_agree_with_prometheus: install Debian's prometheus");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "promql_oracle", ServerConfig::default()).await.expect("SQLite");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let _prometheus = KilledOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{prometheus}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "Prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let prefix = unique("oracle").replace('-', "_");
    // The newest sample a little in the past, on a whole second, so both see the same "now".
    let end_ms = (chrono::Utc::now().timestamp() - 5) * 1_000;
    for request in generated(&prefix, end_ms, 50) {
        remote_write(&client, &format!("{}/api/v1/write", s.base), Some(&s.admin_key), &request).await;
        remote_write(&client, &format!("{prometheus}/api/v1/write"), None, &request).await;
    }

    let mut compared = 0;
    for template in QUERIES {
        let query = template.replace("P_", &format!("{prefix}_"));
        let instants = [end_ms, end_ms - 7 * 60_000 - 30_000];
        let ranges = [(end_ms - 30 * 60_000, end_ms, "60"), (end_ms - 20 * 60_000, end_ms - 5 * 60_000, "45s")];
        let mut cases: Vec<(&str, Vec<(&str, String)>)> = instants
            .iter()
            .map(|t| ("query", vec![("query", query.clone()), ("time", format!("{}", *t as f64 / 1_000.0))]))
            .collect();
        for (start, end, step) in ranges {
            cases.push((
                "query_range",
                vec![
                    ("query", query.clone()),
                    ("start", format!("{}", start / 1_000)),
                    ("end", format!("{}", end / 1_000)),
                    ("step", step.to_owned()),
                ],
            ));
        }
        for (endpoint, params) in cases {
            let ours = get(&client, &format!("{}/api/v1/{endpoint}", s.base), Some(&s.admin_key), &params).await;
            let theirs = get(&client, &format!("{prometheus}/api/v1/{endpoint}"), None, &params).await;
            let (ours_n, theirs_n) = (normalize(&ours), normalize(&theirs));
            assert_eq!(
                ours_n.keys().collect::<Vec<_>>(),
                theirs_n.keys().collect::<Vec<_>>(),
                "{endpoint} {params:?}: series differ\nhomepot: {ours}\nprometheus: {theirs}"
            );
            assert!(!theirs_n.is_empty() || query.contains("> 21"), "{query}: an empty answer compares nothing");
            for (labels, points) in &theirs_n {
                let mine = &ours_n[labels];
                assert_eq!(mine.len(), points.len(), "{endpoint} {params:?} {labels}: {mine:?} vs {points:?}");
                for (a, b) in mine.iter().zip(points) {
                    assert!(a.0 == b.0 && close(a.1, b.1), "{endpoint} {params:?} {labels}: {mine:?} vs {points:?}");
                }
            }
            compared += 1;
        }
    }
    assert_eq!(compared, QUERIES.len() * 4);

    // promtool reads homepot as it reads Prometheus. It has no auth flags: the key goes as
    // basic auth in the URL, which homepot takes as it takes the header.
    // Off the runtime's thread: the server under test runs on it.
    let promtool = async |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let out =
            tokio::task::spawn_blocking(move || Command::new("promtool").args(&args).output().expect("run promtool"))
                .await
                .unwrap();
        assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let server = s.base.replace("http://", &format!("http://promtool:{}@", s.admin_key));
    let temperature = format!("{prefix}_temperature");
    let instant = promtool(&["query", "instant", &server, &format!("{temperature}{{room=\"b\"}}")]).await;
    assert!(instant.contains(&format!("{temperature}{{room=\"b\"}} =>")), "{instant}");
    let range = promtool(&[
        "query",
        "range",
        "--start",
        &format!("{}", end_ms / 1_000 - 600),
        "--end",
        &format!("{}", end_ms / 1_000),
        "--step",
        "1m",
        &server,
        &format!("max({temperature})"),
    ])
    .await;
    assert_eq!(range.matches(" @[").count(), 11, "{range}");
    let series = promtool(&["query", "series", "--match", &temperature, &server]).await;
    assert_eq!(series.lines().count(), 3, "{series}");
    let labels = promtool(&["query", "labels", &server, "room"]).await;
    assert_eq!(labels.split_whitespace().collect::<Vec<_>>(), ["a", "b", "c"], "{labels}");
    s.shutdown().await;
}

#[tokio::test]
async fn vmalert_evaluates_rules_against_homepot() {
    if Command::new("vmalert").arg("-version").output().is_err() {
        eprintln!("SKIPPED vmalert_evaluates_rules_against_homepot: install Debian's victoria-metrics");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "vmalert", ServerConfig::default()).await.expect("SQLite");
    let notified = homepot_tests::webhook::Webhook::start().await;
    let name = unique("vm_temperature_").replace('-', "_");
    let (status, body) =
        s.post_text("/write", &s.admin_key, &format!("{name},room=a value=30\n{name},room=b value=20")).await;
    assert_eq!(status, 204, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        "groups:\n  - name: homepot\n    interval: 1s\n    rules:\n      - record: {name}:max\n        expr: max by (room) ({name})\n\
         \x20     - alert: RoomHot\n        expr: {name} > 25\n        labels:\n          severity: page\n"
    );
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let port = free_port();
    let _vmalert = KilledOnDrop(
        Command::new("vmalert")
            .arg(format!("-rule={}", dir.path().join("rules.yml").display()))
            .arg(format!("-datasource.url={}", s.base))
            .arg(format!("-datasource.bearerToken={}", s.admin_key))
            .arg(format!("-remoteWrite.url={}", s.base))
            .arg(format!("-remoteWrite.bearerToken={}", s.admin_key))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!("-notifier.url={}", notified.url()))
            .arg("-evaluationInterval=1s")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vmalert"),
    );
    // The alerting rule fires on room a and reaches the notifier.
    let alerts = notified
        .wait_for(60, |got| {
            got.iter()
                .flat_map(|b| b.as_array().cloned().unwrap_or_default())
                .any(|a| a["labels"]["alertname"] == "RoomHot")
        })
        .await;
    let fired: Vec<Value> = alerts.iter().flat_map(|b| b.as_array().cloned().unwrap_or_default()).collect();
    assert!(fired.iter().any(|a| a["labels"]["room"] == "a" && a["labels"]["severity"] == "page"), "{fired:?}");
    assert!(fired.iter().all(|a| a["labels"]["room"] != "b"), "room b is not hot: {fired:?}");
    // The recording rule's result comes back to homepot by remote write, and reads back.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(
            &client,
            &s.url("/api/v1/query"),
            Some(&s.admin_key),
            &[("query", format!("{name}:max{{room=\"a\"}}"))],
        )
        .await;
        if answer["data"]["result"][0]["value"][1] == "30" {
            break;
        }
        assert!(Instant::now() < deadline, "the recorded series never arrived: {answer}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.shutdown().await;
}

async fn answers_have_prometheus_shapes_and_errors(s: &TestServer) {
    let client = &s.client;
    let prefix = unique("shape").replace('-', "_");
    let end_ms = chrono::Utc::now().timestamp_millis() / 1_000 * 1_000;
    for request in generated(&prefix, end_ms, 3) {
        remote_write(client, &s.url("/api/v1/write"), Some(&s.admin_key), &request).await;
    }
    let key = Some(s.admin_key.as_str());
    let url = |path: &str| s.url(path);
    let temperature = format!("{prefix}_temperature");

    let answer = get(client, &url("/api/v1/query"), key, &[("query", format!("{temperature}{{room=\"a\"}}"))]).await;
    assert_eq!(answer["data"]["resultType"], "vector", "{answer}");
    assert_eq!(answer["data"]["result"][0]["metric"], serde_json::json!({"__name__": temperature, "room": "a"}));
    assert!(answer["data"]["result"][0]["value"][1].is_string(), "values are strings: {answer}");

    // Grafana posts its queries as a form.
    let posted: Value = client
        .post(url("/api/v1/query"))
        .bearer_auth(&s.admin_key)
        .form(&[("query", format!("count({temperature})"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["data"]["result"][0]["value"][1], "3", "{posted}");

    let series = get(client, &url("/api/v1/series"), key, &[("match[]", temperature.clone())]).await;
    assert_eq!(series["data"].as_array().unwrap().len(), 3, "{series}");
    let labels = get(client, &url("/api/v1/labels"), key, &[("match[]", temperature.clone())]).await;
    assert_eq!(labels["data"], serde_json::json!(["__name__", "room"]));
    let names = get(client, &url("/api/v1/label/__name__/values"), key, &[]).await;
    assert!(names["data"].as_array().unwrap().iter().any(|n| *n == temperature.as_str()), "{names}");
    let values = get(client, &url("/api/v1/label/room/values"), key, &[("match[]", temperature.clone())]).await;
    assert_eq!(values["data"], serde_json::json!(["a", "b", "c"]));
    let metadata = get(client, &url("/api/v1/metadata"), key, &[("metric", temperature.clone())]).await;
    assert_eq!(metadata["data"][&temperature][0]["type"], "unknown", "{metadata}");
    let build = get(client, &url("/api/v1/status/buildinfo"), key, &[]).await;
    assert_eq!(build["data"]["version"], "2.42.0");

    let status = |query: &str| {
        let request = client.get(url("/api/v1/query")).bearer_auth(&s.admin_key).query(&[("query", query)]);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (code, body) = status("sum((").await;
    assert_eq!((code, body["status"].clone(), body["errorType"].clone()), (400, "error".into(), "bad_data".into()));
    let (code, body) = status("histogram_quantile(0.9, rate(x[5m]))").await;
    assert_eq!((code, body["errorType"].clone()), (422, "execution".into()));
    assert_eq!(body["error"], "the function histogram_quantile() is not supported by homepot");
    let (code, body) = status(&format!("{temperature} + ignoring(room) {temperature}")).await;
    assert_eq!((code, body["errorType"].clone()), (422, "execution".into()), "{body}");
    let bad_step = get(
        client,
        &url("/api/v1/query_range"),
        key,
        &[("query", "1".into()), ("start", "100".into()), ("end", "200".into()), ("step", "0".into())],
    )
    .await;
    assert_eq!(bad_step["errorType"], "bad_data", "{bad_step}");
    let (_, device) = s
        .call(reqwest::Method::POST, "/api/v1/devices", key, Some(&serde_json::json!({"device_id": unique("pq-")})))
        .await;
    let refused =
        client.get(url("/api/v1/query")).bearer_auth(device["api_key"].as_str().unwrap()).query(&[("query", "1")]);
    assert_eq!(refused.send().await.unwrap().status().as_u16(), 403, "device keys read nothing");
}
