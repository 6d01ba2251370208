//! OTLP/HTTP: arbitrary protobuf and JSON bodies decode and map to points without panicking.
#![no_main]

use homepot_core::ingest::otlp::{decode_json, decode_protobuf, to_points};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_protobuf(data) {
        let _ = to_points(&request, 0);
    }
    if let Ok(request) = decode_json(data) {
        let _ = to_points(&request, 0);
    }
});
