//! Metric points (metrics service): a measurement name, sorted tags, typed fields and a time. Every
//! ingest format (simple JSON, JSON batch, line protocol, OTLP, health checks) produces these.

/// Longest metric name accepted.
pub const MAX_NAME_LEN: usize = 256;
/// Most tags on one point.
pub const MAX_TAGS: usize = 64;
/// Most fields on one point.
pub const MAX_FIELDS: usize = 256;
/// Longest tag key, tag value or field key.
pub const MAX_KEY_LEN: usize = 256;
/// Longest string field value.
pub const MAX_STRING_FIELD_LEN: usize = 64 * 1024;

/// A field's value, with the types of InfluxDB line protocol.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FieldValue {
    /// A finite float.
    Float(f64),
    /// A signed integer (`1i`).
    Integer(i64),
    /// An unsigned integer (`1u`).
    UInteger(u64),
    /// A boolean.
    Boolean(bool),
    /// A string.
    String(String),
}

impl FieldValue {
    /// The value as a float, for outputs that only carry numbers (Prometheus, SSE).
    /// Strings have none.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Float(v) => Some(*v),
            FieldValue::Integer(v) => Some(*v as f64),
            FieldValue::UInteger(v) => Some(*v as f64),
            FieldValue::Boolean(v) => Some(if *v { 1.0 } else { 0.0 }),
            FieldValue::String(_) => None,
        }
    }
}

/// What a metric measures (the metrics service's `metric_type`; default gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// An instantaneous value.
    #[default]
    Gauge,
    /// A monotonic counter.
    Counter,
    /// A value distribution.
    Histogram,
    /// A statistical summary.
    Summary,
}

impl MetricType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
        }
    }

    /// Parses the wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "gauge" => Some(MetricType::Gauge),
            "counter" => Some(MetricType::Counter),
            "histogram" => Some(MetricType::Histogram),
            "summary" => Some(MetricType::Summary),
            _ => None,
        }
    }
}

/// Why a point is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// The name is empty, too long, starts with `#` or holds a line break.
    #[error("metric name must be 1 to {MAX_NAME_LEN} characters, without line breaks or a leading '#'")]
    BadName,
    /// No fields.
    #[error("a point needs at least one field")]
    NoFields,
    /// Too many tags or fields.
    #[error("at most {MAX_TAGS} tags and {MAX_FIELDS} fields per point")]
    TooMany,
    /// An empty or overlong key or tag value, or one with a line break.
    #[error("tag keys, tag values and field keys must be 1 to {MAX_KEY_LEN} characters without line breaks: '{0}'")]
    BadKey(String),
    /// A float that is NaN or infinite.
    #[error("field '{0}' is not a finite number")]
    NotFinite(String),
    /// An overlong string field.
    #[error("string field '{0}' exceeds {MAX_STRING_FIELD_LEN} bytes")]
    StringTooLong(String),
    /// The same tag or field key twice.
    #[error("duplicate key '{0}'")]
    DuplicateKey(String),
}

/// One measurement at one time.
///
/// **Invariant:** the name has 1–256 characters; 1–256 fields with unique, non-empty keys
/// and finite floats; at most 64 tags with unique, non-empty keys, sorted by key; the time is
/// nanoseconds since the Unix epoch.
///
/// Serde reads a point back through [`Point::new`], so the invariant holds for stored points too.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PointDoc", into = "PointDoc")]
pub struct Point {
    name: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    timestamp_ns: i64,
    metric_type: MetricType,
}

/// [`Point`] as serialised.
#[derive(serde::Serialize, serde::Deserialize)]
struct PointDoc {
    name: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    timestamp_ns: i64,
    metric_type: MetricType,
}

impl TryFrom<PointDoc> for Point {
    type Error = PointError;

    fn try_from(doc: PointDoc) -> Result<Self, Self::Error> {
        Self::new(doc.name, doc.tags, doc.fields, doc.timestamp_ns, doc.metric_type)
    }
}

impl From<Point> for PointDoc {
    fn from(point: Point) -> Self {
        let Point { name, tags, fields, timestamp_ns, metric_type } = point;
        Self { name, tags, fields, timestamp_ns, metric_type }
    }
}

/// Keys and names cannot hold line breaks: line protocol could not carry them.
fn key_ok(key: &str) -> bool {
    !key.is_empty() && key.chars().count() <= MAX_KEY_LEN && !key.contains(['\n', '\r'])
}

impl Point {
    /// Validates and builds a point; tags are sorted by key.
    ///
    /// # Errors
    /// The first rule the point breaks.
    pub fn new(
        name: String,
        mut tags: Vec<(String, String)>,
        fields: Vec<(String, FieldValue)>,
        timestamp_ns: i64,
        metric_type: MetricType,
    ) -> Result<Self, PointError> {
        // A leading '#' would make the line a comment in line protocol.
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.starts_with('#')
            || name.contains(['\n', '\r'])
        {
            return Err(PointError::BadName);
        }
        if fields.is_empty() {
            return Err(PointError::NoFields);
        }
        if tags.len() > MAX_TAGS || fields.len() > MAX_FIELDS {
            return Err(PointError::TooMany);
        }
        for (key, value) in &tags {
            if !key_ok(key) || !key_ok(value) {
                return Err(PointError::BadKey(key.clone()));
            }
        }
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PointError::DuplicateKey(pair[0].0.clone()));
        }
        for (i, (key, value)) in fields.iter().enumerate() {
            if !key_ok(key) {
                return Err(PointError::BadKey(key.clone()));
            }
            match value {
                FieldValue::Float(v) if !v.is_finite() => return Err(PointError::NotFinite(key.clone())),
                FieldValue::String(s) if s.len() > MAX_STRING_FIELD_LEN => {
                    return Err(PointError::StringTooLong(key.clone()));
                }
                _ => {}
            }
            if fields[..i].iter().any(|(k, _)| k == key) {
                return Err(PointError::DuplicateKey(key.clone()));
            }
        }
        Ok(Self { name, tags, fields, timestamp_ns, metric_type })
    }

    /// The measurement name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Tags, sorted by key.
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
    /// Fields, in submitted order.
    pub fn fields(&self) -> &[(String, FieldValue)] {
        &self.fields
    }
    /// Nanoseconds since the Unix epoch.
    pub fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }
    /// What the metric measures.
    pub fn metric_type(&self) -> MetricType {
        self.metric_type
    }

    /// Adds a tag (used to attach `device_id` and similar provenance), keeping tags sorted;
    /// an existing tag with that key is replaced.
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        match self.tags.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => self.tags[i].1 = value.to_owned(),
            Err(i) => self.tags.insert(i, (key.to_owned(), value.to_owned())),
        }
        self
    }
}

impl Point {
    /// The series this point belongs to: its name and tags, as one string.
    pub fn series_key(&self) -> String {
        let mut key = self.name.clone();
        for (k, v) in &self.tags {
            key.push('\u{1f}');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
        }
        key
    }

    /// The fields as the SmartDataFilter compares them: numbers by relative change, booleans
    /// and strings by any change.
    pub fn tracked(&self) -> Vec<(String, crate::filter::Tracked)> {
        use crate::filter::Tracked;
        self.fields
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    FieldValue::String(s) => Tracked::Discrete(s.clone()),
                    FieldValue::Boolean(b) => Tracked::Discrete(b.to_string()),
                    other => Tracked::Number(other.as_f64().unwrap_or_default()),
                };
                (k.clone(), value)
            })
            .collect()
    }
}

/// A Unix timestamp whose unit is guessed from its size, as the metrics service specifies: seconds below
/// 1e12, milliseconds below 1e15, nanoseconds otherwise. Fractions are kept down to the
/// nanosecond. `None` when it does not fit in an `i64` of nanoseconds.
pub fn auto_timestamp_ns(raw: f64) -> Option<i64> {
    if !raw.is_finite() {
        return None;
    }
    let magnitude = raw.abs();
    let ns = if magnitude < 1e12 {
        raw * 1e9
    } else if magnitude < 1e15 {
        raw * 1e6
    } else {
        raw
    };
    // 2^63 is exactly representable; anything at or beyond it overflows.
    (ns.abs() < 9_223_372_036_854_775_808.0).then(|| ns.round() as i64)
}

/// [`auto_timestamp_ns`] for integers, exact where a float would round.
pub fn auto_timestamp_ns_int(raw: i64) -> Option<i64> {
    let magnitude = raw.unsigned_abs();
    if magnitude < 1_000_000_000_000 {
        raw.checked_mul(1_000_000_000)
    } else if magnitude < 1_000_000_000_000_000 {
        raw.checked_mul(1_000_000)
    } else {
        Some(raw)
    }
}

/// proptest strategies for points, for this crate's tests and (feature `test-util`) others'.
#[cfg(any(test, feature = "test-util"))]
pub mod strategies {
    use proptest::prelude::*;

    use super::{FieldValue, MetricType, Point};

    /// Text rich in characters that need escaping, never starting with `#`.
    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ ,=\\\".:é😀-]{1,12}".prop_filter("no leading #", |s| !s.starts_with('#'))
    }

    /// Any field value line protocol can carry.
    pub fn arb_field_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(FieldValue::Float),
            any::<i64>().prop_map(FieldValue::Integer),
            any::<u64>().prop_map(FieldValue::UInteger),
            any::<bool>().prop_map(FieldValue::Boolean),
            "[a-z \"\\\n,=é]{0,16}".prop_map(FieldValue::String),
        ]
    }

    /// A valid point with up to 4 tags and 1–4 fields.
    pub fn arb_point() -> impl Strategy<Value = Point> {
        (
            arb_text(),
            proptest::collection::btree_map(arb_text(), arb_text(), 0..4),
            proptest::collection::btree_map(arb_text(), arb_field_value(), 1..4),
            any::<i64>(),
        )
            .prop_map(|(name, tags, fields, ts)| {
                Point::new(name, tags.into_iter().collect(), fields.into_iter().collect(), ts, MetricType::Gauge)
                    .expect("generated points are valid")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn points_survive_serde(point in strategies::arb_point()) {
            let json = serde_json::to_string(&point).expect("serialises");
            prop_assert_eq!(serde_json::from_str::<Point>(&json).expect("reads back"), point);
        }
    }

    #[test]
    fn serde_refuses_what_point_new_refuses() {
        let json = r#"{"name":"cpu","tags":[],"fields":[],"timestamp_ns":0,"metric_type":"gauge"}"#;
        let err = serde_json::from_str::<Point>(json).expect_err("no fields");
        assert!(err.to_string().contains("at least one field"), "{err}");
    }

    #[test]
    fn timestamps_follow_the_documented_thresholds() {
        for (raw, ns) in [
            (1_776_947_971, 1_776_947_971_000_000_000),
            (1_704_067_200_000, 1_704_067_200_000_000_000),
            (1_704_067_200_000_000_000, 1_704_067_200_000_000_000),
            (0, 0),
        ] {
            assert_eq!(auto_timestamp_ns_int(raw), Some(ns), "{raw}");
            assert_eq!(auto_timestamp_ns(raw as f64), Some(ns), "{raw} as float");
        }
        assert_eq!(auto_timestamp_ns(1_776_947_971.5), Some(1_776_947_971_500_000_000));
        assert_eq!(auto_timestamp_ns(f64::NAN), None);
        assert_eq!(auto_timestamp_ns(1e300), None);
    }

    #[test]
    fn points_are_validated() {
        let field = || vec![("v".to_owned(), FieldValue::Float(1.0))];
        assert!(Point::new("cpu".into(), vec![], field(), 0, MetricType::Gauge).is_ok());
        assert_eq!(Point::new(String::new(), vec![], field(), 0, MetricType::Gauge), Err(PointError::BadName));
        assert_eq!(Point::new("x".repeat(257), vec![], field(), 0, MetricType::Gauge), Err(PointError::BadName));
        assert_eq!(Point::new("cpu".into(), vec![], vec![], 0, MetricType::Gauge), Err(PointError::NoFields));
        let nan = vec![("v".to_owned(), FieldValue::Float(f64::NAN))];
        assert!(matches!(Point::new("cpu".into(), vec![], nan, 0, MetricType::Gauge), Err(PointError::NotFinite(_))));
        let dup = vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())];
        assert!(matches!(
            Point::new("cpu".into(), dup, field(), 0, MetricType::Gauge),
            Err(PointError::DuplicateKey(_))
        ));
        let tags = vec![("z".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())];
        let p = Point::new("cpu".into(), tags, field(), 0, MetricType::Gauge).unwrap().with_tag("m", "3");
        assert_eq!(p.tags().iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["a", "m", "z"]);
    }
}
