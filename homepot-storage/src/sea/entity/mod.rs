//! sea-orm entities: the table rows. Private to the sea-orm backend.
// The entity derives require `pub` items; the module itself is private.
#![allow(unreachable_pub)]

pub(crate) mod api_key;
pub(crate) mod device;
pub(crate) mod health_check;
pub(crate) mod metric_point;
