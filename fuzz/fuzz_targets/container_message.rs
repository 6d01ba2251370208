//! Container metrics messages (request, response, data): arbitrary bytes parse or fail
//! cleanly, and parsed data becomes points without panicking.
#![no_main]

use homepot_core::ingest::container_json::{parse_data_message, parse_request_message, parse_response_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request_message(data);
    let _ = parse_response_message(data);
    if let Ok(message) = parse_data_message(data, None, 0) {
        let _ = message.points();
    }
});
