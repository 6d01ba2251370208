//! JSON adapters for the four collection endpoints. Required fields are those the original
//! analytics model keeps non-null and the client must supply; lengths follow the model's columns.
//! `metadata` and `extra_data` are accepted as the same free-form object (the original API's clients
//! send either).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::analytics::{ErrorLog, JobOutcome, JobStatus, Severity, StateChange, UserActivity};
use crate::ingest::json_reader::{ObjectReader, parse_object};
use crate::validation::{ErrorKind, ErrorSink, ValidationErrors, check_int_range, check_len};

/// Deepest nesting accepted in a free-form object, so a stored document stays readable by
/// any JSON tooling and cannot be a recursion bomb.
pub(crate) const MAX_METADATA_DEPTH: usize = 16;
/// Longest free text (messages, stack traces, search queries), in characters.
/// Longest free text (search queries, error messages, stack traces).
pub const MAX_TEXT: usize = 65_536;
/// Longest short label: an activity type, a category, a state, an error code.
pub const MAX_LABEL: usize = 50;
/// Longest identifier: a device, session, element, user, job or endpoint.
pub const MAX_IDENTIFIER: usize = 255;
/// Longest page URL or reason.
pub const MAX_SENTENCE: usize = 500;
/// Longest job type.
pub const MAX_JOB_TYPE: usize = 100;

/// A string field of at most `max` characters (and at least one).
fn text(r: &ObjectReader<'_>, sink: &mut ErrorSink, field: &str, required: bool, max: usize) -> Option<String> {
    let value = if required { r.required_str(sink, field) } else { r.optional_str(sink, field) }?;
    check_len(sink, r.loc(), field, value, 1, max);
    Some(value.to_owned())
}

fn non_negative(r: &ObjectReader<'_>, sink: &mut ErrorSink, field: &str) -> Option<i64> {
    let value = r.optional_int(sink, field)?;
    check_int_range(sink, r.loc(), field, value, 0, i64::from(i32::MAX));
    Some(value)
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `metadata`, or its alias `extra_data`, or `context` for error logs: an object stored intact.
fn free_form(r: &ObjectReader<'_>, sink: &mut ErrorSink, names: &[&str]) -> Map<String, Value> {
    let present: Vec<&str> = names.iter().copied().filter(|n| r.is_present(n)).collect();
    if present.len() > 1 {
        sink.at(r.loc(), present[1], ErrorKind::Inconsistent, format!("give either {} or {}", present[0], present[1]));
        return Map::new();
    }
    let Some(name) = present.first() else { return Map::new() };
    let Some(map) = r.optional_object(sink, name) else { return Map::new() };
    if 1 + map.values().map(depth).max().unwrap_or(0) > MAX_METADATA_DEPTH {
        sink.at(r.loc(), name, ErrorKind::TooLarge, format!("nested deeper than {MAX_METADATA_DEPTH} levels"));
    }
    map.clone()
}

fn one_of<T>(
    r: &ObjectReader<'_>,
    sink: &mut ErrorSink,
    field: &str,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Option<T> {
    let raw = r.required_str(sink, field)?;
    let parsed = parse(raw);
    if parsed.is_none() {
        let permitted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        sink.at(
            r.loc(),
            field,
            ErrorKind::NotOneOf,
            format!("value is not a valid enumeration member; permitted: {}", permitted.join(", ")),
        );
    }
    parsed
}

/// `POST /api/v1/analytics/user-activity`: the activity of the user holding `user_id`.
///
/// # Errors
/// Every missing, mistyped or out-of-range field.
pub fn parse_user_activity(bytes: &[u8], user_id: &str, at: DateTime<Utc>) -> Result<UserActivity, ValidationErrors> {
    let map = parse_object(bytes)?;
    let r = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let activity = UserActivity {
        timestamp: at,
        user_id: user_id.to_owned(),
        activity_type: text(&r, &mut sink, "activity_type", true, MAX_LABEL).unwrap_or_default(),
        session_id: text(&r, &mut sink, "session_id", false, MAX_IDENTIFIER),
        page_url: text(&r, &mut sink, "page_url", false, MAX_SENTENCE),
        element_id: text(&r, &mut sink, "element_id", false, MAX_IDENTIFIER),
        search_query: text(&r, &mut sink, "search_query", false, MAX_TEXT),
        duration_ms: non_negative(&r, &mut sink, "duration_ms"),
        metadata: free_form(&r, &mut sink, &["metadata", "extra_data"]),
    };
    sink.finish().map(|()| activity)
}

/// `POST /api/v1/analytics/error`.
///
/// # Errors
/// Every missing, mistyped or out-of-range field; a severity outside the four levels.
pub fn parse_error_log(bytes: &[u8], at: DateTime<Utc>) -> Result<ErrorLog, ValidationErrors> {
    let map = parse_object(bytes)?;
    let r = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let error = ErrorLog {
        timestamp: at,
        category: text(&r, &mut sink, "category", true, MAX_LABEL).unwrap_or_default(),
        severity: one_of(&r, &mut sink, "severity", Severity::parse, &names).unwrap_or(Severity::Error),
        error_code: text(&r, &mut sink, "error_code", false, MAX_LABEL),
        error_message: text(&r, &mut sink, "error_message", true, MAX_TEXT).unwrap_or_default(),
        stack_trace: text(&r, &mut sink, "stack_trace", false, MAX_TEXT),
        endpoint: text(&r, &mut sink, "endpoint", false, MAX_IDENTIFIER),
        user_id: text(&r, &mut sink, "user_id", false, MAX_IDENTIFIER),
        device_id: text(&r, &mut sink, "device_id", false, MAX_IDENTIFIER),
        context: free_form(&r, &mut sink, &["context"]),
        resolved: r.optional_bool(&mut sink, "resolved").unwrap_or(false),
    };
    sink.finish().map(|()| error)
}

/// `POST /api/v1/analytics/device-state-change`, recorded by `recorded_by` (the posting
/// key's fingerprint). The posted `changed_by` is kept as it is; without one, the change is
/// attributed to the recorder.
///
/// # Errors
/// Every missing, mistyped or out-of-range field.
pub fn parse_state_change(bytes: &[u8], recorded_by: &str, at: DateTime<Utc>) -> Result<StateChange, ValidationErrors> {
    let map = parse_object(bytes)?;
    let r = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let change = StateChange {
        timestamp: at,
        device_id: text(&r, &mut sink, "device_id", true, MAX_IDENTIFIER).unwrap_or_default(),
        previous_state: text(&r, &mut sink, "previous_state", false, MAX_LABEL),
        new_state: text(&r, &mut sink, "new_state", true, MAX_LABEL).unwrap_or_default(),
        changed_by: text(&r, &mut sink, "changed_by", false, MAX_IDENTIFIER).unwrap_or_else(|| recorded_by.to_owned()),
        recorded_by: Some(recorded_by.to_owned()),
        reason: text(&r, &mut sink, "reason", false, MAX_SENTENCE),
        metadata: free_form(&r, &mut sink, &["metadata", "extra_data"]),
    };
    sink.finish().map(|()| change)
}

/// `POST /api/v1/analytics/job-outcome`.
///
/// # Errors
/// Every missing, mistyped or out-of-range field; a status outside the four outcomes.
pub fn parse_job_outcome(bytes: &[u8], at: DateTime<Utc>) -> Result<JobOutcome, ValidationErrors> {
    let map = parse_object(bytes)?;
    let r = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    let outcome = JobOutcome {
        timestamp: at,
        job_id: text(&r, &mut sink, "job_id", true, MAX_IDENTIFIER).unwrap_or_default(),
        job_type: text(&r, &mut sink, "job_type", true, MAX_JOB_TYPE).unwrap_or_default(),
        device_id: text(&r, &mut sink, "device_id", false, MAX_IDENTIFIER),
        status: one_of(&r, &mut sink, "status", JobStatus::parse, &names).unwrap_or(JobStatus::Failed),
        duration_ms: non_negative(&r, &mut sink, "duration_ms"),
        error_code: text(&r, &mut sink, "error_code", false, MAX_LABEL),
        error_message: text(&r, &mut sink, "error_message", false, MAX_TEXT),
        retry_count: non_negative(&r, &mut sink, "retry_count").unwrap_or(0),
        initiated_by: text(&r, &mut sink, "initiated_by", false, MAX_IDENTIFIER),
        metadata: free_form(&r, &mut sink, &["metadata", "extra_data"]),
    };
    sink.finish().map(|()| outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    fn locs(result: Result<impl std::fmt::Debug, ValidationErrors>) -> Vec<(String, ErrorKind)> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors()
                .iter()
                .map(|e| (e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join("."), e.kind))
                .collect(),
        }
    }

    #[test]
    fn documented_examples_are_accepted() {
        let view =
            json!({"activity_type": "page_view", "page_url": "/dashboard", "session_id": "s-1", "duration_ms": 1500});
        let activity = parse_user_activity(view.to_string().as_bytes(), "key:1", at()).unwrap();
        assert_eq!((activity.activity_type.as_str(), activity.duration_ms), ("page_view", Some(1500)));
        let search = json!({"activity_type": "search", "page_url": "/dashboard", "search_query": "device status",
                            "extra_data": {"results_count": 5}});
        let activity = parse_user_activity(search.to_string().as_bytes(), "key:1", at()).unwrap();
        assert_eq!(Value::Object(activity.metadata), json!({"results_count": 5}));

        let error = json!({"category": "frontend", "severity": "error", "error_message": "x is undefined",
                           "stack_trace": "at f (app.js:1)", "context": {"url": "/", "user_agent": "UA"}});
        let error = parse_error_log(error.to_string().as_bytes(), at()).unwrap();
        assert_eq!((error.severity, error.resolved), (Severity::Error, false));

        let change = json!({"device_id": "device-123", "previous_state": "online", "new_state": "offline",
                            "reason": "Network timeout", "metadata": {"last_seen": "2025-12-01T10:00:00Z"}});
        let change = parse_state_change(change.to_string().as_bytes(), "key:1", at()).unwrap();
        assert_eq!(change.new_state, "offline");

        let job = json!({"job_id": "job-456", "job_type": "device_restart", "device_id": "device-123",
                         "status": "success", "duration_ms": 5000, "initiated_by": "user@example.com"});
        let job = parse_job_outcome(job.to_string().as_bytes(), at()).unwrap();
        assert_eq!((job.status, job.retry_count), (JobStatus::Success, 0));
    }

    #[test]
    fn every_bad_field_is_reported() {
        assert_eq!(
            locs(parse_error_log(b"{}", at())),
            [
                ("category".into(), ErrorKind::Missing),
                ("severity".into(), ErrorKind::Missing),
                ("error_message".into(), ErrorKind::Missing)
            ]
        );
        let bad = json!({"job_id": "", "job_type": 5, "status": "done", "duration_ms": -1, "metadata": []});
        assert_eq!(
            locs(parse_job_outcome(bad.to_string().as_bytes(), at())),
            [
                ("job_id".into(), ErrorKind::TooShort),
                ("job_type".into(), ErrorKind::NotString),
                ("status".into(), ErrorKind::NotOneOf),
                ("duration_ms".into(), ErrorKind::TooSmall),
                ("metadata".into(), ErrorKind::NotObject)
            ]
        );
        let both = json!({"activity_type": "click", "metadata": {}, "extra_data": {}});
        assert_eq!(
            locs(parse_user_activity(both.to_string().as_bytes(), "u", at())),
            [("extra_data".into(), ErrorKind::Inconsistent)]
        );
        assert_eq!(locs(parse_state_change(b"[1]", "u", at())), [(String::new(), ErrorKind::NotObject)]);
    }

    #[test]
    fn deep_metadata_is_refused() {
        let mut deep = json!(1);
        for _ in 0..MAX_METADATA_DEPTH {
            deep = json!({ "a": deep });
        }
        let doc = json!({"activity_type": "click", "metadata": deep.clone()});
        assert_eq!(locs(parse_user_activity(doc.to_string().as_bytes(), "u", at())), []);
        let doc = json!({"activity_type": "click", "metadata": {"a": deep}});
        assert_eq!(
            locs(parse_user_activity(doc.to_string().as_bytes(), "u", at())),
            [("metadata".into(), ErrorKind::TooLarge)]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_user_activity(&bytes, "u", at());
            let _ = parse_error_log(&bytes, at());
            let _ = parse_state_change(&bytes, "u", at());
            let _ = parse_job_outcome(&bytes, at());
        }

        #[test]
        fn metadata_is_kept_intact(key in "[a-z]{1,8}", n in any::<i64>(), s in ".{0,20}") {
            let metadata = json!({ key: [n, s, {"nested": true}] });
            let doc = json!({"activity_type": "interaction", "metadata": metadata});
            let activity = parse_user_activity(doc.to_string().as_bytes(), "u", at()).unwrap();
            prop_assert_eq!(Value::Object(activity.metadata), metadata);
        }
    }
}
