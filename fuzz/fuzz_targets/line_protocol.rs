//! Line protocol: any input parses without panicking, and every accepted point, written back
//! in canonical form, parses to the same point.
#![no_main]

use homepot_core::ingest::line_protocol::{Precision, parse_lines, write_point};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let outcome = parse_lines(text, Precision::Nanoseconds, 0);
    for point in &outcome.points {
        let mut line = String::new();
        write_point(point, &mut line);
        let again = parse_lines(&line, Precision::Nanoseconds, 0);
        assert_eq!(again.points.as_slice(), std::slice::from_ref(point), "round trip of {line:?}");
    }
});
