//! The Prometheus text exposition format (version 0.0.4) of the live store, for `GET /metrics`.
//!
//! A field named `value` is exposed under the metric's own name (`fps{source="camera1"}`), any
//! other field as `<name>_<field>` (`cpu_usage{host="server1"}`), as the metrics service shows.
//! Names and label names are sanitised to Prometheus' alphabet, family names are written in
//! snake_case with `_total` kept for counters (what `promtool check metrics` wants), label values
//! are escaped, each family gets one `# TYPE` line, and string fields are left out (Prometheus
//! has no strings).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::live::{Series, SeriesKey};
use crate::metric::{FieldValue, MetricType};

/// Replaces every character outside `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]` for labels) with `_` and
/// guards a leading digit.
fn sanitize(raw: &str, allow_colon: bool) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Metric name for a series' field.
pub fn metric_name(name: &str, field: &str) -> String {
    if field == "value" { sanitize(name, true) } else { sanitize(&format!("{name}_{field}"), true) }
}

/// `raw` in snake_case: an underscore before each capital that follows a lower-case letter or
/// a digit, then lower case (`io_writeBytes` becomes `io_write_bytes`).
fn snake_case(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 4);
    let mut previous: Option<char> = None;
    for c in raw.chars() {
        if c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    out
}

/// A family's name in the exposition: [`metric_name`] in snake_case. Counters end in `_total`;
/// no other family does, since Prometheus reserves that suffix for counters, so a gauge named
/// `memory.total` becomes `..._memory_total_value`.
fn family_name(name: &str, field: &str, kind: MetricType) -> String {
    let name = snake_case(&metric_name(name, field));
    match (kind, name.ends_with("_total")) {
        (MetricType::Counter, false) => format!("{name}_total"),
        (MetricType::Counter, true) => name,
        (_, true) => format!("{name}_value"),
        (_, false) => name,
    }
}

/// Label name; names starting with `__` are reserved by Prometheus, so they get a prefix.
fn label_name(raw: &str) -> String {
    let name = sanitize(raw, false);
    if name.starts_with("__") { format!("tag{name}") } else { name }
}

fn escape_label_value(raw: &str, out: &mut String) {
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Where a family comes from, in its original spelling (HELP text escapes `\\` and newlines).
fn help_text(name: &str, field: &str) -> String {
    format!("homepot metric '{name}' field '{field}'").replace('\\', "\\\\").replace('\n', "\\n")
}

fn sample_value(value: &FieldValue) -> Option<String> {
    match value {
        // Integers print exactly; floats in Rust's shortest round-trip form.
        FieldValue::Integer(v) => Some(v.to_string()),
        FieldValue::UInteger(v) => Some(v.to_string()),
        FieldValue::Float(v) => Some(v.to_string()),
        FieldValue::Boolean(v) => Some(if *v { "1" } else { "0" }.to_owned()),
        FieldValue::String(_) => None,
    }
}

fn type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Gauge => "gauge",
        MetricType::Counter => "counter",
        // Without buckets or quantiles these are plain samples.
        MetricType::Histogram | MetricType::Summary => "untyped",
    }
}

/// Writes the exposition of `series`. Samples of one family are contiguous; a label set that
/// repeats within a family after sanitising keeps its first sample.
pub fn write_exposition<'a>(series: impl IntoIterator<Item = (&'a SeriesKey, &'a Series)>, out: &mut String) {
    struct Family {
        kind: MetricType,
        help: String,
        samples: BTreeMap<String, String>,
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (key, series) in series {
        let mut labels = String::new();
        let mut seen: Vec<String> = Vec::with_capacity(key.tags.len());
        for (name, value) in &key.tags {
            let name = label_name(name);
            if seen.contains(&name) {
                continue;
            }
            labels.push_str(if labels.is_empty() { "{" } else { "," });
            labels.push_str(&name);
            labels.push_str("=\"");
            escape_label_value(value, &mut labels);
            labels.push('"');
            seen.push(name);
        }
        if !labels.is_empty() {
            labels.push('}');
        }
        for (field, value) in &series.fields {
            let Some(sample) = sample_value(value) else { continue };
            let family = families.entry(family_name(&key.name, field, series.metric_type)).or_insert_with(|| Family {
                kind: series.metric_type,
                help: help_text(&key.name, field),
                samples: BTreeMap::new(),
            });
            family.samples.entry(labels.clone()).or_insert(sample);
        }
    }
    for (name, family) in families {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", type_name(family.kind));
        for (labels, value) in family.samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LiveLimits, LiveStore};
    use crate::metric::Point;

    fn store(points: &[Point]) -> String {
        let mut live = LiveStore::new(LiveLimits::default());
        live.insert(None, points, 0);
        let mut out = String::new();
        write_exposition(live.series(None), &mut out);
        out
    }

    fn point(name: &str, tags: &[(&str, &str)], fields: &[(&str, FieldValue)], kind: MetricType) -> Point {
        Point::new(
            name.into(),
            tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            fields.iter().map(|(k, v)| ((*k).into(), v.clone())).collect(),
            0,
            kind,
        )
        .unwrap()
    }

    #[test]
    fn documented_examples() {
        let out = store(&[
            point("fps", &[("source", "camera1")], &[("value", FieldValue::Float(29.97))], MetricType::Gauge),
            point("cpu", &[("host", "server1")], &[("usage", FieldValue::Float(45.2))], MetricType::Gauge),
        ]);
        assert_eq!(
            out,
            "# HELP cpu_usage homepot metric 'cpu' field 'usage'\n# TYPE cpu_usage gauge\ncpu_usage{host=\"server1\"} 45.2\n\
             # HELP fps homepot metric 'fps' field 'value'\n# TYPE fps gauge\nfps{source=\"camera1\"} 29.97\n"
        );
    }

    #[test]
    fn family_names_follow_prometheus_conventions() {
        for (name, field, kind, expected) in [
            ("container", "io.writeBytes", MetricType::Gauge, "container_io_write_bytes"),
            ("container", "memory.total", MetricType::Gauge, "container_memory_total_value"),
            ("requests", "value", MetricType::Counter, "requests_total"),
            ("requests_total", "value", MetricType::Counter, "requests_total"),
            ("httpRequests", "p99", MetricType::Histogram, "http_requests_p99"),
            ("cpu", "usage_user", MetricType::Gauge, "cpu_usage_user"),
        ] {
            assert_eq!(family_name(name, field, kind), expected, "{name} {field}");
        }
    }

    #[test]
    fn names_labels_and_values_are_made_valid() {
        let out = store(&[
            point(
                "9 req/s",
                &[("__name", "x"), ("a-b", "quote\" back\\")],
                &[
                    ("value", FieldValue::Integer(-3)),
                    ("ok", FieldValue::Boolean(true)),
                    ("note", FieldValue::String("skip".into())),
                ],
                MetricType::Counter,
            ),
            point("h", &[], &[("value", FieldValue::UInteger(u64::MAX))], MetricType::Histogram),
        ]);
        assert_eq!(
            out,
            "# HELP _9_req_s_ok_total homepot metric '9 req/s' field 'ok'\n# TYPE _9_req_s_ok_total counter\n_9_req_s_ok_total{tag__name=\"x\",a_b=\"quote\\\" back\\\\\"} 1\n\
             # HELP _9_req_s_total homepot metric '9 req/s' field 'value'\n# TYPE _9_req_s_total counter\n_9_req_s_total{tag__name=\"x\",a_b=\"quote\\\" back\\\\\"} -3\n\
             # HELP h homepot metric 'h' field 'value'\n# TYPE h untyped\nh 18446744073709551615\n"
        );
    }
}
