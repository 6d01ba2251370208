//! Who hears of an alert. [`Silence`]s mute matching alerts for a while (they are still
//! recorded); [`Receiver`]s are a generic JSON webhook or an Alertmanager, each with its own
//! route (severities, label matchers, repeat interval). A [`Notification`] is one message to
//! one receiver, with a stable id so that a receiver can drop a repeat after an ambiguous
//! failure; its body is built here for both receiver kinds.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::lifecycle::Alert;
use super::reader::Reader;
use super::rule::{MAX_DURATION_S, Severity, check_id, format_duration};
use crate::validation::{ErrorKind, ErrorSink, ValidationErrors, parse_instant};

/// `name=value` or `name!=value` against an alert's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// The label.
    pub name: String,
    /// The value compared with.
    pub value: String,
    /// `!=` rather than `=`.
    pub negate: bool,
}

impl Matcher {
    /// Reads `name=value` or `name!=value`.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, value, negate) = match text.split_once("!=") {
            Some((name, value)) => (name, value, true),
            None => {
                let (name, value) = text.split_once('=')?;
                (name, value, false)
            }
        };
        let name = name.trim();
        (!name.is_empty()).then(|| Matcher { name: name.to_owned(), value: value.trim().to_owned(), negate })
    }

    /// Whether `labels` satisfy it; a missing label counts as empty.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let found = labels.get(&self.name).map_or("", String::as_str);
        (found == self.value) != self.negate
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.name, if self.negate { "!=" } else { "=" }, self.value)
    }
}

fn read_matchers(reader: &Reader<'_>, sink: &mut ErrorSink) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    for (i, text) in reader.strings("matchers", sink).into_iter().enumerate() {
        match Matcher::parse(&text) {
            Some(m) => matchers.push(m),
            None => {
                let mut loc = super::reader::under(reader.loc(), "matchers");
                loc.push(crate::LocSegment::Index(i));
                sink.push(crate::FieldError::new(loc, ErrorKind::BadFormat, "expected name=value or name!=value"));
            }
        }
    }
    matchers
}

/// Mutes the notifications of matching alerts between two instants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Its identifier.
    pub id: String,
    /// Every matcher must match an alert's labels.
    pub matchers: Vec<Matcher>,
    /// From.
    pub starts_at: DateTime<Utc>,
    /// Until.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: Option<String>,
    /// Why.
    pub comment: Option<String>,
}

impl Silence {
    /// Reads a silence; `id` and `starts_at` default to the given values.
    ///
    /// # Errors
    /// Every malformed, missing or unknown field; an end not after its start.
    pub fn parse(document: &Value, id: String, now: DateTime<Utc>) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        let Some(reader) = Reader::object(document, &[], &mut sink) else {
            return Err(sink.finish().expect_err("an error was recorded"));
        };
        reader.deny_unknown(
            &["id", "matchers", "starts_at", "ends_at", "created_by", "comment"],
            "a silence",
            &mut sink,
        );
        let id = reader.string("id", &mut sink).unwrap_or(id);
        check_id(&mut sink, &[], &id);
        let matchers = read_matchers(&reader, &mut sink);
        if matchers.is_empty() && !reader.has("matchers") {
            reader.missing("matchers", &mut sink);
        } else if matchers.is_empty() {
            sink.at(&[], "matchers", ErrorKind::TooShort, "a silence needs at least one matcher");
        }
        let instant = |key: &str, sink: &mut ErrorSink| {
            let text = reader.string(key, sink)?;
            let parsed = parse_instant(&text);
            if parsed.is_none() {
                sink.at(&[], key, ErrorKind::BadFormat, "expected an RFC 3339 time");
            }
            parsed
        };
        let starts_at = instant("starts_at", &mut sink).unwrap_or(now);
        let ends_at = if reader.has("ends_at") {
            instant("ends_at", &mut sink)
        } else {
            reader.missing("ends_at", &mut sink);
            None
        };
        if ends_at.is_some_and(|end| end <= starts_at) {
            sink.at(&[], "ends_at", ErrorKind::Inconsistent, "ends_at must be after starts_at");
        }
        let created_by = reader.string("created_by", &mut sink);
        let comment = reader.string("comment", &mut sink);
        sink.finish()?;
        Ok(Silence { id, matchers, starts_at, ends_at: ends_at.unwrap_or(starts_at), created_by, comment })
    }

    /// Whether it is in force at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether it mutes an alert with `labels` at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.active(now) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// What a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// homepot's JSON message, one per notification.
    Webhook,
    /// Alertmanager's `POST /api/v2/alerts`.
    Alertmanager,
}

/// Where notifications go, and which ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receiver {
    /// Its identifier.
    pub id: String,
    /// What it speaks.
    pub kind: ReceiverKind,
    /// Where: the webhook's URL, or the Alertmanager's base URL.
    pub url: String,
    /// Only alerts of these severities (all when empty).
    pub severities: Vec<Severity>,
    /// Only alerts whose labels match every matcher.
    pub matchers: Vec<Matcher>,
    /// Resend a firing, unacknowledged alert this often (seconds; 0: never).
    pub repeat_interval_s: u64,
    /// Also tell it when an alert resolves.
    pub send_resolved: bool,
}

impl Receiver {
    /// Reads a receiver; `id` is used when the document has none.
    ///
    /// # Errors
    /// Every malformed, missing or unknown field; a URL that is not http(s).
    pub fn parse(document: &Value, id: Option<String>) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        let Some(reader) = Reader::object(document, &[], &mut sink) else {
            return Err(sink.finish().expect_err("an error was recorded"));
        };
        let fields = ["id", "kind", "url", "severities", "matchers", "repeat_interval", "send_resolved"];
        reader.deny_unknown(&fields, "a receiver", &mut sink);
        let id = match reader.string("id", &mut sink).or(id) {
            Some(id) => {
                check_id(&mut sink, &[], &id);
                id
            }
            None => {
                reader.missing("id", &mut sink);
                String::new()
            }
        };
        let kind = match reader.string("kind", &mut sink).as_deref() {
            None | Some("webhook") => Some(ReceiverKind::Webhook),
            Some("alertmanager") => Some(ReceiverKind::Alertmanager),
            Some(_) => {
                sink.at(&[], "kind", ErrorKind::NotOneOf, "expected one of: webhook, alertmanager");
                None
            }
        };
        let url = reader.required_string("url", &mut sink).unwrap_or_default();
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)) && url.len() > s.len());
        if reader.has("url") && !scheme_ok {
            sink.at(&[], "url", ErrorKind::BadFormat, "expected an http:// or https:// URL");
        }
        let mut severities = Vec::new();
        for (i, raw) in reader.strings("severities", &mut sink).into_iter().enumerate() {
            match Severity::parse(&raw) {
                Some(s) => severities.push(s),
                None => sink.push(crate::FieldError::new(
                    vec!["severities".into(), crate::LocSegment::Index(i)],
                    ErrorKind::NotOneOf,
                    "expected one of: critical, major, minor, warning, info",
                )),
            }
        }
        let matchers = read_matchers(&reader, &mut sink);
        let repeat_interval_s = reader.duration("repeat_interval", MAX_DURATION_S, &mut sink).unwrap_or(4 * 3600);
        let send_resolved = reader.boolean("send_resolved", &mut sink).unwrap_or(true);
        sink.finish()?;
        Ok(Receiver {
            id,
            kind: kind.unwrap_or(ReceiverKind::Webhook),
            url,
            severities,
            matchers,
            repeat_interval_s,
            send_resolved,
        })
    }

    /// The receiver as the document [`Receiver::parse`] reads.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind,
            "url": self.url,
            "severities": self.severities,
            "matchers": self.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "repeat_interval": format_duration(self.repeat_interval_s),
            "send_resolved": self.send_resolved,
        })
    }

    /// Whether this receiver's route takes `alert`.
    pub fn routes(&self, alert: &Alert) -> bool {
        (self.severities.is_empty() || self.severities.contains(&alert.severity))
            && self.matchers.iter().all(|m| m.matches(&alert.labels))
    }
}

/// Why a notification was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// The alert began firing.
    Firing,
    /// A reminder that it still fires.
    Repeat,
    /// It resolved.
    Resolved,
}

/// Where a notification's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Refused for good (a 4xx other than 429), or given up on.
    Failed,
    /// Not sent: a silence muted the alert.
    Suppressed,
}

impl DeliveryState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Suppressed => "suppressed",
        }
    }

    /// The state named `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed, DeliveryState::Suppressed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// One message about one alert to one receiver, and how its delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across every attempt: receivers deduplicate by it.
    pub id: String,
    /// The alert.
    pub alert_id: String,
    /// The receiver.
    pub receiver_id: String,
    /// Why it was made.
    pub kind: NotificationKind,
    /// The alert as it was when the message was made.
    pub alert: Alert,
    /// Where delivery stands.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this.
    pub next_attempt_at: DateTime<Utc>,
    /// What the last failed attempt met.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Notification {
    /// The JSON webhook's body: the notification id, the status, and the alert with the
    /// incident's start, end and duration.
    pub fn webhook_body(&self) -> Value {
        let a = &self.alert;
        let ends = a.resolved_at;
        json!({
            "id": self.id,
            "status": match self.kind { NotificationKind::Resolved => "resolved", _ => "firing" },
            "repeat": self.kind == NotificationKind::Repeat,
            "alert": {
                "id": a.id,
                "rule_id": a.rule_id,
                "subject": a.subject,
                "device_id": a.device_id,
                "severity": a.severity,
                "summary": a.summary,
                "value": a.value,
                "labels": a.labels,
                "starts_at": rfc3339(a.started_at),
                "fired_at": a.fired_at.map(rfc3339),
                "ends_at": ends.map(rfc3339),
                "duration_seconds": a.duration(ends.unwrap_or(self.created_at)).num_seconds(),
                "acknowledged_by": a.ack.as_ref().map(|ack| ack.by.clone()),
            },
            "sent_for": rfc3339(self.created_at),
        })
    }

    /// Alertmanager's `POST /api/v2/alerts` body: one alert whose `endsAt` marks it resolved.
    /// Alertmanager identifies alerts by their labels, so repeats merge there.
    pub fn alertmanager_body(&self, generator_url: &str) -> Value {
        let a = &self.alert;
        let mut annotations = BTreeMap::from([
            ("summary".to_owned(), a.summary.clone()),
            ("homepot_alert_id".to_owned(), a.id.clone()),
            ("homepot_notification_id".to_owned(), self.id.clone()),
        ]);
        if let Some(value) = a.value {
            annotations.insert("value".to_owned(), value.to_string());
        }
        let mut alert = json!({
            "labels": a.labels,
            "annotations": annotations,
            "startsAt": rfc3339(a.started_at),
            "generatorURL": generator_url,
        });
        if let Some(end) = a.resolved_at {
            alert["endsAt"] = json!(rfc3339(end));
        }
        json!([alert])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_799_000_000, 0).expect("valid")
    }

    #[test]
    fn receivers_want_http_urls_and_known_fields() {
        let ok = Receiver::parse(
            &json!({"kind": "alertmanager", "url": "http://127.0.0.1:9093",
            "severities": ["critical"], "matchers": ["team=ops", "env!=dev"], "repeat_interval": "1h"}),
            Some("am".into()),
        )
        .expect("valid");
        assert_eq!(ok.repeat_interval_s, 3600);
        assert_eq!(Receiver::parse(&ok.to_json(), None).expect("reads back"), ok);
        for bad in [json!({"url": "ftp://x"}), json!({"url": "file:///etc/passwd"}), json!({"url": "http://"})] {
            let errors = Receiver::parse(&bad, Some("r".into())).unwrap_err();
            assert_eq!(errors.errors()[0].loc, vec![crate::LocSegment::from("url")], "{bad}");
        }
        let unknown = Receiver::parse(&json!({"url": "http://x", "retries": 3}), Some("r".into())).unwrap_err();
        assert_eq!(unknown.errors()[0].loc, vec![crate::LocSegment::from("retries")]);
    }

    #[test]
    fn silences_mute_matching_alerts_within_their_window() {
        let silence = Silence::parse(
            &json!({"matchers": ["device_id=pos-1", "severity!=critical"], "ends_at": "2027-01-15T08:00:00Z"}),
            "s1".into(),
            now(),
        )
        .expect("valid");
        let labels = |device: &str, severity: &str| {
            BTreeMap::from([("device_id".to_owned(), device.to_owned()), ("severity".to_owned(), severity.to_owned())])
        };
        assert!(silence.mutes(&labels("pos-1", "warning"), now()));
        assert!(!silence.mutes(&labels("pos-1", "critical"), now()));
        assert!(!silence.mutes(&labels("pos-2", "warning"), now()));
        assert!(!silence.mutes(&labels("pos-1", "warning"), silence.ends_at));
        let backwards = Silence::parse(
            &json!({"matchers": ["a=b"], "starts_at": "2027-01-15T08:00:00Z", "ends_at": "2027-01-15T07:00:00Z"}),
            "s".into(),
            now(),
        )
        .unwrap_err();
        assert_eq!(backwards.errors()[0].loc, vec![crate::LocSegment::from("ends_at")]);
    }
}
