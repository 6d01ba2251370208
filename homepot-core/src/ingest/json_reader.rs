//! Reads typed fields out of a JSON object while collecting one error per bad field, so a
//! client learns about every problem in one round trip instead of the first one only.

use serde_json::{Map, Value};

use crate::validation::{ErrorKind, ErrorSink, FieldError, LocSegment, ValidationErrors};

/// Parses `bytes` as a JSON object.
///
/// # Errors
/// A `jsondecode` error for malformed JSON, a `type_error.dict` error for any other value.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ValidationErrors> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ValidationErrors::single(FieldError::new(
            Vec::new(),
            ErrorKind::NotObject,
            "value is not a valid dict",
        ))),
        Err(error) => Err(ValidationErrors::single(FieldError::new(
            Vec::new(),
            ErrorKind::JsonDecode,
            format!("invalid JSON: {error}"),
        ))),
    }
}

/// A JSON object being read at a location in the document.
#[derive(Debug, Clone, Copy)]
pub struct ObjectReader<'a> {
    map: &'a Map<String, Value>,
    loc: &'a [LocSegment],
}

impl<'a> ObjectReader<'a> {
    /// Reads `map`, which sits at `loc` in the document.
    pub fn new(map: &'a Map<String, Value>, loc: &'a [LocSegment]) -> Self {
        Self { map, loc }
    }

    /// The location of this object.
    pub fn loc(&self) -> &'a [LocSegment] {
        self.loc
    }

    /// Whether `field` is present and not null.
    pub fn is_present(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// The present, non-null value of `field`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn missing(&self, sink: &mut ErrorSink, field: &str) {
        sink.at(self.loc, field, ErrorKind::Missing, "field required");
    }

    /// A required boolean.
    pub fn required_bool(&self, sink: &mut ErrorSink, field: &str) -> Option<bool> {
        let value = self.optional_bool(sink, field);
        if self.get(field).is_none() {
            self.missing(sink, field);
        }
        value
    }

    /// An optional boolean.
    pub fn optional_bool(&self, sink: &mut ErrorSink, field: &str) -> Option<bool> {
        match self.get(field)? {
            Value::Bool(b) => Some(*b),
            _ => {
                sink.at(self.loc, field, ErrorKind::NotBool, "value could not be parsed to a boolean");
                None
            }
        }
    }

    /// A required integer.
    pub fn required_int(&self, sink: &mut ErrorSink, field: &str) -> Option<i64> {
        let value = self.optional_int(sink, field);
        if self.get(field).is_none() {
            self.missing(sink, field);
        }
        value
    }

    /// An optional integer. Floats are refused even when whole: integer fields are counts.
    pub fn optional_int(&self, sink: &mut ErrorSink, field: &str) -> Option<i64> {
        match self.get(field)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    let msg = if n.is_u64() { "integer is too large" } else { "value is not a valid integer" };
                    sink.at(self.loc, field, ErrorKind::NotInteger, msg);
                    None
                }
            },
            _ => {
                sink.at(self.loc, field, ErrorKind::NotInteger, "value is not a valid integer");
                None
            }
        }
    }

    /// An optional number (integers are accepted as floats).
    pub fn optional_float(&self, sink: &mut ErrorSink, field: &str) -> Option<f64> {
        match self.get(field)? {
            Value::Number(n) => n.as_f64(),
            _ => {
                sink.at(self.loc, field, ErrorKind::NotFloat, "value is not a valid float");
                None
            }
        }
    }

    /// An optional string.
    pub fn optional_str(&self, sink: &mut ErrorSink, field: &str) -> Option<&'a str> {
        match self.get(field)? {
            Value::String(s) => Some(s.as_str()),
            _ => {
                sink.at(self.loc, field, ErrorKind::NotString, "str type expected");
                None
            }
        }
    }

    /// A required string.
    pub fn required_str(&self, sink: &mut ErrorSink, field: &str) -> Option<&'a str> {
        let value = self.optional_str(sink, field);
        if self.get(field).is_none() {
            self.missing(sink, field);
        }
        value
    }

    /// An optional object whose values must all be strings (labels, tags); each other value is
    /// an error located at its key. Absent: an empty map.
    pub fn string_map(&self, sink: &mut ErrorSink, field: &str) -> std::collections::BTreeMap<String, String> {
        let mut map = std::collections::BTreeMap::new();
        let Some(raw) = self.optional_object(sink, field) else { return map };
        let mut loc = self.loc.to_vec();
        loc.push(LocSegment::from(field));
        for (key, value) in raw {
            match value {
                Value::String(s) => {
                    map.insert(key.clone(), s.clone());
                }
                _ => sink.at(&loc, key, ErrorKind::NotString, "str type expected"),
            }
        }
        map
    }

    /// An optional object.
    pub fn optional_object(&self, sink: &mut ErrorSink, field: &str) -> Option<&'a Map<String, Value>> {
        match self.get(field)? {
            Value::Object(map) => Some(map),
            _ => {
                sink.at(self.loc, field, ErrorKind::NotObject, "value is not a valid dict");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(doc: Value, expected: &[(&str, &str)]) {
        let map = doc.as_object().unwrap().clone();
        let reader = ObjectReader::new(&map, &[]);
        let mut sink = ErrorSink::default();
        reader.required_bool(&mut sink, "b");
        reader.required_int(&mut sink, "i");
        reader.optional_float(&mut sink, "f");
        reader.optional_str(&mut sink, "s");
        reader.optional_object(&mut sink, "o");
        let got: Vec<(String, &str)> = match sink.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.errors().iter().map(|e| (e.loc[0].to_string(), e.kind.as_str())).collect(),
        };
        let expected: Vec<(String, &str)> = expected.iter().map(|(l, k)| (l.to_string(), *k)).collect();
        assert_eq!(got, expected, "for {doc}");
    }

    #[test]
    fn reports_every_bad_field() {
        check(json!({"b": true, "i": 3}), &[]);
        check(json!({"b": null, "i": 3, "f": 2}), &[("b", "value_error.missing")]);
        check(json!({}), &[("b", "value_error.missing"), ("i", "value_error.missing")]);
        check(
            json!({"b": "yes", "i": 1.5, "f": "x", "s": 1, "o": []}),
            &[
                ("b", "type_error.bool"),
                ("i", "type_error.integer"),
                ("f", "type_error.float"),
                ("s", "type_error.str"),
                ("o", "type_error.dict"),
            ][..],
        );
    }

    #[test]
    fn parse_object_rejects_non_objects() {
        assert_eq!(parse_object(b"[1]").unwrap_err().errors()[0].kind, ErrorKind::NotObject);
        assert_eq!(parse_object(b"{").unwrap_err().errors()[0].kind, ErrorKind::JsonDecode);
        assert!(parse_object(b"{}").is_ok());
    }
}
