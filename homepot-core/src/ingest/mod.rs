//! Adapters from submitted documents to domain values. Each adapter reports every problem it
//! finds with its location, so all ingest formats answer bad input the same way.

pub mod analytics_json;
pub mod container_json;
pub mod device_json;
pub mod health_json;
pub mod json_reader;
pub mod line_protocol;
pub mod metrics_json;
pub mod node_json;
pub mod otlp;
pub mod remote_write;
