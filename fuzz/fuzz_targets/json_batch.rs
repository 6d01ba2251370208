//! The metrics service's JSON bodies (simple and batch) and a health report: arbitrary bytes
//! give points or validation errors, never a panic.
#![no_main]

use homepot_core::ingest::health_json::parse_health_check;
use homepot_core::ingest::metrics_json::{parse_metric_batch, parse_simple_metric};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_metric_batch(data, 0);
    let _ = parse_simple_metric(data, 0);
    let _ = parse_health_check(data);
});
