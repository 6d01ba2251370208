//! Container metrics requests travel over a transport the engine does not own (the MQTT
//! bridge): the transport registers itself as the [`ContainerRequester`], and the engine
//! forwards operators' requests to it. Which devices send container data is remembered, so
//! that a transport can ask them all again after it reconnects.

use std::fmt;

use async_trait::async_trait;
use homepot_core::container::MetricsFilter;
use serde_json::Value;

/// A device's answer to a metrics request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAnswer {
    /// HTTP-style status: 204 when the device accepted.
    pub status: u16,
    /// What the device sent (JSON, or `null` when it sent none).
    pub payload: Value,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The device did not answer in time.
    #[error("the device did not answer in time")]
    Timeout,
    /// The request could not be sent.
    #[error("the request could not be sent: {0}")]
    NotSent(String),
}

/// Sends metrics requests to edge devices and waits for their answers.
#[async_trait]
pub trait ContainerRequester: Send + Sync + fmt::Debug {
    /// Asks `thing` to report every `frequency_ms` what `filters` select; the device's answer.
    ///
    /// # Errors
    /// [`RequestError`] when no answer came.
    async fn request(
        &self,
        thing: &str,
        frequency_ms: u64,
        filters: &[MetricsFilter],
    ) -> Result<DeviceAnswer, RequestError>;
}
