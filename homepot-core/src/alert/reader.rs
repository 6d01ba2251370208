//! Reads a JSON object field by field into an [`ErrorSink`], so that every wrong, missing or
//! unknown field of an alerting document is reported at its own location. YAML and TOML
//! documents are read the same way once turned into JSON values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::validation::{ErrorKind, ErrorSink, LocSegment};

pub(crate) struct Reader<'a> {
    map: &'a Map<String, Value>,
    loc: Vec<LocSegment>,
}

impl<'a> Reader<'a> {
    /// `value` as an object, or an error at `loc`.
    pub(crate) fn object(value: &'a Value, loc: &[LocSegment], sink: &mut ErrorSink) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { map, loc: loc.to_vec() }),
            _ => {
                sink.push(crate::FieldError::new(loc.to_vec(), ErrorKind::NotObject, "value is not a valid dict"));
                None
            }
        }
    }

    pub(crate) fn loc(&self) -> &[LocSegment] {
        &self.loc
    }

    /// Reports every key not in `allowed`, naming what is.
    pub(crate) fn deny_unknown(&self, allowed: &[&str], what: &str, sink: &mut ErrorSink) {
        for key in self.map.keys() {
            if !allowed.contains(&key.as_str()) {
                sink.at(
                    &self.loc,
                    key,
                    ErrorKind::NotOneOf,
                    format!("unknown field for {what}; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }

    pub(crate) fn missing(&self, key: &str, sink: &mut ErrorSink) {
        sink.at(&self.loc, key, ErrorKind::Missing, "field required");
    }

    pub(crate) fn string(&self, key: &str, sink: &mut ErrorSink) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                sink.at(&self.loc, key, ErrorKind::NotString, "str type expected");
                None
            }
        }
    }

    pub(crate) fn required_string(&self, key: &str, sink: &mut ErrorSink) -> Option<String> {
        if !self.has(key) {
            self.missing(key, sink);
            return None;
        }
        self.string(key, sink)
    }

    pub(crate) fn number(&self, key: &str, sink: &mut ErrorSink) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
            _ => {
                sink.at(&self.loc, key, ErrorKind::NotFloat, "value is not a valid float");
                None
            }
        }
    }

    pub(crate) fn required_number(&self, key: &str, sink: &mut ErrorSink) -> Option<f64> {
        if !self.has(key) {
            self.missing(key, sink);
            return None;
        }
        self.number(key, sink)
    }

    /// A whole number within `min..=max`.
    pub(crate) fn integer(&self, key: &str, min: u64, max: u64, sink: &mut ErrorSink) -> Option<u64> {
        let value = self.get(key)?;
        match value.as_u64() {
            Some(n) if n < min => {
                sink.at(&self.loc, key, ErrorKind::TooSmall, format!("ensure this value is >= {min}"))
            }
            Some(n) if n > max => {
                sink.at(&self.loc, key, ErrorKind::TooLarge, format!("ensure this value is <= {max}"))
            }
            Some(n) => return Some(n),
            None => sink.at(&self.loc, key, ErrorKind::NotInteger, "value is not a valid integer"),
        }
        None
    }

    pub(crate) fn boolean(&self, key: &str, sink: &mut ErrorSink) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                sink.at(&self.loc, key, ErrorKind::NotBool, "value could not be parsed to a boolean");
                None
            }
        }
    }

    /// A duration: seconds as a number, or text such as `90s`, `5m`, `1h30m`, `7d`, within
    /// `0..=max_s` seconds.
    pub(crate) fn duration(&self, key: &str, max_s: u64, sink: &mut ErrorSink) -> Option<u64> {
        let seconds = match self.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(text) => super::rule::parse_duration(text),
            _ => None,
        };
        match seconds {
            Some(s) if s <= max_s => Some(s),
            Some(_) => {
                sink.at(&self.loc, key, ErrorKind::TooLarge, format!("ensure this duration is at most {max_s} s"));
                None
            }
            None => {
                sink.at(&self.loc, key, ErrorKind::BadFormat, "expected a duration such as 30s, 5m, 1h or 7d");
                None
            }
        }
    }

    /// An object of strings to strings.
    pub(crate) fn string_map(&self, key: &str, sink: &mut ErrorSink) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(value) = self.get(key) else { return out };
        let Value::Object(map) = value else {
            sink.at(&self.loc, key, ErrorKind::NotObject, "value is not a valid dict");
            return out;
        };
        let mut loc = self.loc.clone();
        loc.push(LocSegment::from(key));
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                _ => sink.at(&loc, k, ErrorKind::NotString, "str type expected"),
            }
        }
        out
    }

    /// A list of strings.
    pub(crate) fn strings(&self, key: &str, sink: &mut ErrorSink) -> Vec<String> {
        let Some(value) = self.get(key) else { return Vec::new() };
        let Value::Array(items) = value else {
            sink.at(&self.loc, key, ErrorKind::NotString, "value is not a valid list");
            return Vec::new();
        };
        let mut loc = self.loc.clone();
        loc.push(LocSegment::from(key));
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                _ => {
                    let mut at = loc.clone();
                    at.push(LocSegment::Index(i));
                    sink.push(crate::FieldError::new(at, ErrorKind::NotString, "str type expected"));
                }
            }
        }
        out
    }
}

/// `loc` with `key` appended.
pub(crate) fn under(loc: &[LocSegment], key: &str) -> Vec<LocSegment> {
    let mut out = loc.to_vec();
    out.push(LocSegment::from(key));
    out
}
