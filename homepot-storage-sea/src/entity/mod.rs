//! sea-orm entities: the table rows. Private to the sea-orm backend.
// The entity derives require `pub` items; the module itself is private.
#![allow(unreachable_pub)]

pub(crate) mod api_key;
pub(crate) mod api_request_log;
pub(crate) mod api_request_rollup;
pub(crate) mod device;
pub(crate) mod device_state_change;
pub(crate) mod error_log;
pub(crate) mod job_outcome;
pub(crate) mod metric_point;
pub(crate) mod user_activity;
