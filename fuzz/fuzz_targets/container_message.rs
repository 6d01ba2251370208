//! Container metrics messages (request, response, data): arbitrary bytes parse or fail
//! cleanly, and parsed data becomes points without panicking.
#![no_main]

use homepot_core::container::{MetricsData, MetricsRequest, MetricsResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = MetricsRequest::parse(data);
    let _ = MetricsResponse::parse(data);
    if let Ok(message) = MetricsData::parse(data, None, 0) {
        let _ = message.points();
    }
});
