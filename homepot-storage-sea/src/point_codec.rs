//! How a point's typed fields are kept in a JSON column: an array of `[key, {type: value}]`
//! pairs. The array keeps the submitted order (JSON objects, and PostgreSQL's `jsonb`, do
//! not), and the type tag brings `1i`, `1u`, `1.0` and `"1"` back as what they were.

use homepot_core::FieldValue;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// A point's fields in their stored form; the one definition of that form, serialised to
/// a `Value` or straight to text.
struct Fields<'a>(&'a [(String, FieldValue)]);

/// One field value under its type tag.
struct Tagged<'a>(&'a FieldValue);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(key, value)| (key, Tagged(value))))
    }
}

impl Serialize for Tagged<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            FieldValue::Float(v) => map.serialize_entry("f", v)?,
            FieldValue::Integer(v) => map.serialize_entry("i", v)?,
            FieldValue::UInteger(v) => map.serialize_entry("u", &v.to_string())?,
            FieldValue::Boolean(v) => map.serialize_entry("b", v)?,
            FieldValue::String(v) => map.serialize_entry("s", v)?,
        }
        map.end()
    }
}

/// `[["usage", {"f": 45.2}], ["count", {"i": 3}], ["ok", {"b": true}], ["n", {"u": "18446744073709551615"}]]`.
/// Unsigned values are strings, which every JSON column holds exactly.
pub fn fields_to_json(fields: &[(String, FieldValue)]) -> Value {
    // Strings, numbers and booleans always serialise.
    serde_json::to_value(Fields(fields)).unwrap_or_else(|_| Value::Array(Vec::new()))
}

/// [`fields_to_json`] written straight to JSON text, without building a `Value`: the form a
/// backend binds on the write path, where building and cloning `Value` trees dominated.
pub fn fields_to_json_text(fields: &[(String, FieldValue)]) -> String {
    serde_json::to_string(&Fields(fields)).unwrap_or_else(|_| String::from("[]"))
}

/// Tags (sorted by key) as a JSON object's text: `{"host":"server1","region":"eu"}`.
pub fn tags_to_json_text(tags: &[(String, String)]) -> String {
    struct Tags<'a>(&'a [(String, String)]);
    impl Serialize for Tags<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    serde_json::to_string(&Tags(tags)).unwrap_or_else(|_| String::from("{}"))
}

/// The inverse of [`fields_to_json`]; `None` for a value it did not write.
pub fn fields_from_json(value: &Value) -> Option<Vec<(String, FieldValue)>> {
    value
        .as_array()?
        .iter()
        .map(|pair| {
            let [key, tagged] = pair.as_array()?.as_slice() else { return None };
            let (kind, inner) = tagged.as_object()?.iter().next()?;
            let field = match kind.as_str() {
                "f" => FieldValue::Float(inner.as_f64()?),
                "i" => FieldValue::Integer(inner.as_i64()?),
                "u" => FieldValue::UInteger(inner.as_str()?.parse().ok()?),
                "b" => FieldValue::Boolean(inner.as_bool()?),
                "s" => FieldValue::String(inner.as_str()?.to_owned()),
                _ => return None,
            };
            Some((key.as_str()?.to_owned(), field))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use homepot_core::metric::strategies::arb_point;
    use proptest::prelude::*;

    /// The documented form, written out independently of the serialiser.
    fn documented(fields: &[(String, FieldValue)]) -> Value {
        use serde_json::json;
        fields
            .iter()
            .map(|(key, value)| {
                let tagged = match value {
                    FieldValue::Float(v) => json!({ "f": v }),
                    FieldValue::Integer(v) => json!({ "i": v }),
                    FieldValue::UInteger(v) => json!({ "u": v.to_string() }),
                    FieldValue::Boolean(v) => json!({ "b": v }),
                    FieldValue::String(v) => json!({ "s": v }),
                };
                json!([key, tagged])
            })
            .collect()
    }

    proptest! {
        /// Both forms are the documented document, and read back to the same fields.
        #[test]
        fn text_and_value_forms_agree(point in arb_point()) {
            let text = fields_to_json_text(point.fields());
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&parsed, &documented(point.fields()));
            prop_assert_eq!(&fields_to_json(point.fields()), &documented(point.fields()));
            prop_assert_eq!(fields_from_json(&parsed), Some(point.fields().to_vec()));
            let tags: Value = serde_json::from_str(&tags_to_json_text(point.tags())).unwrap();
            let expected: serde_json::Map<String, Value> =
                point.tags().iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            prop_assert_eq!(tags, Value::Object(expected));
        }
    }
}
