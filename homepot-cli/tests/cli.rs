//! The `homepot` binary itself: device management, the OpenAPI printout, serving until
//! SIGTERM, and the fleet simulator against a served instance.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_homepot");

fn homepot(args: &[&str], database: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HOMEPOT_DATABASE_URL", database)
        .env_remove("HOMEPOT_ADMIN_KEY")
        .env_remove("ANALYTICS_RETENTION_DAYS")
        .output()
        .expect("run homepot")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn device_commands_manage_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let added = homepot(
        &["device", "add", "pos-terminal-001", "--name", "Till 1", "--type", "pos", "--label", "zone=zone-1"],
        &db,
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    let out = text(&added.stdout);
    assert!(out.contains("Registered device 'pos-terminal-001'"), "{out}");
    assert!(out.contains("API key (shown once): hpk_"), "{out}");

    let again = homepot(&["device", "add", "pos-terminal-001"], &db);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already registered"));

    let bad = homepot(&["device", "add", "not valid"], &db);
    assert!(!bad.status.success());

    let listed = homepot(&["device", "list"], &db);
    let out = text(&listed.stdout);
    assert!(out.contains("pos-terminal-001") && out.contains("zone=zone-1") && out.contains("1 device(s)"), "{out}");

    let removed = homepot(&["device", "remove", "pos-terminal-001"], &db);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(text(&homepot(&["device", "list"], &db).stdout).contains("0 device(s)"));
    assert!(!homepot(&["device", "remove", "pos-terminal-001"], &db).status.success());
}

#[test]
fn openapi_prints_the_document() {
    let out = Command::new(BIN).arg("openapi").output().expect("run");
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(spec["paths"]["/api/v1/devices/{device_id}/health"]["post"].is_object());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `homepot serve` and returns it with the admin key it printed on first start.
fn serve(dir: &std::path::Path, port: u16) -> (Child, String) {
    serve_logging(dir, port, &[], Stdio::null())
}

/// [`serve`] with extra environment variables and its log going to `log`.
fn serve_logging(dir: &std::path::Path, port: u16, env: &[(&str, &str)], log: Stdio) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("HOMEPOT_DATABASE_URL", format!("sqlite://{}", dir.join("serve.db").display()))
        .env_remove("HOMEPOT_ADMIN_KEY")
        .env_remove("HOMEPOT_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("first line");
    let key = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(key.starts_with("hpk_"), "admin key printed once: {line}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, key)
}

fn terminate(mut child: Child) {
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "SIGTERM is a clean exit, got {status}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_takes_simulated_traffic_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (server, key) = serve(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    let simulated = Command::new(BIN)
        .args(["simulate", "--devices", "3", "--interval", "0.2", "--rounds", "2", "--url", &url, "--admin-key", &key])
        .output()
        .expect("run simulate");
    let err = text(&simulated.stderr);
    assert!(simulated.status.success(), "{err}");
    assert!(err.contains("Sent 6 health checks: 6 accepted ("), "{err}");
    assert!(err.contains("), 0 failed."), "{err}");

    let gateway = Command::new(BIN)
        .args([
            "simulate",
            "gateway",
            "--nodes",
            "3",
            "--interval",
            "0.2",
            "--rounds",
            "2",
            "--url",
            &url,
            "--admin-key",
            &key,
        ])
        .output()
        .expect("run the mock gateway");
    let err = text(&gateway.stderr);
    assert!(gateway.status.success(), "{err}");
    assert!(err.contains("Sent 6 node reports: 6 accepted ("), "{err}");
    terminate(server);

    // What the server stored outlives it.
    let db = format!("sqlite://{}", dir.path().join("serve.db").display());
    let listed = text(&homepot(&["device", "list"], &db).stdout);
    assert!(listed.contains("sim-pos-0001") && listed.contains("spore-node-0003"), "{listed}");
    assert!(listed.contains("6 device(s)"), "{listed}");
}

#[test]
fn containers_request_reports_the_devices_answer() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    if std::net::TcpStream::connect(("127.0.0.1", 1883)).is_err() {
        eprintln!("SKIPPED containers_request_reports_the_devices_answer: no MQTT broker at 127.0.0.1:1883");
        return;
    }
    // A device that answers every request with the status it was told to give: on
    // `res/<requestId>/<status>`, or as the documentation shows it, on `res//request` with the
    // status and correlation id in the payload.
    let responder = |thing: String, status: &'static str, documented: bool| {
        let (client, mut connection) =
            Client::new(MqttOptions::new(format!("device-{thing}-{status}"), "127.0.0.1", 1883), 16);
        client.subscribe(format!("command//{thing}/req/+/request"), QoS::AtLeastOnce).unwrap();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let request_id = p.topic.split('/').nth(4).unwrap_or_default().to_owned();
                        let (topic, payload) = if documented {
                            let answer = serde_json::json!({
                                "topic": homepot_core::container::ditto_topic(&thing, "request"),
                                "headers": {"content-type": "application/json", "correlation-id": request_id},
                                "path": "/features/Metrics/outbox/messages/request",
                                "status": status.parse::<u16>().unwrap(),
                            });
                            (format!("command//{thing}/res//request"), answer.to_string())
                        } else {
                            (format!("command//{thing}/res/{request_id}/{status}"), "{}".to_owned())
                        };
                        let _ = client.publish(topic, QoS::AtLeastOnce, false, payload);
                    }
                    Err(_) => return,
                    _ => {}
                }
            }
        });
        ready.recv_timeout(Duration::from_secs(10)).expect("responder subscribed");
    };
    let request = |thing: &str| {
        Command::new(BIN)
            .args(["containers", "request", "--thing", thing, "--frequency", "2s", "--id", "cpu.utilization"])
            .args(["--timeout", "10"])
            .output()
            .expect("run containers request")
    };
    for (form, documented) in [("topic", false), ("documented", true)] {
        let thing = format!("cli{}{form}:device:edge:containers", std::process::id());
        responder(thing.clone(), "204", documented);
        let out = request(&thing);
        assert!(out.status.success(), "{form}: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("Accepted (204)."), "{form}: {}", text(&out.stdout));
    }
    let thing = format!("cli{}refused:device:edge:containers", std::process::id());
    responder(thing.clone(), "400", true);
    let out = request(&thing);
    assert!(!out.status.success(), "a refusal is a failure");
    assert!(text(&out.stderr).contains("refused with 400"), "{}", text(&out.stderr));
}

/// `homepot retention run` deletes analytics older than the retention period and keeps the
/// rest.
#[test]
fn retention_run_deletes_old_analytics() {
    use homepot_core::analytics::StateChange;
    use homepot_storage::AnalyticsStore;
    use homepot_storage_sea::{SeaOrmStore, StoreOptions};

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("retention.db").display());
    let change = |days_ago: i64| StateChange {
        timestamp: chrono::Utc::now() - chrono::TimeDelta::days(days_ago),
        device_id: "pos-1".to_owned(),
        previous_state: None,
        new_state: "online".to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: Some("system".to_owned()),
        reason: None,
        metadata: serde_json::Map::new(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = |db: &str| {
        runtime.block_on(async {
            let store = SeaOrmStore::connect(db, &StoreOptions::default()).await.unwrap();
            store.state_history("pos-1", chrono::DateTime::UNIX_EPOCH, 100).await.unwrap().len()
        })
    };
    runtime.block_on(async {
        let store = SeaOrmStore::connect(&db, &StoreOptions::default()).await.unwrap();
        for days_ago in [100, 95, 40, 1] {
            store.insert_state_change(&change(days_ago)).await.unwrap();
        }
    });

    let run = homepot(&["retention", "run"], &db);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).starts_with("deleted 2 analytics records older than"), "{}", text(&run.stdout));
    assert_eq!(count(&db), 2);
    let run = homepot(&["retention", "run", "--days", "30"], &db);
    assert!(text(&run.stdout).starts_with("deleted 1 "), "{}", text(&run.stdout));
    assert_eq!(count(&db), 1);
    let never = homepot(&["retention", "run", "--days", "0"], &db);
    assert!(never.status.success(), "{}", text(&never.stderr));
    assert!(text(&never.stdout).starts_with("analytics are kept forever"), "{}", text(&never.stdout));
    assert_eq!(count(&db), 1, "0 days keeps analytics forever");
    assert!(text(&never.stdout).contains("deleted 0 health checks, 0 metric points and 0 rollup buckets"));
    let refused = homepot(&["retention", "run", "--rollup-1h-retention-days", "10"], &db);
    assert!(!refused.status.success(), "hours kept shorter than minutes");
    assert!(
        text(&refused.stderr).contains("1h rollups must be kept at least as long as 1m data"),
        "{}",
        text(&refused.stderr)
    );
}

/// `homepot export` writes a table from the database, to stdout or a file, and refuses what
/// the table does not have.
#[test]
fn export_writes_a_table_as_csv_or_ndjson() {
    use homepot_core::analytics::StateChange;
    use homepot_storage::AnalyticsStore;
    use homepot_storage_sea::{SeaOrmStore, StoreOptions};

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("export.db").display());
    let change = |minute: i64, device: &str, state: &str| StateChange {
        timestamp: chrono::DateTime::from_timestamp(1_790_000_000 + 60 * minute, 0).unwrap(),
        device_id: device.to_owned(),
        previous_state: None,
        new_state: state.to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: None,
        reason: Some("a, \"b\"".to_owned()),
        metadata: serde_json::Map::new(),
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SeaOrmStore::connect(&db, &StoreOptions::default()).await.unwrap();
        for c in [change(2, "pos-1", "offline"), change(1, "pos-1", "online"), change(3, "pos-2", "online")] {
            store.insert_state_change(&c).await.unwrap();
        }
    });

    let out = homepot(&["export", "--kind", "state_changes", "--device-id", "pos-1"], &db);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "timestamp,device_id,previous_state,new_state,changed_by,recorded_by,reason,metadata\r\n\
         2026-09-21T14:14:20Z,pos-1,,online,system,,\"a, \"\"b\"\"\",{}\r\n\
         2026-09-21T14:15:20Z,pos-1,,offline,system,,\"a, \"\"b\"\"\",{}\r\n"
    );

    let file = dir.path().join("states.ndjson");
    let args = ["export", "--kind", "state_changes", "--format", "ndjson", "--from", "1790000090", "-o"];
    let out = homepot(&[&args[..], &[file.to_str().unwrap()]].concat(), &db);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["device_id"].as_str().unwrap()).collect::<Vec<_>>(), ["pos-1", "pos-2"]);

    let refused = homepot(&["export", "--kind", "request_logs", "--device-id", "pos-1"], &db);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("request_logs rows have no device"), "{}", text(&refused.stderr));
    let unknown = homepot(&["export", "--kind", "everything"], &db);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("one of health, metrics, rollups"), "{}", text(&unknown.stderr));
}

/// `homepot key add|list|revoke` rotate a device's key and manage read keys, and refuse to
/// revoke the last admin key.
#[test]
fn key_commands_rotate_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("keys.db").display());
    assert!(homepot(&["device", "add", "pos-1"], &db).status.success());

    let added = homepot(&["key", "add", "--device", "pos-1"], &db);
    let out = text(&added.stdout);
    assert!(added.status.success() && out.contains("Issued device key") && out.contains("hpk_"), "{out}");
    let listed = text(&homepot(&["key", "list", "--device", "pos-1"], &db).stdout);
    assert!(listed.contains("2 key(s)") && !listed.contains("hpk_"), "{listed}");
    let first_id = listed.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    let revoked = homepot(&["key", "revoke", &first_id, "--device", "pos-1"], &db);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert!(text(&homepot(&["key", "list", "--device", "pos-1"], &db).stdout).contains("1 key(s)"));
    assert!(!homepot(&["key", "revoke", &first_id, "--device", "pos-1"], &db).status.success(), "twice");

    let read = homepot(&["key", "add", "--role", "read"], &db);
    assert!(text(&read.stdout).contains("Issued read key"), "{}", text(&read.stdout));
    let admin = homepot(&["key", "add", "--role", "admin"], &db);
    let admin_id = text(&admin.stdout).split_whitespace().nth(3).unwrap().trim_end_matches('.').to_owned();
    let last = homepot(&["key", "revoke", &admin_id], &db);
    assert!(!last.status.success());
    assert!(text(&last.stderr).contains("last admin key"), "{}", text(&last.stderr));
    assert!(!homepot(&["key", "add", "--device", "ghost"], &db).status.success());
}

/// Sends one HTTP/1.1 request and returns the status line.
fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Requests that present keys every way a client can: none of them reaches the log.
fn present_keys_every_way(port: u16, key: &str) {
    let line = "cpu,host=a usage=1";
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("homepot:{key}"))
    };
    for request in [
        format!(
            "POST /write?db=x&u=homepot&p={key} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
            line.len()
        ),
        format!("GET /api/v1/devices HTTP/1.1\r\nHost: h\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"),
        format!("GET /metrics HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"),
        format!("GET /metrics HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n"),
        format!("GET /metrics/stream?api_key={key}&token={key} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        "GET /api/v1/devices?p=wrong-key-in-the-url HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let status = http(port, &request);
        assert!(status.starts_with("HTTP/1.1 "), "{status}");
    }
}

/// No log line carries a credential, text logs to a file carry no colour codes, every line
/// names the instance, and `HOMEPOT_LOG_FORMAT=json` writes one JSON object per line.
#[test]
fn logs_carry_no_credentials_and_no_colour_codes() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join(format!("{format}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let port = free_port();
        let env = [("HOMEPOT_LOG_FORMAT", format), ("HOMEPOT_INSTANCE_ID", "edge-7")];
        let (server, key) = serve_logging(dir.path(), port, &env, Stdio::from(log));
        present_keys_every_way(port, &key);
        terminate(server);

        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("/write"), "the access log names the path: {log}");
        for secret in [key.as_str(), "wrong-key-in-the-url"] {
            assert!(!log.contains(secret), "{format} log contains a credential:\n{log}");
        }
        assert!(log.contains("p=REDACTED"), "{log}");
        assert!(!log.contains('\u{1b}'), "{format} log to a file has colour codes:\n{log}");
        if format == "json" {
            for line in log.lines() {
                let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(event["level"].is_string() && event["message"].is_string(), "{line}");
                assert_eq!(event["instance_id"], "edge-7", "{line}");
            }
        } else {
            assert!(log.lines().all(|line| line.starts_with("instance_id=edge-7 ")), "{log}");
        }
    }
}

#[test]
fn alert_rules_come_from_yaml_toml_and_json_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("alerts.db").display());
    let yaml = dir.path().join("rules.yaml");
    std::fs::write(
        &yaml,
        "rules:\n  - id: pos-silent\n    kind: absent\n    heartbeats: 3\n    severity: critical\n    scope:\n      labels: {site: berlin}\n  - id: cpu-hot\n    kind: threshold\n    series: {name: device_system, field: cpu_percent}\n    op: '>'\n    value: 90\n    clear: 80\n    for: 5m\n",
    )
    .unwrap();
    let toml = dir.path().join("rules.toml");
    std::fs::write(&toml, "[[rules]]\nid = \"disk-filling\"\nkind = \"rate\"\nseries = { name = \"node_flash\", field = \"usage_percent\" }\nop = \">\"\nper_hour = 5\nwindow = \"1h\"\n").unwrap();
    let checked = homepot(&["alert", "rule", "check", yaml.to_str().unwrap()], &db);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("2 valid rule(s)"));
    for file in [&yaml, &toml] {
        let added = homepot(&["alert", "rule", "add", file.to_str().unwrap()], &db);
        assert!(added.status.success(), "{}", text(&added.stderr));
    }
    let listed = text(&homepot(&["alert", "rule", "list"], &db).stdout);
    let ids: Vec<String> = listed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["cpu-hot", "disk-filling", "pos-silent"]);
    assert!(homepot(&["alert", "rule", "delete", "cpu-hot"], &db).status.success());
    assert!(!homepot(&["alert", "rule", "delete", "cpu-hot"], &db).status.success(), "already gone");

    // Every problem of a bad file, at its place, and a server refuses to start with it.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"rules": [{"id": "ok", "kind": "unhealthy"}, {"id": "x", "kind": "threshold", "series": {"name": "m", "field": "f"}, "op": ">", "value": 50, "clear": 60, "tresh": 1}]}"#).unwrap();
    let refused = homepot(&["alert", "rule", "check", bad.to_str().unwrap()], &db);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(error.contains("rules.1.clear") && error.contains("rules.1.tresh"), "{error}");
    let served = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--alert-rules", bad.to_str().unwrap()])
        .env("HOMEPOT_DATABASE_URL", &db)
        .output()
        .expect("run");
    assert!(!served.status.success() && text(&served.stderr).contains("rules.1.clear"), "{}", text(&served.stderr));
}
