//! The statuses the OpenAPI document lists are the ones the server gives. schemathesis
//! (PyPI) generates requests for every operation from the served document, with its
//! `status_code_conformance` check on; the server's own request log then tells which status
//! each operation actually answered, and every one must be documented for that operation.
//! Skips with a notice when schemathesis (`st`) is not installed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use homepot_http::{AnalyticsConfig, ServerConfig};
use homepot_tests::{Backend, TestServer, open_store};
use sea_orm::{ConnectionTrait, Database, Statement};

fn schemathesis_available() -> bool {
    Command::new("st").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn answered_statuses_are_documented() {
    if !schemathesis_available() {
        eprintln!("SKIPPED answered_statuses_are_documented: install schemathesis (pip install schemathesis)");
        return;
    }
    let (store, dir) = open_store(Backend::Sqlite, "statuses").await.expect("SQLite");
    let dir = dir.expect("a SQLite file");
    let database = format!("sqlite://{}", dir.path().join("homepot.db").display());
    // Every route logged, and the simulator on so that it is exercised too.
    let config = ServerConfig {
        simulator: true,
        analytics: AnalyticsConfig { skip: Vec::new(), ..AnalyticsConfig::default() },
        ..ServerConfig::default()
    };
    // The directory stays here: the database is read after the server has stopped.
    let s = TestServer::start_on(Arc::new(store), None, config).await;
    s.register("pos-terminal-001").await;
    let (_, spec) = s.call(reqwest::Method::GET, "/openapi.json", None, None).await;

    let (url, key) = (s.url("/openapi.json"), format!("X-API-Key: {}", s.admin_key));
    // Blocking, on its own thread: the server runs on this test's runtime meanwhile.
    // schemathesis keeps a cache in its working directory: a scratch one, not the checkout.
    let scratch = tempfile::tempdir().expect("scratch directory");
    let cwd = scratch.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("st")
            .current_dir(cwd)
            .args(["run", &url, "-H", &key])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,ignored_auth",
                "--max-examples",
                "8",
                "--workers",
                "2",
            ])
            // Neither ends by itself.
            .args(["--exclude-path", "/metrics/stream", "--exclude-path", "/ws"])
            // No serializer for snappy protobuf: remote write is tested with encoded requests
            // and real senders (remote_write.rs).
            .args(["--exclude-path", "/api/v1/write"])
            .args(["--seed", "1", "--no-color"])
            .output()
    })
    .await
    .expect("schemathesis thread")
    .expect("run schemathesis");
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    let database_url = database.clone();
    s.shutdown().await;

    // The request log, written by the server itself (shutdown drained it).
    let db = Database::connect(database_url).await.expect("open the server's database");
    let _keep = &dir;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT method, endpoint, status_code, COUNT(*) AS n FROM api_request_logs GROUP BY 1, 2, 3",
        ))
        .await
        .expect("read the request log");
    let mut observed: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for row in &rows {
        let method: String = row.try_get("", "method").unwrap();
        let endpoint: String = row.try_get("", "endpoint").unwrap();
        let status: i32 = row.try_get("", "status_code").unwrap();
        observed.entry((method.to_lowercase(), endpoint)).or_default().insert(u16::try_from(status).unwrap());
    }
    let mut undocumented = Vec::new();
    let mut operations = 0;
    for ((method, endpoint), statuses) in &observed {
        let Some(responses) = spec["paths"][endpoint.as_str()][method.as_str()]["responses"].as_object() else {
            continue; // not an operation: generated paths that match no route
        };
        operations += 1;
        let documented: BTreeSet<u16> = responses.keys().filter_map(|k| k.parse().ok()).collect();
        eprintln!("{method} {endpoint}: answered {statuses:?}, documented {documented:?}");
        for status in statuses.difference(&documented) {
            undocumented.push(format!("{method} {endpoint} answered {status}"));
        }
    }
    assert!(operations >= 30, "schemathesis reached {operations} operations:\n{report}");
    assert!(undocumented.is_empty(), "undocumented statuses: {undocumented:#?}\n{report}");
    assert!(run.status.success(), "schemathesis found failures:\n{report}");
}
