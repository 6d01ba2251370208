//! Alert rules: the five kinds (threshold, absent, unhealthy, rate of change, service), their
//! scope, severity, labels and annotation, read from a JSON document with every problem
//! reported at its field, and written back to the same shape.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::reader::{Reader, under};
use crate::validation::{ErrorKind, ErrorSink, LocSegment, ValidationErrors};

/// The longest `for`, window or repeat interval: 31 days.
pub const MAX_DURATION_S: u64 = 31 * 24 * 3600;

/// How urgent an alert is, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth a look.
    Warning,
    /// Degraded, not urgent.
    Minor,
    /// Needs attention soon.
    Major,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// Every severity, least first.
    pub const ALL: [Severity; 5] =
        [Severity::Info, Severity::Warning, Severity::Minor, Severity::Major, Severity::Critical];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// How a reading is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `<`
    Below,
    /// `<=`
    AtMost,
}

impl Comparator {
    const ALL: [Comparator; 4] = [Comparator::Above, Comparator::AtLeast, Comparator::Below, Comparator::AtMost];

    /// Its symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Above => ">",
            Comparator::AtLeast => ">=",
            Comparator::Below => "<",
            Comparator::AtMost => "<=",
        }
    }

    /// The comparator written `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// Whether `value` is on the alerting side of `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparator::Above => value > threshold,
            Comparator::AtLeast => value >= threshold,
            Comparator::Below => value < threshold,
            Comparator::AtMost => value <= threshold,
        }
    }

    /// Whether larger values alert.
    pub fn upward(self) -> bool {
        matches!(self, Comparator::Above | Comparator::AtLeast)
    }
}

/// One field of a series: a metric name, a field and tags the series must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRef {
    /// Metric name, e.g. `device_system` or `node_cpu`.
    pub name: String,
    /// Field, e.g. `cpu_percent`.
    pub field: String,
    /// Tags the series must have, with these values.
    pub tags: BTreeMap<String, String>,
}

/// Which subjects a rule watches: all, one device, or those whose labels match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    /// Only this device (or node).
    pub device_id: Option<String>,
    /// Only subjects whose labels (a device's labels, a series' tags) include these.
    pub labels: BTreeMap<String, String>,
}

impl Scope {
    /// Whether a subject of `device` (if any) with `labels` is in scope.
    pub fn admits<'a>(&self, device: Option<&str>, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.device_id.as_deref().is_none_or(|want| device == Some(want))
            && self.labels.iter().all(|(k, v)| label(k) == Some(v.as_str()))
    }

    fn is_all(&self) -> bool {
        self.device_id.is_none() && self.labels.is_empty()
    }
}

/// What a service rule measures per route, from the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Share of requests answered 4xx or 5xx, in percent.
    ErrorPercent,
    /// Share answered 5xx, in percent.
    ServerErrorPercent,
    /// 95th percentile latency, ms.
    P95Ms,
}

impl Measure {
    const ALL: [Measure; 3] = [Measure::ErrorPercent, Measure::ServerErrorPercent, Measure::P95Ms];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::ErrorPercent => "error_percent",
            Measure::ServerErrorPercent => "server_error_percent",
            Measure::P95Ms => "p95_ms",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// A series' latest value against a threshold, with optional hysteresis.
    Threshold {
        /// The series field.
        series: SeriesRef,
        /// The comparison.
        op: Comparator,
        /// The threshold.
        value: f64,
        /// Where a firing alert clears; the threshold itself when absent.
        clear: Option<f64>,
        /// How long the condition must hold before firing, seconds.
        for_s: u64,
    },
    /// A device has sent no health check for this many heartbeat intervals. Driven by the
    /// device registry, so a device that never reported is covered too.
    Absent {
        /// Missed heartbeats.
        heartbeats: u32,
    },
    /// A device reported `is_healthy: false` this many times in a row.
    Unhealthy {
        /// Consecutive unhealthy checks.
        count: u32,
    },
    /// A series' change per hour over a window, e.g. disk filling faster than 5 %/h.
    Rate {
        /// The series field.
        series: SeriesRef,
        /// The comparison.
        op: Comparator,
        /// Change per hour.
        per_hour: f64,
        /// The window the change is measured over, seconds.
        window_s: u64,
        /// How long the condition must hold before firing, seconds.
        for_s: u64,
    },
    /// A route's error share or p95 latency over a window, from the request log.
    Service {
        /// Only this route template (all routes when absent).
        route: Option<String>,
        /// Only this method.
        method: Option<String>,
        /// What is measured.
        measure: Measure,
        /// The comparison.
        op: Comparator,
        /// The threshold.
        value: f64,
        /// The window, seconds.
        window_s: u64,
        /// Fewer requests than this in the window say nothing.
        min_requests: u64,
        /// How long the condition must hold before firing, seconds.
        for_s: u64,
    },
}

impl RuleKind {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Absent { .. } => "absent",
            RuleKind::Unhealthy { .. } => "unhealthy",
            RuleKind::Rate { .. } => "rate",
            RuleKind::Service { .. } => "service",
        }
    }

    /// How long the condition must hold before an alert fires.
    pub fn for_s(&self) -> u64 {
        match self {
            RuleKind::Threshold { for_s, .. } | RuleKind::Rate { for_s, .. } | RuleKind::Service { for_s, .. } => {
                *for_s
            }
            RuleKind::Absent { .. } | RuleKind::Unhealthy { .. } => 0,
        }
    }
}

const KINDS: [&str; 5] = ["threshold", "absent", "unhealthy", "rate", "service"];
const COMMON: [&str; 8] = ["id", "name", "kind", "scope", "severity", "labels", "annotation", "enabled"];
const TEMPLATE_VARS: [&str; 7] = ["rule", "subject", "device_id", "value", "threshold", "severity", "name"];

/// An alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its identifier: 1–64 of `A–Z a–z 0–9 . _ -`.
    pub id: String,
    /// A readable name.
    pub name: Option<String>,
    /// What it watches.
    pub kind: RuleKind,
    /// Which subjects.
    pub scope: Scope,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// Labels its alerts carry, for silences and routes.
    pub labels: BTreeMap<String, String>,
    /// The alert's summary, with `{{device_id}}`, `{{value}}`, `{{threshold}}`, `{{subject}}`,
    /// `{{rule}}`, `{{severity}}`, `{{name}}` and `{{labels.KEY}}` filled in.
    pub annotation: Option<String>,
    /// Disabled rules are kept but not evaluated; their open alerts resolve.
    pub enabled: bool,
}

/// Whether `id` is a valid rule, silence or receiver id.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub(crate) fn check_id(sink: &mut ErrorSink, loc: &[LocSegment], id: &str) {
    if !valid_id(id) {
        sink.at(loc, "id", ErrorKind::BadFormat, "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'");
    }
}

/// Seconds in `text`: `90`, `90s`, `5m`, `1h30m`, `7d`, `500ms` (rounded up to whole seconds).
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    let (mut total_ms, mut rest) = (0u64, text);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return None,
        };
        rest = &rest[unit..];
        total_ms = total_ms.checked_add(number.checked_mul(ms)?)?;
    }
    Some(total_ms.div_ceil(1_000))
}

/// `seconds` as the shortest text [`parse_duration`] reads back.
pub fn format_duration(seconds: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

fn read_series(reader: &Reader<'_>, sink: &mut ErrorSink) -> Option<SeriesRef> {
    let Some(value) = reader.value("series") else {
        reader.missing("series", sink);
        return None;
    };
    let loc = under(reader.loc(), "series");
    let series = Reader::object(value, &loc, sink)?;
    series.deny_unknown(&["name", "field", "tags"], "series", sink);
    let name = series.required_string("name", sink);
    let field = series.required_string("field", sink);
    let tags = series.string_map("tags", sink);
    for (key, text) in [("name", &name), ("field", &field)] {
        if let Some(text) = text {
            crate::validation::check_len(sink, &loc, key, text, 1, 256);
        }
    }
    Some(SeriesRef { name: name?, field: field?, tags })
}

fn read_op(reader: &Reader<'_>, sink: &mut ErrorSink) -> Option<Comparator> {
    let raw = reader.required_string("op", sink)?;
    let op = Comparator::parse(&raw);
    if op.is_none() {
        sink.at(reader.loc(), "op", ErrorKind::NotOneOf, "expected one of: >, >=, <, <=");
    }
    op
}

fn check_template(sink: &mut ErrorSink, loc: &[LocSegment], template: &str) {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            sink.at(loc, "annotation", ErrorKind::BadFormat, "'{{' without a closing '}}'");
            return;
        };
        let name = rest[start + 2..start + end].trim();
        if !TEMPLATE_VARS.contains(&name) && name.strip_prefix("labels.").is_none_or(|k| k.is_empty()) {
            sink.at(
                loc,
                "annotation",
                ErrorKind::NotOneOf,
                format!("unknown placeholder '{name}'; known: {}, labels.KEY", TEMPLATE_VARS.join(", ")),
            );
        }
        rest = &rest[start + end + 2..];
    }
}

impl Rule {
    /// Reads a rule from its document, reporting every problem at its field.
    ///
    /// # Errors
    /// Every missing, malformed, unknown or contradictory field.
    pub fn parse(document: &Value) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        let rule = Self::read(document, &mut sink);
        sink.finish()?;
        rule.ok_or_else(|| {
            ValidationErrors::single(crate::FieldError::new(Vec::new(), ErrorKind::Inconsistent, "invalid rule"))
        })
    }

    fn read(document: &Value, sink: &mut ErrorSink) -> Option<Self> {
        let reader = Reader::object(document, &[], sink)?;
        let loc = reader.loc().to_vec();
        let id = reader.required_string("id", sink);
        if let Some(id) = &id {
            check_id(sink, &loc, id);
        }
        let name = reader.string("name", sink);
        let kind_name = reader.required_string("kind", sink);
        let severity = match reader.string("severity", sink) {
            None => Some(Severity::Warning),
            Some(raw) => {
                let severity = Severity::parse(&raw);
                if severity.is_none() {
                    sink.at(
                        &loc,
                        "severity",
                        ErrorKind::NotOneOf,
                        "expected one of: critical, major, minor, warning, info",
                    );
                }
                severity
            }
        };
        let labels = reader.string_map("labels", sink);
        let annotation = reader.string("annotation", sink);
        if let Some(template) = &annotation {
            check_template(sink, &loc, template);
        }
        let enabled = reader.boolean("enabled", sink).unwrap_or(true);
        let scope = match reader.value("scope") {
            None => Some(Scope::default()),
            Some(value) => {
                let at = under(&loc, "scope");
                Reader::object(value, &at, sink).map(|scope| {
                    scope.deny_unknown(&["device_id", "labels"], "scope", sink);
                    Scope { device_id: scope.string("device_id", sink), labels: scope.string_map("labels", sink) }
                })
            }
        };
        let kind = match kind_name.as_deref() {
            None => None,
            Some(kind) if !KINDS.contains(&kind) => {
                sink.at(&loc, "kind", ErrorKind::NotOneOf, format!("expected one of: {}", KINDS.join(", ")));
                None
            }
            Some(kind) => Self::read_kind(kind, &reader, sink),
        };
        Some(Rule { id: id?, name, kind: kind?, scope: scope?, severity: severity?, labels, annotation, enabled })
    }

    fn read_kind(kind: &str, reader: &Reader<'_>, sink: &mut ErrorSink) -> Option<RuleKind> {
        let loc = reader.loc().to_vec();
        let extra: &[&str] = match kind {
            "threshold" => &["series", "op", "value", "clear", "for"],
            "absent" => &["heartbeats"],
            "unhealthy" => &["count"],
            "rate" => &["series", "op", "per_hour", "window", "for"],
            _ => &["route", "method", "measure", "op", "value", "window", "min_requests", "for"],
        };
        let allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        reader.deny_unknown(&allowed, &format!("kind {kind}"), sink);
        let for_s = reader.duration("for", MAX_DURATION_S, sink).unwrap_or(0);
        let window = |sink: &mut ErrorSink| {
            let window = reader.duration("window", MAX_DURATION_S, sink);
            match window {
                None if !reader.has("window") => reader.missing("window", sink),
                Some(0) => sink.at(&loc, "window", ErrorKind::TooSmall, "ensure this duration is at least 1 s"),
                _ => {}
            }
            window.filter(|w| *w > 0)
        };
        match kind {
            "threshold" => {
                let series = read_series(reader, sink);
                let op = read_op(reader, sink);
                let value = reader.required_number("value", sink);
                let clear = reader.number("clear", sink);
                if let (Some(op), Some(value), Some(clear)) = (op, value, clear)
                    && (if op.upward() { clear > value } else { clear < value })
                {
                    let side = if op.upward() { "at or below" } else { "at or above" };
                    sink.at(
                        &loc,
                        "clear",
                        ErrorKind::Inconsistent,
                        format!("clear must be {side} the threshold {value} for op '{}'", op.as_str()),
                    );
                }
                Some(RuleKind::Threshold { series: series?, op: op?, value: value?, clear, for_s })
            }
            "absent" => {
                let heartbeats = reader.integer("heartbeats", 1, 10_000, sink);
                Some(RuleKind::Absent { heartbeats: heartbeats.map_or(3, |n| n as u32) })
            }
            "unhealthy" => {
                let count = reader.integer("count", 1, 10_000, sink);
                Some(RuleKind::Unhealthy { count: count.map_or(3, |n| n as u32) })
            }
            "rate" => {
                let series = read_series(reader, sink);
                let op = read_op(reader, sink);
                let per_hour = reader.required_number("per_hour", sink);
                let window_s = window(sink);
                Some(RuleKind::Rate { series: series?, op: op?, per_hour: per_hour?, window_s: window_s?, for_s })
            }
            _ => {
                let measure = reader.required_string("measure", sink).and_then(|raw| {
                    let measure = Measure::parse(&raw);
                    if measure.is_none() {
                        sink.at(
                            &loc,
                            "measure",
                            ErrorKind::NotOneOf,
                            "expected one of: error_percent, server_error_percent, p95_ms",
                        );
                    }
                    measure
                });
                let op = read_op(reader, sink);
                let value = reader.required_number("value", sink);
                let window_s = window(sink);
                let min_requests = reader.integer("min_requests", 0, u64::MAX, sink).unwrap_or(10);
                Some(RuleKind::Service {
                    route: reader.string("route", sink),
                    method: reader.string("method", sink).map(|m| m.to_ascii_uppercase()),
                    measure: measure?,
                    op: op?,
                    value: value?,
                    window_s: window_s?,
                    min_requests,
                    for_s,
                })
            }
        }
    }

    /// The rule as the document [`Rule::parse`] reads.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "id": self.id,
            "kind": self.kind.name(),
            "severity": self.severity.as_str(),
            "enabled": self.enabled,
        });
        let map = doc.as_object_mut().expect("an object");
        if let Some(name) = &self.name {
            map.insert("name".into(), json!(name));
        }
        if !self.scope.is_all() {
            let mut scope = serde_json::Map::new();
            if let Some(device) = &self.scope.device_id {
                scope.insert("device_id".into(), json!(device));
            }
            if !self.scope.labels.is_empty() {
                scope.insert("labels".into(), json!(self.scope.labels));
            }
            map.insert("scope".into(), Value::Object(scope));
        }
        if !self.labels.is_empty() {
            map.insert("labels".into(), json!(self.labels));
        }
        if let Some(annotation) = &self.annotation {
            map.insert("annotation".into(), json!(annotation));
        }
        let series = |s: &SeriesRef| {
            let mut v = json!({"name": s.name, "field": s.field});
            if !s.tags.is_empty() {
                v["tags"] = json!(s.tags);
            }
            v
        };
        let for_s = self.kind.for_s();
        if for_s > 0 {
            map.insert("for".into(), json!(format_duration(for_s)));
        }
        match &self.kind {
            RuleKind::Threshold { series: s, op, value, clear, .. } => {
                map.insert("series".into(), series(s));
                map.insert("op".into(), json!(op.as_str()));
                map.insert("value".into(), json!(value));
                if let Some(clear) = clear {
                    map.insert("clear".into(), json!(clear));
                }
            }
            RuleKind::Absent { heartbeats } => {
                map.insert("heartbeats".into(), json!(heartbeats));
            }
            RuleKind::Unhealthy { count } => {
                map.insert("count".into(), json!(count));
            }
            RuleKind::Rate { series: s, op, per_hour, window_s, .. } => {
                map.insert("series".into(), series(s));
                map.insert("op".into(), json!(op.as_str()));
                map.insert("per_hour".into(), json!(per_hour));
                map.insert("window".into(), json!(format_duration(*window_s)));
            }
            RuleKind::Service { route, method, measure, op, value, window_s, min_requests, .. } => {
                if let Some(route) = route {
                    map.insert("route".into(), json!(route));
                }
                if let Some(method) = method {
                    map.insert("method".into(), json!(method));
                }
                map.insert("measure".into(), json!(measure.as_str()));
                map.insert("op".into(), json!(op.as_str()));
                map.insert("value".into(), json!(value));
                map.insert("window".into(), json!(format_duration(*window_s)));
                map.insert("min_requests".into(), json!(min_requests));
            }
        }
        doc
    }

    /// The threshold an alert of this rule is compared with, for messages.
    pub fn threshold(&self) -> Option<f64> {
        match &self.kind {
            RuleKind::Threshold { value, .. } | RuleKind::Service { value, .. } => Some(*value),
            RuleKind::Rate { per_hour, .. } => Some(*per_hour),
            RuleKind::Absent { heartbeats } => Some(f64::from(*heartbeats)),
            RuleKind::Unhealthy { count } => Some(f64::from(*count)),
        }
    }

    /// The labels of an alert of this rule about `subject`: the rule's labels with
    /// `alertname`, `severity`, `subject` and (when known) `device_id`.
    pub fn alert_labels(&self, subject: &str, device: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), self.id.clone());
        labels.insert("severity".into(), self.severity.as_str().into());
        labels.insert("subject".into(), subject.into());
        if let Some(device) = device {
            labels.insert("device_id".into(), device.into());
        }
        labels
    }

    /// The annotation with its placeholders filled, or a default summary.
    pub fn summary(&self, subject: &str, device: Option<&str>, value: Option<f64>) -> String {
        let value_text = value.map(|v| format!("{}", (v * 100.0).round() / 100.0)).unwrap_or_default();
        let threshold = self.threshold().map(|t| t.to_string()).unwrap_or_default();
        let Some(template) = &self.annotation else {
            let name = self.name.as_deref().unwrap_or(&self.id);
            return match value {
                Some(_) => format!("{name}: {subject} at {value_text} (threshold {threshold})"),
                None => format!("{name}: {subject}"),
            };
        };
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find("}}") else { break };
            let name = rest[start + 2..start + end].trim();
            let filled = match name {
                "rule" => self.id.clone(),
                "name" => self.name.clone().unwrap_or_else(|| self.id.clone()),
                "subject" => subject.to_owned(),
                "device_id" => device.unwrap_or(subject).to_owned(),
                "value" => value_text.clone(),
                "threshold" => threshold.clone(),
                "severity" => self.severity.as_str().to_owned(),
                other => other.strip_prefix("labels.").and_then(|k| self.labels.get(k)).cloned().unwrap_or_default(),
            };
            out.push_str(&filled);
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn locs(errors: &ValidationErrors) -> Vec<String> {
        errors.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect()
    }

    #[test]
    fn reads_each_kind_and_writes_it_back() {
        let documents = [
            json!({"id": "cpu", "kind": "threshold", "series": {"name": "device_system", "field": "cpu_percent"},
                   "op": ">", "value": 90.0, "clear": 80.0, "for": "5m", "severity": "major",
                   "scope": {"labels": {"site": "berlin"}}, "labels": {"team": "ops"},
                   "annotation": "{{device_id}} CPU at {{value}} % ({{labels.team}})", "enabled": true}),
            json!({"id": "silent", "kind": "absent", "heartbeats": 3, "severity": "critical", "enabled": true}),
            json!({"id": "sick", "kind": "unhealthy", "count": 2, "severity": "warning", "enabled": false}),
            json!({"id": "disk", "kind": "rate", "series": {"name": "node_flash", "field": "usage_percent", "tags": {"env": "prod"}},
                   "op": ">", "per_hour": 5.0, "window": "1h", "severity": "minor", "enabled": true}),
            json!({"id": "api", "kind": "service", "route": "/api/v1/devices", "method": "GET", "measure": "p95_ms",
                   "op": ">=", "value": 250.0, "window": "15m", "min_requests": 10, "for": "1m", "severity": "info", "enabled": true}),
        ];
        for document in documents {
            let rule = Rule::parse(&document).unwrap_or_else(|e| panic!("{document}: {e}"));
            assert_eq!(rule.to_json(), document);
            assert_eq!(Rule::parse(&rule.to_json()).expect("reads back"), rule);
        }
    }

    #[test]
    fn every_problem_is_reported_at_its_field() {
        let bad = json!({"id": "has space", "kind": "threshold", "series": {"name": "x", "feld": "y"},
                         "op": "=>", "value": "high", "tresh": 1, "severity": "urgent", "for": "soon"});
        let errors = Rule::parse(&bad).unwrap_err();
        let found = locs(&errors);
        for want in ["id", "series.feld", "series.field", "op", "value", "tresh", "severity", "for"] {
            assert!(found.contains(&want.to_owned()), "{want} missing from {found:?}");
        }
        let unknown_kind = Rule::parse(&json!({"id": "a", "kind": "magic"})).unwrap_err();
        assert_eq!(locs(&unknown_kind), ["kind"]);
        let wrong_kind_field = Rule::parse(&json!({"id": "a", "kind": "absent", "value": 3})).unwrap_err();
        assert_eq!(locs(&wrong_kind_field), ["value"]);
        let template = Rule::parse(&json!({"id": "a", "kind": "absent", "annotation": "{{devise}} gone"})).unwrap_err();
        assert_eq!(locs(&template), ["annotation"]);
    }

    #[test]
    fn clear_must_sit_on_the_quiet_side_of_the_threshold() {
        let rule = |op: &str, clear: f64| {
            Rule::parse(&json!({"id": "a", "kind": "threshold", "series": {"name": "m", "field": "f"},
                                "op": op, "value": 50.0, "clear": clear}))
        };
        assert!(rule(">", 40.0).is_ok());
        assert!(rule(">", 50.0).is_ok());
        assert_eq!(locs(&rule(">", 60.0).unwrap_err()), ["clear"]);
        assert!(rule("<", 60.0).is_ok());
        assert_eq!(locs(&rule("<=", 40.0).unwrap_err()), ["clear"]);
    }

    #[test]
    fn summaries_fill_placeholders() {
        let rule = Rule::parse(&json!({"id": "cpu", "kind": "threshold", "series": {"name": "m", "field": "f"},
            "op": ">", "value": 90, "labels": {"team": "ops"},
            "annotation": "{{ device_id }} at {{value}}/{{threshold}} for {{labels.team}} ({{severity}})"}))
        .expect("valid");
        assert_eq!(rule.summary("pos-1", Some("pos-1"), Some(93.456)), "pos-1 at 93.46/90 for ops (warning)");
    }

    #[test]
    fn durations() {
        for (text, seconds) in [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604_800), ("1500ms", 2)] {
            assert_eq!(parse_duration(text), Some(seconds), "{text}");
        }
        for bad in ["", "m", "5x", "-1s", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formatted_durations_read_back(seconds in 0u64..10_000_000) {
            prop_assert_eq!(parse_duration(&format_duration(seconds)), Some(seconds));
        }

        #[test]
        fn arbitrary_documents_never_panic(text in "\\PC{0,200}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = Rule::parse(&value);
            }
        }
    }
}
