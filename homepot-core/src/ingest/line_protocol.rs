//! InfluxDB line protocol: `measurement[,tag=value...] field=value[,field=value...] [time]`.
//!
//! The parser follows InfluxDB's grammar: `\,`, `\ ` escape in measurements; `\,`, `\=`, `\ `
//! in tag keys, tag values and field keys; `\"` in string fields; `i`/`u` integer suffixes;
//! `t`/`true`/`F`/`FALSE`... booleans; `#` comment lines and blank lines; an optional
//! timestamp in the request's precision. Quoted strings may span lines. One difference: `\\`
//! is an escaped backslash everywhere, so the writer's output always parses back exactly.
//!
//! Bad lines do not spoil good ones: [`parse_lines`] returns every good point and an error
//! with its 1-based line number for each bad line, as InfluxDB does.

use std::fmt;

use crate::metric::{FieldValue, MetricType, Point, PointError};

/// Most line errors described in one outcome; the rest are only counted.
pub const MAX_LINE_ERRORS: usize = 100;

/// The unit of timestamps in a batch (`precision` on `/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
}

impl Precision {
    /// Parses InfluxDB's names: `ns`/`n`, `us`/`u`/`µ`, `ms`, `s`, `m`, `h`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ns" | "n" => Some(Precision::Nanoseconds),
            "us" | "u" | "µ" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            "m" => Some(Precision::Minutes),
            "h" => Some(Precision::Hours),
            _ => None,
        }
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineProtocolError {
    /// A required character is missing.
    #[error("expected {expected} at byte {at}")]
    Expected {
        /// What was expected, e.g. `'=' after tag key`.
        expected: &'static str,
        /// Byte offset in the batch.
        at: usize,
    },
    /// The line starts with no measurement name.
    #[error("missing measurement")]
    MissingMeasurement,
    /// A tag with an empty key or value.
    #[error("tag keys and values must not be empty")]
    EmptyTag,
    /// No field set after the measurement and tags.
    #[error("missing fields")]
    MissingFields,
    /// A field with an empty key.
    #[error("missing field key")]
    MissingFieldKey,
    /// A field's value does not parse.
    #[error("field '{key}': {problem}")]
    BadField {
        /// The field key.
        key: String,
        /// Why its value does not parse.
        problem: FieldValueError,
    },
    /// Something follows the timestamp.
    #[error("unexpected text after the timestamp at byte {at}")]
    TrailingText {
        /// Byte offset in the batch.
        at: usize,
    },
    /// The timestamp is not an integer.
    #[error("invalid timestamp '{raw}'")]
    InvalidTimestamp {
        /// The timestamp as written.
        raw: String,
    },
    /// The timestamp overflows nanoseconds at the batch's precision.
    #[error("timestamp '{raw}' out of range")]
    TimestampOutOfRange {
        /// The timestamp as written.
        raw: String,
    },
    /// The parsed point breaks a point limit (name, tag or field counts and lengths).
    #[error("{0}")]
    Point(#[from] PointError),
}

/// Why a field value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldValueError {
    /// A string field's closing quote is missing.
    #[error("unterminated string")]
    UnterminatedString,
    /// Nothing after `=`.
    #[error("missing value")]
    Missing,
    /// An `i`-suffixed value that is no signed 64-bit integer.
    #[error("invalid integer '{0}'")]
    Integer(String),
    /// A `u`-suffixed value that is no unsigned 64-bit integer.
    #[error("invalid unsigned '{0}'")]
    Unsigned(String),
    /// Neither a number, a boolean nor a string.
    #[error("invalid value '{0}'")]
    Invalid(String),
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub error: LineProtocolError,
}

/// What a batch yielded.
#[derive(Debug, Default)]
pub struct ParseOutcome {
    /// Every valid point, in input order.
    pub points: Vec<Point>,
    /// The first [`MAX_LINE_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
    /// How many lines were bad in all.
    pub error_count: usize,
}

/// Parses a batch. Lines without a timestamp get `default_time_ns` (the server's "now").
pub fn parse_lines(input: &str, precision: Precision, default_time_ns: i64) -> ParseOutcome {
    let mut outcome = ParseOutcome::default();
    let mut cursor = Cursor { bytes: input.as_bytes(), text: input, pos: 0, line: 1 };
    while !cursor.at_end() {
        let line = cursor.line;
        cursor.skip_blanks();
        match cursor.peek() {
            None => break,
            Some(b'\n') => {
                cursor.newline();
                continue;
            }
            Some(b'#') => {
                cursor.skip_line();
                continue;
            }
            Some(_) => {}
        }
        match cursor.point(precision, default_time_ns) {
            Ok(point) => outcome.points.push(point),
            Err(error) => {
                outcome.error_count += 1;
                if outcome.errors.len() < MAX_LINE_ERRORS {
                    outcome.errors.push(LineError { line, error });
                }
                cursor.skip_line();
            }
        }
    }
    outcome
}

struct Cursor<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    line: usize,
}

/// Where an unescaped token ends.
#[derive(Clone, Copy)]
enum Token {
    Measurement,
    Key,
    TagValue,
}

impl Token {
    fn ends_at(self, b: u8) -> bool {
        match self {
            Token::Measurement => matches!(b, b',' | b' ' | b'\n'),
            Token::Key => matches!(b, b',' | b'=' | b' ' | b'\n'),
            Token::TagValue => matches!(b, b',' | b' ' | b'\n' | b'='),
        }
    }

    fn escapable(self, b: u8) -> bool {
        match self {
            Token::Measurement => matches!(b, b',' | b' ' | b'\\'),
            Token::Key | Token::TagValue => matches!(b, b',' | b'=' | b' ' | b'\\'),
        }
    }
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
    }

    /// Spaces, tabs and a carriage return before a line feed.
    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                self.newline();
                return;
            }
            self.pos += 1;
        }
    }

    /// Reads a token up to its first unescaped terminator, unescaping as it goes.
    fn token(&mut self, kind: Token) -> String {
        let start = self.pos;
        let mut out: Option<String> = None;
        let mut copied = start;
        while let Some(b) = self.peek() {
            if b == b'\\' && self.bytes.get(self.pos + 1).is_some_and(|&next| kind.escapable(next)) {
                let buf = out.get_or_insert_with(String::new);
                buf.push_str(&self.text[copied..self.pos]);
                copied = self.pos + 1;
                self.pos += 2;
                continue;
            }
            if kind.ends_at(b) {
                break;
            }
            self.pos += 1;
        }
        match out {
            Some(mut buf) => {
                buf.push_str(&self.text[copied..self.pos]);
                buf
            }
            None => self.text[start..self.pos].to_owned(),
        }
    }

    fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), LineProtocolError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(LineProtocolError::Expected { expected, at: self.pos })
        }
    }

    fn point(&mut self, precision: Precision, default_time_ns: i64) -> Result<Point, LineProtocolError> {
        let name = self.token(Token::Measurement);
        if name.is_empty() {
            return Err(LineProtocolError::MissingMeasurement);
        }
        let mut tags = Vec::new();
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.token(Token::Key);
            self.expect(b'=', "'=' after tag key")?;
            let value = self.token(Token::TagValue);
            if key.is_empty() || value.is_empty() {
                return Err(LineProtocolError::EmptyTag);
            }
            tags.push((key, value));
        }
        if self.peek() != Some(b' ') {
            return Err(LineProtocolError::MissingFields);
        }
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        let mut fields = Vec::new();
        loop {
            let key = self.token(Token::Key);
            if key.is_empty() {
                return Err(LineProtocolError::MissingFieldKey);
            }
            self.expect(b'=', "'=' after field key")?;
            let value =
                self.field_value().map_err(|problem| LineProtocolError::BadField { key: key.clone(), problem })?;
            fields.push((key, value));
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let timestamp = self.timestamp(precision)?.unwrap_or(default_time_ns);
        self.skip_blanks();
        if !matches!(self.peek(), None | Some(b'\n')) {
            return Err(LineProtocolError::TrailingText { at: self.pos });
        }
        // The line feed is left for the caller, so a rejected point skips only its own line.
        Ok(Point::new(name, tags, fields, timestamp, MetricType::Gauge)?)
    }

    fn field_value(&mut self) -> Result<FieldValue, FieldValueError> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let mut value = String::new();
            let mut copied = self.pos;
            loop {
                match self.peek() {
                    None => return Err(FieldValueError::UnterminatedString),
                    Some(b'\\') if matches!(self.bytes.get(self.pos + 1), Some(b'"' | b'\\')) => {
                        value.push_str(&self.text[copied..self.pos]);
                        copied = self.pos + 1;
                        self.pos += 2;
                    }
                    Some(b'"') => {
                        value.push_str(&self.text[copied..self.pos]);
                        self.pos += 1;
                        return Ok(FieldValue::String(value));
                    }
                    Some(b'\n') => {
                        self.pos += 1;
                        self.line += 1;
                    }
                    Some(_) => self.pos += 1,
                }
            }
        }
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b' ' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        match raw {
            "" => Err(FieldValueError::Missing),
            "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Boolean(true)),
            "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Boolean(false)),
            _ if raw.ends_with('i') => raw[..raw.len() - 1]
                .parse()
                .map(FieldValue::Integer)
                .map_err(|_| FieldValueError::Integer(raw.to_owned())),
            _ if raw.ends_with('u') => raw[..raw.len() - 1]
                .parse()
                .map(FieldValue::UInteger)
                .map_err(|_| FieldValueError::Unsigned(raw.to_owned())),
            _ => match raw.parse::<f64>() {
                // Rust also reads "inf" and "NaN"; line protocol has no such floats.
                Ok(v) if v.is_finite() && raw.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => {
                    Ok(FieldValue::Float(v))
                }
                _ => Err(FieldValueError::Invalid(raw.to_owned())),
            },
        }
    }

    fn timestamp(&mut self, precision: Precision) -> Result<Option<i64>, LineProtocolError> {
        if self.peek() != Some(b' ') {
            return Ok(None);
        }
        self.skip_blanks();
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        if raw.is_empty() {
            return Ok(None);
        }
        let value: i64 = raw.parse().map_err(|_| LineProtocolError::InvalidTimestamp { raw: raw.to_owned() })?;
        let nanos = value.checked_mul(precision.nanos());
        nanos.map(Some).ok_or_else(|| LineProtocolError::TimestampOutOfRange { raw: raw.to_owned() })
    }
}

fn push_escaped(out: &mut String, text: &str, special: &[char]) {
    for c in text.chars() {
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A point as one line of line protocol, in canonical form.
impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        write_point(self, &mut line);
        f.write_str(&line)
    }
}

/// Writes `point` as one line (no trailing newline) in canonical form: tags sorted, the
/// timestamp in nanoseconds. [`parse_lines`] reads it back to an equal point.
pub fn write_point(point: &Point, out: &mut String) {
    push_escaped(out, point.name(), &[',', ' ']);
    for (key, value) in point.tags() {
        out.push(',');
        push_escaped(out, key, &[',', '=', ' ']);
        out.push('=');
        push_escaped(out, value, &[',', '=', ' ']);
    }
    for (i, (key, value)) in point.fields().iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        push_escaped(out, key, &[',', '=', ' ']);
        out.push('=');
        match value {
            // Debug keeps a fraction or exponent, so the value reads back as a float.
            FieldValue::Float(v) => out.push_str(&format!("{v:?}")),
            FieldValue::Integer(v) => out.push_str(&format!("{v}i")),
            FieldValue::UInteger(v) => out.push_str(&format!("{v}u")),
            FieldValue::Boolean(v) => out.push_str(if *v { "true" } else { "false" }),
            FieldValue::String(s) => {
                out.push('"');
                push_escaped(out, s, &['"']);
                out.push('"');
            }
        }
    }
    out.push(' ');
    out.push_str(&point.timestamp_ns().to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::strategies::arb_point;
    use proptest::prelude::*;

    fn one(line: &str) -> Result<Point, String> {
        let mut outcome = parse_lines(line, Precision::Nanoseconds, 42);
        match outcome.errors.pop() {
            Some(e) => Err(e.error.to_string()),
            None => Ok(outcome.points.remove(0)),
        }
    }

    fn fields(p: &Point) -> Vec<(&str, FieldValue)> {
        p.fields().iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
    }

    #[test]
    fn documented_examples() {
        let input = "cpu_usage,host=server1,cpu=cpu0 usage=45.2 1704067200000000000\n\
                     memory,host=server1 used_percent=67.5 1704067200000000000\n\
                     fps,pipeline=detection value=29.97";
        let outcome = parse_lines(input, Precision::Nanoseconds, 7);
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        let p = &outcome.points;
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name(), "cpu_usage");
        assert_eq!(p[0].tags(), [("cpu".into(), "cpu0".into()), ("host".into(), "server1".into())]);
        assert_eq!(fields(&p[0]), [("usage", FieldValue::Float(45.2))]);
        assert_eq!(p[0].timestamp_ns(), 1_704_067_200_000_000_000);
        assert_eq!(p[2].timestamp_ns(), 7, "no timestamp: the server's time");
    }

    #[test]
    fn field_types_and_escapes() {
        let p = one(r#"m\,x\ y,t\=k=v\,1\ 2 i=-3i,u=4u,b=t,B=FALSE,s="a \"q\" \\ b",f=-1.5e3,g=1 100"#).unwrap();
        assert_eq!(p.name(), "m,x y");
        assert_eq!(p.tags(), [("t=k".into(), "v,1 2".into())]);
        assert_eq!(
            fields(&p),
            [
                ("i", FieldValue::Integer(-3)),
                ("u", FieldValue::UInteger(4)),
                ("b", FieldValue::Boolean(true)),
                ("B", FieldValue::Boolean(false)),
                ("s", FieldValue::String(r#"a "q" \ b"#.into())),
                ("f", FieldValue::Float(-1500.0)),
                ("g", FieldValue::Float(1.0)),
            ]
        );
        assert_eq!(p.timestamp_ns(), 100);
        assert_eq!(
            one(r"path\x v=1").unwrap().name(),
            r"path\x",
            "a backslash before an ordinary character is literal"
        );
    }

    #[test]
    fn bad_lines_are_reported_and_good_lines_kept() {
        let input = "# comment\n\ncpu v=1 1\ncpu\ncpu v=\ncpu v=1i2\ncpu v=inf\ncpu,t v=1\nmem v=2 2\ncpu v=1 12x\ncpu v=1u3\n  \n";
        let outcome = parse_lines(input, Precision::Nanoseconds, 0);
        assert_eq!(outcome.points.iter().map(Point::name).collect::<Vec<_>>(), ["cpu", "mem"]);
        assert_eq!(outcome.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(outcome.error_count, 7);
    }

    #[test]
    fn strings_may_span_lines_and_line_numbers_follow() {
        let outcome = parse_lines("a s=\"x\ny\" 1\nbad\nb v=1 2", Precision::Nanoseconds, 0);
        assert_eq!(outcome.points.len(), 2);
        assert_eq!(fields(&outcome.points[0]), [("s", FieldValue::String("x\ny".into()))]);
        assert_eq!(outcome.errors, [LineError { line: 3, error: LineProtocolError::MissingFields }]);
    }

    #[test]
    fn precision_scales_timestamps() {
        for (precision, expected) in [
            (Precision::Seconds, 5_000_000_000),
            (Precision::Milliseconds, 5_000_000),
            (Precision::Microseconds, 5_000),
            (Precision::Hours, 18_000_000_000_000),
        ] {
            assert_eq!(parse_lines("m v=1 5", precision, 0).points[0].timestamp_ns(), expected);
        }
        assert_eq!(parse_lines("m v=1 9223372036854775807", Precision::Seconds, 0).error_count, 1);
        assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
        assert_eq!(Precision::parse("days"), None);
    }

    #[test]
    fn errors_are_capped_but_counted() {
        let input = "bad\n".repeat(MAX_LINE_ERRORS + 5);
        let outcome = parse_lines(&input, Precision::Nanoseconds, 0);
        assert_eq!((outcome.errors.len(), outcome.error_count), (MAX_LINE_ERRORS, MAX_LINE_ERRORS + 5));
    }

    proptest! {
        #[test]
        fn written_points_parse_back_equal(points in proptest::collection::vec(arb_point(), 1..8)) {
            let mut batch = String::new();
            for p in &points {
                write_point(p, &mut batch);
                batch.push('\n');
            }
            let outcome = parse_lines(&batch, Precision::Nanoseconds, 0);
            prop_assert!(outcome.errors.is_empty(), "{:?}\n{}", outcome.errors, batch);
            prop_assert_eq!(outcome.points, points);
        }

        #[test]
        fn arbitrary_text_never_panics(input in "\\PC{0,300}") {
            let outcome = parse_lines(&input, Precision::Seconds, 0);
            prop_assert!(outcome.errors.len() <= outcome.error_count);
        }

        #[test]
        fn arbitrary_line_protocol_alphabet_never_panics(input in "[a-z0-9 ,=\"\\\\\n#.itfu-]{0,200}") {
            let _ = parse_lines(&input, Precision::Nanoseconds, 0);
        }
    }
}
