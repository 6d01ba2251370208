//! The OpenAPI document as served: poem-openapi's, with each operation's error answers
//! narrowed to the ones it can actually give.
//!
//! Every handler returns [`ApiError`](crate::error::ApiError), so poem-openapi lists all of
//! its statuses on every operation (`GET /health` would claim 409 and 415). The rules below
//! say which apply where, from what an operation has (a key, a body, parameters) and from
//! the few operations with statuses of their own. `tests/tests/http_openapi_statuses.rs`
//! checks them against what the server answers to schemathesis.

use std::collections::BTreeSet;

use serde_json::Value;

/// The statuses `ApiError` can answer with: the only ones narrowed here.
const ERROR_STATUSES: [u16; 12] = [401, 403, 404, 408, 409, 413, 415, 422, 429, 500, 503, 504];

/// Paths the rate limiter never refuses (`rate_limit::EXEMPT`).
const NOT_RATE_LIMITED: [&str; 3] = ["/health", "/api/v1/stats", "/metrics/stream"];

/// Operations any valid key may call: no role is checked.
const ANY_KEY: [(&str, &str); 1] = [("post", "/api/v1/analytics/user-activity")];

/// Operations that answer 404 without a path parameter: a device named in the body or the
/// query, no matching series, the analytics collection or the simulator switched off.
const NOT_FOUND_WITHOUT_PATH: [(&str, &str); 9] = [
    ("get", "/api/v1/query/range"),
    ("post", "/api/v1/containers/metrics"),
    ("post", "/api/v1/containers/requests"),
    ("post", "/api/v1/keys"),
    ("post", "/api/v1/analytics/user-activity"),
    ("post", "/api/v1/analytics/error"),
    ("post", "/api/v1/analytics/device-state-change"),
    ("post", "/api/v1/analytics/job-outcome"),
    ("post", "/api/v1/simulator/device-metrics"),
];

/// Operations that can conflict: a device id or rule id taken, the last admin key, an alert
/// already resolved.
const CONFLICTS: [(&str, &str); 4] = [
    ("post", "/api/v1/devices"),
    ("delete", "/api/v1/keys/{key_id}"),
    ("post", "/api/v1/alerts/rules"),
    ("post", "/api/v1/alerts/{alert_id}/ack"),
];

/// The dashboard's session operations: no security scheme (the key comes in the body, or the
/// session in its cookie), yet they check a key: 401 for none, 403 for a device key or a
/// missing CSRF token, 503 when storage cannot be asked.
const SESSION: [(&str, &str); 3] =
    [("post", "/api/v1/session"), ("get", "/api/v1/session"), ("delete", "/api/v1/session")];

/// Operations that wait for a device over MQTT.
const WAITS_FOR_DEVICE: [(&str, &str); 1] = [("post", "/api/v1/containers/requests")];

/// Unauthenticated operations that still read or write storage.
const STORAGE_WITHOUT_KEY: [(&str, &str); 3] =
    [("get", "/health"), ("get", "/api/health"), ("post", "/api/v1/simulator/device-metrics")];

/// The error statuses `method path` can answer with.
fn error_statuses(method: &str, path: &str, operation: &Value) -> BTreeSet<u16> {
    let listed = |table: &[(&str, &str)]| table.contains(&(method, path));
    let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
    let parameters = operation["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
    let has = |place: &str| parameters.iter().any(|p| p["in"] == place);
    let body = operation.get("requestBody");
    // Line protocol is read whatever its Content-Type, as InfluxDB reads it.
    let typed_body = body.is_some_and(|b| b["content"].as_object().is_some_and(|c| !c.contains_key("text/plain")));

    // Any operation can meet an unexpected fault.
    let mut statuses = BTreeSet::from([500]);
    if secured {
        // A key not in the cache is looked up in storage.
        statuses.extend([401, 503]);
        if !listed(&ANY_KEY) {
            statuses.insert(403);
        }
    }
    if listed(&SESSION) {
        statuses.extend([401, 403, 503]);
    }
    if listed(&STORAGE_WITHOUT_KEY) {
        statuses.insert(503);
    }
    if !NOT_RATE_LIMITED.contains(&path) {
        statuses.insert(429);
    }
    if has("path") || listed(&NOT_FOUND_WITHOUT_PATH) {
        statuses.insert(404);
    }
    if has("query") {
        statuses.insert(422);
    }
    if body.is_some() {
        statuses.extend([408, 413, 422]);
        // Ingest waits for storage and answers 503 when its queue is full.
        statuses.insert(503);
    }
    if typed_body {
        statuses.insert(415);
    }
    // An `Idempotency-Key` first used on another kind of request.
    if listed(&CONFLICTS) || parameters.iter().any(|p| p["in"] == "header" && p["name"] == "Idempotency-Key") {
        statuses.insert(409);
    }
    if listed(&WAITS_FOR_DEVICE) {
        statuses.insert(504);
    }
    statuses
}

/// Removes from `document` the error responses each operation cannot give.
fn narrow(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else { return };
    for (path, operations) in paths.iter_mut() {
        let Some(operations) = operations.as_object_mut() else { continue };
        for (method, operation) in operations.iter_mut() {
            let allowed = error_statuses(method, path, operation);
            if let Some(responses) = operation["responses"].as_object_mut() {
                // Ranges (`4XX`) and `default` are an operation's own: kept.
                responses.retain(|status, _| {
                    status.parse::<u16>().map_or(true, |s| !ERROR_STATUSES.contains(&s) || allowed.contains(&s))
                });
            }
        }
    }
}

/// `spec` (poem-openapi's JSON text) with every operation's error answers narrowed.
pub(crate) fn narrowed(spec: &str) -> String {
    match serde_json::from_str::<Value>(spec) {
        Ok(mut document) => {
            narrow(&mut document);
            serde_json::to_string_pretty(&document).unwrap_or_else(|_| spec.to_owned())
        }
        Err(_) => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(document: &Value, method: &str, path: &str) -> Vec<u16> {
        document["paths"][path][method]["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect()
    }

    #[test]
    fn each_operation_lists_what_it_can_answer() {
        let document: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        for (method, path, expected) in [
            ("get", "/health", vec![200, 503]),
            ("get", "/api/v1/stats", vec![200]),
            ("post", "/api/v1/devices", vec![201, 401, 403, 408, 409, 413, 415, 422, 429, 500, 503]),
            ("get", "/api/v1/metrics/names", vec![200, 401, 403, 429, 500, 503]),
            ("post", "/write", vec![204, 400, 401, 403, 408, 409, 413, 422, 429, 500, 503]),
            ("get", "/api/v1/devices/{device_id}/health", vec![200, 401, 403, 404, 422, 429, 500, 503]),
            ("post", "/api/v1/analytics/user-activity", vec![201, 401, 404, 408, 413, 415, 422, 429, 500, 503]),
            ("get", "/metrics/stream", vec![200, 401, 403, 500, 503]),
        ] {
            assert_eq!(statuses(&document, method, path), expected, "{method} {path}");
        }
    }
}
