//! Export encodings: rows of typed cells written as CSV (RFC 4180, a header line first) or
//! NDJSON (one JSON object per line, keyed by column). Rows are encoded one at a time into a
//! caller's buffer, so an export of any length is written in constant memory.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// An export's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// Newline-delimited JSON objects.
    Ndjson,
}

impl ExportFormat {
    /// Parses `csv` or `ndjson`.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// Its media type.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// Appends what precedes the rows: CSV's header line; nothing for NDJSON.
    pub fn header(self, columns: &[&str], out: &mut Vec<u8>) {
        if self == Self::Csv {
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(column, out);
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Appends one row; `cells` pairs with `columns`.
    pub fn row(self, columns: &[&str], cells: &[Cell], out: &mut Vec<u8>) {
        match self {
            Self::Csv => {
                for (i, cell) in cells.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    cell.write_csv(out);
                }
                out.extend_from_slice(b"\r\n");
            }
            Self::Ndjson => {
                let object: Map<String, Value> =
                    columns.iter().zip(cells).map(|(column, cell)| ((*column).to_owned(), cell.to_json())).collect();
                // Serialising a `Value` into a Vec cannot fail.
                serde_json::to_writer(&mut *out, &Value::Object(object)).unwrap_or_default();
                out.push(b'\n');
            }
        }
    }
}

/// One value of an exported row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent: an empty CSV field, JSON `null`.
    Null,
    /// A boolean: `true`/`false` in both encodings.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float; non-finite values are written as absent.
    Float(f64),
    /// Text.
    Text(String),
    /// An instant, written as RFC 3339 UTC with the precision it has.
    Time(DateTime<Utc>),
    /// A JSON document: nested in NDJSON, its compact text in CSV.
    Json(Value),
}

impl Cell {
    /// Text, or absent.
    #[must_use]
    pub fn text(value: Option<&str>) -> Self {
        value.map_or(Self::Null, |v| Self::Text(v.to_owned()))
    }

    /// An integer, or absent.
    #[must_use]
    pub fn int(value: Option<i64>) -> Self {
        value.map_or(Self::Null, Self::Int)
    }

    /// A float, or absent.
    #[must_use]
    pub fn float(value: Option<f64>) -> Self {
        value.map_or(Self::Null, Self::Float)
    }

    fn write_csv(&self, out: &mut Vec<u8>) {
        match self {
            Self::Null => {}
            Self::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Self::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Self::Float(f) if f.is_finite() => out.extend_from_slice(f.to_string().as_bytes()),
            Self::Float(_) => {}
            Self::Text(text) => csv_field(text, out),
            Self::Time(at) => out.extend_from_slice(time_text(*at).as_bytes()),
            Self::Json(value) => csv_field(&value.to_string(), out),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(n) => Value::from(*n),
            // `from_f64` is `None` exactly for the non-finite.
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Text(text) => Value::String(text.clone()),
            Self::Time(at) => Value::String(time_text(*at)),
            Self::Json(value) => value.clone(),
        }
    }
}

fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A CSV field, quoted when it holds a separator, a quote, a line break or surrounding space
/// (which some readers trim), or could be mistaken for absent.
fn csv_field(text: &str, out: &mut Vec<u8>) {
    let quote = text.is_empty()
        || text.starts_with(' ')
        || text.ends_with(' ')
        || text.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !quote {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for part in text.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const COLUMNS: &[&str] = &["a", "b", "c"];

    fn encode(format: ExportFormat, rows: &[Vec<Cell>]) -> Vec<u8> {
        let mut out = Vec::new();
        format.header(COLUMNS, &mut out);
        for row in rows {
            format.row(COLUMNS, row, &mut out);
        }
        out
    }

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            Just(Cell::Null),
            any::<bool>().prop_map(Cell::Bool),
            any::<i64>().prop_map(Cell::Int),
            any::<f64>().prop_map(Cell::Float),
            any::<String>().prop_map(Cell::Text),
            "[a-z\",\r\n ]{0,8}".prop_map(Cell::Text),
            (0i64..4_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(s, ns)| Cell::Time(DateTime::from_timestamp(s, ns).unwrap())),
            any::<String>().prop_map(|s| Cell::Json(serde_json::json!({"k": s, "n": [1, 2]}))),
        ]
    }

    /// What a reader of each encoding should get back for a cell.
    fn expected_text(cell: &Cell) -> String {
        let mut out = Vec::new();
        cell.write_csv(&mut out);
        match cell {
            Cell::Text(text) => text.clone(),
            Cell::Json(value) => value.to_string(),
            _ => String::from_utf8(out).unwrap(),
        }
    }

    proptest! {
        /// A standard CSV reader gets every field back exactly, whatever it holds.
        #[test]
        fn csv_reads_back(rows in proptest::collection::vec(proptest::collection::vec(cell(), 3), 0..8)) {
            let bytes = encode(ExportFormat::Csv, &rows);
            let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
            prop_assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS.to_vec());
            let read: Vec<Vec<String>> =
                reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
            let expected: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(expected_text).collect()).collect();
            prop_assert_eq!(read, expected);
        }

        /// Every NDJSON line is an object of the columns with each cell's JSON value.
        #[test]
        fn ndjson_reads_back(rows in proptest::collection::vec(proptest::collection::vec(cell(), 3), 0..8)) {
            let bytes = encode(ExportFormat::Ndjson, &rows);
            let text = String::from_utf8(bytes).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            prop_assert_eq!(lines.len(), rows.len());
            for (line, row) in lines.iter().zip(&rows) {
                let object: Map<String, Value> = serde_json::from_str(line).unwrap();
                let expected: Map<String, Value> =
                    COLUMNS.iter().zip(row).map(|(c, cell)| ((*c).to_owned(), cell.to_json())).collect();
                prop_assert_eq!(object, expected);
            }
        }
    }

    #[test]
    fn absent_and_empty_text_differ_in_csv() {
        let bytes = encode(ExportFormat::Csv, &[vec![Cell::Null, Cell::Text(String::new()), Cell::Float(f64::NAN)]]);
        assert_eq!(String::from_utf8(bytes).unwrap(), "a,b,c\r\n,\"\",\r\n");
    }
}
