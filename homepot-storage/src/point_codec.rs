//! How a point's typed fields are kept in a JSON column: an array of `[key, {type: value}]`
//! pairs. The array keeps the submitted order (JSON objects, and PostgreSQL's `jsonb`, do
//! not), and the type tag brings `1i`, `1u`, `1.0` and `"1"` back as what they were.

use homepot_core::FieldValue;
use serde_json::{Value, json};

/// `[["usage", {"f": 45.2}], ["count", {"i": 3}], ["ok", {"b": true}], ["n", {"u": "18446744073709551615"}]]`.
/// Unsigned values are strings, which every JSON column holds exactly.
pub fn fields_to_json(fields: &[(String, FieldValue)]) -> Value {
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
