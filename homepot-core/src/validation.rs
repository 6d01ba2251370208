//! Field-level validation errors, shaped like the original APIs' `422` `detail` entries
//! (`loc`, `msg`, `type`) so every adapter reports bad input the same way.

use std::fmt;

use chrono::{DateTime, Utc};

/// Most errors collected for one document; past this the client has enough to fix.
pub const MAX_ERRORS: usize = 64;

/// One step of the path to an offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocSegment {
    /// An object key.
    Field(String),
    /// An array index.
    Index(usize),
}

impl fmt::Display for LocSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocSegment::Field(name) => f.write_str(name),
            LocSegment::Index(index) => write!(f, "{index}"),
        }
    }
}

impl From<&str> for LocSegment {
    fn from(name: &str) -> Self {
        LocSegment::Field(name.to_owned())
    }
}

/// The machine-readable kind of a validation failure. `as_str` gives the original APIs' `type` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required field is absent (or `null`).
    Missing,
    /// The document is not valid JSON.
    JsonDecode,
    /// Expected a boolean.
    NotBool,
    /// Expected an integer.
    NotInteger,
    /// Expected a number.
    NotFloat,
    /// Expected a string.
    NotString,
    /// Expected an object.
    NotObject,
    /// A number below its minimum.
    TooSmall,
    /// A number above its maximum.
    TooLarge,
    /// A string shorter than allowed.
    TooShort,
    /// A string longer than allowed.
    TooLong,
    /// A string with characters outside its alphabet.
    BadFormat,
    /// Values that contradict each other (e.g. used > total).
    Inconsistent,
    /// A binary or structured document that cannot be decoded (e.g. protobuf).
    Undecodable,
    /// A string outside its fixed set of permitted values.
    NotOneOf,
}

impl ErrorKind {
    /// The `type` string of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Missing => "value_error.missing",
            ErrorKind::JsonDecode => "value_error.jsondecode",
            ErrorKind::NotBool => "type_error.bool",
            ErrorKind::NotInteger => "type_error.integer",
            ErrorKind::NotFloat => "type_error.float",
            ErrorKind::NotString => "type_error.str",
            ErrorKind::NotObject => "type_error.dict",
            ErrorKind::TooSmall => "value_error.number.not_ge",
            ErrorKind::TooLarge => "value_error.number.not_le",
            ErrorKind::TooShort => "value_error.any_str.min_length",
            ErrorKind::TooLong => "value_error.any_str.max_length",
            ErrorKind::BadFormat => "value_error.str.regex",
            ErrorKind::Inconsistent => "value_error",
            ErrorKind::Undecodable => "value_error.decode",
            ErrorKind::NotOneOf => "type_error.enum",
        }
    }
}

/// One invalid field: where it is, what is wrong, and the kind of failure.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path from the document root to the field.
    pub loc: Vec<LocSegment>,
    /// A human-readable message.
    pub msg: String,
    /// The kind of failure.
    pub kind: ErrorKind,
}

impl FieldError {
    /// A new error at `loc`.
    pub fn new(loc: Vec<LocSegment>, kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self { loc, msg: msg.into(), kind }
    }
}

/// Every problem found in one submitted document (never empty).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} invalid field(s), first: {}", .0.len(), first_message(.0))]
pub struct ValidationErrors(Vec<FieldError>);

fn first_message(errors: &[FieldError]) -> String {
    errors
        .first()
        .map(|e| {
            let path: Vec<String> = e.loc.iter().map(ToString::to_string).collect();
            format!("{}: {}", path.join("."), e.msg)
        })
        .unwrap_or_default()
}

impl ValidationErrors {
    /// A single error.
    pub fn single(error: FieldError) -> Self {
        Self(vec![error])
    }

    /// The collected errors, or `Ok(())` when there are none.
    ///
    /// # Errors
    /// Returns the errors when `errors` is not empty.
    pub fn check(errors: Vec<FieldError>) -> Result<(), Self> {
        if errors.is_empty() { Ok(()) } else { Err(Self(errors)) }
    }

    /// The errors, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Puts `prefix` in front of every location (e.g. `body` for an HTTP request body).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for error in &mut self.0 {
            error.loc.insert(0, LocSegment::from(prefix));
        }
        self
    }
}

/// Collects errors for one document, capped at [`MAX_ERRORS`].
#[derive(Debug, Default)]
pub struct ErrorSink {
    errors: Vec<FieldError>,
}

impl ErrorSink {
    /// Records an error unless the cap is reached.
    pub fn push(&mut self, error: FieldError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        }
    }

    /// Records an error at `loc` + `field`.
    pub fn at(&mut self, loc: &[LocSegment], field: &str, kind: ErrorKind, msg: impl Into<String>) {
        let mut path = loc.to_vec();
        path.push(LocSegment::from(field));
        self.push(FieldError::new(path, kind, msg));
    }

    /// How many errors have been recorded.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Finishes collection.
    ///
    /// # Errors
    /// Returns every recorded error when there was at least one.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        ValidationErrors::check(self.errors)
    }
}

/// Checks a string's length in characters against `min..=max`.
pub fn check_len(sink: &mut ErrorSink, loc: &[LocSegment], field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min {
        sink.at(loc, field, ErrorKind::TooShort, format!("ensure this value has at least {min} characters"));
    } else if len > max {
        sink.at(loc, field, ErrorKind::TooLong, format!("ensure this value has at most {max} characters"));
    }
}

/// Checks that an integer is within `min..=max`.
pub fn check_int_range(sink: &mut ErrorSink, loc: &[LocSegment], field: &str, value: i64, min: i64, max: i64) {
    if value < min {
        sink.at(loc, field, ErrorKind::TooSmall, format!("ensure this value is greater than or equal to {min}"));
    } else if value > max {
        sink.at(loc, field, ErrorKind::TooLarge, format!("ensure this value is less than or equal to {max}"));
    }
}

/// Checks that a float is finite and within `min..=max`.
pub fn check_float_range(sink: &mut ErrorSink, loc: &[LocSegment], field: &str, value: f64, min: f64, max: f64) {
    if !value.is_finite() {
        sink.at(loc, field, ErrorKind::NotFloat, "value is not a finite number");
    } else if value < min {
        sink.at(loc, field, ErrorKind::TooSmall, format!("ensure this value is greater than or equal to {min}"));
    } else if value > max {
        sink.at(loc, field, ErrorKind::TooLarge, format!("ensure this value is less than or equal to {max}"));
    }
}

/// An instant given as RFC 3339 or as Unix seconds (fractions allowed), as query parameters
/// and command lines take them.
#[must_use]
pub fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    match raw.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds.abs() < 1e15 => {
            let whole = seconds.floor();
            // Both fit: |whole| < 1e15, and the fraction is in [0, 1).
            DateTime::from_timestamp(whole as i64, ((seconds - whole) * 1e9) as u32)
        }
        Ok(_) => None,
        Err(_) => DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod instant_tests {
    use super::*;

    #[test]
    fn instants_parse_from_seconds_and_rfc3339() {
        let at = |s: i64, ns: u32| DateTime::from_timestamp(s, ns);
        assert_eq!(parse_instant("1700000000"), at(1_700_000_000, 0));
        assert_eq!(parse_instant("1.5"), at(1, 500_000_000));
        assert_eq!(parse_instant("-1.5"), at(-2, 500_000_000), "fractions count forward from the floor");
        assert_eq!(parse_instant("2026-11-30T12:00:00+01:00"), at(1_796_036_400, 0));
        for bad in ["yesterday", "NaN", "inf", "1e300", ""] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
