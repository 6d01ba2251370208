//! The MQTT bridge for container metrics, as an edge device's local broker carries
//! them: data messages arrive on `e/<tenantId>/<thingId>` (QoS 1); metrics requests go to
//! `command//<thingId>/req/<requestId>/request`, and their status comes back on
//! `command//<thingId>/res/<requestId>/<status>`.
//!
//! Nothing acknowledged is lost: the session is persistent and acks are manual, so a data
//! message is acknowledged to the broker only once its points are durable. A message storage
//! cannot take is left unacknowledged and the broker delivers it again after a reconnect.
//! Malformed messages are logged, counted and acknowledged (dropped): retrying cannot fix
//! them.

use std::sync::Arc;
use std::time::Duration;

use homepot_core::container::{MetricsData, MetricsFilter, MetricsRequest, device_of_thing};
use rand::RngCore;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};

use crate::api::{AppState, now};
use crate::pipeline::WriteError;

/// Bridge settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id; keep it stable so the broker keeps the session across restarts.
    pub client_id: String,
    /// Things (`<deviceId>:edge:containers`) to ask for metrics when the bridge connects.
    pub things: Vec<String>,
    /// Requested reporting interval in ms (0 stops reporting).
    pub frequency_ms: u64,
    /// Requested measurements (none: everything).
    pub filters: Vec<MetricsFilter>,
}

impl MqttConfig {
    /// Settings for `mqtt://host[:port]` (port 1883 by default).
    ///
    /// # Errors
    /// When the URL is not `mqtt://`.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("mqtt://").ok_or_else(|| format!("expected mqtt://host[:port], got {url}"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("bad port in {url}"))?),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(format!("no host in {url}"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            client_id: "homepot".to_owned(),
            things: Vec::new(),
            frequency_ms: 2_000,
            filters: Vec::new(),
        })
    }
}

/// The request message for `thing`, and the topic it goes to.
pub fn request_for(thing: &str, frequency_ms: u64, filters: &[MetricsFilter]) -> (String, MetricsRequest) {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let request_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let topic = format!("command//{thing}/req/{request_id}/request");
    (
        topic,
        MetricsRequest {
            thing_id: thing.to_owned(),
            correlation_id: request_id,
            frequency_ms,
            filters: filters.to_vec(),
        },
    )
}

/// Runs until aborted, reconnecting whenever the broker goes away.
pub(crate) async fn run_bridge(config: MqttConfig, state: Arc<AppState>) {
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options.set_keep_alive(Duration::from_secs(30)).set_manual_acks(true).set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 256);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(host = %config.host, port = config.port, "MQTT bridge connected");
                // Subscriptions survive in a persistent session, but a new broker may not have it.
                for topic in ["e/+/+", "command//+/res/#"] {
                    if let Err(error) = client.subscribe(topic, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, topic, "MQTT subscribe failed");
                    }
                }
                for thing in &config.things {
                    let (topic, request) = request_for(thing, config.frequency_ms, &config.filters);
                    let payload = request.to_message().to_string();
                    if let Err(error) = client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                        tracing::warn!(%error, thing, "MQTT metrics request not sent");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => handle(&client, &state, publish).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "MQTT connection lost; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn handle(client: &AsyncClient, state: &AppState, publish: Publish) {
    let topic = publish.topic.clone();
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["e", _tenant, thing] => {
            state.stats.mqtt_message();
            if store_data(state, thing, &publish.payload).await {
                ack(client, &publish).await;
            }
        }
        ["command", "", thing, "res", request_id, status] => {
            match status.parse::<u16>() {
                Ok(204) => tracing::info!(thing, request_id, "container metrics request accepted"),
                _ => {
                    tracing::warn!(thing, request_id, status, payload = %String::from_utf8_lossy(&publish.payload), "container metrics request refused")
                }
            }
            ack(client, &publish).await;
        }
        _ => ack(client, &publish).await,
    }
}

async fn ack(client: &AsyncClient, publish: &Publish) {
    if let Err(error) = client.ack(publish).await {
        tracing::warn!(%error, "MQTT ack failed");
    }
}

/// Stores one data message; `true` when it may be acknowledged (stored, or hopeless).
async fn store_data(state: &AppState, thing: &str, payload: &[u8]) -> bool {
    let data = match MetricsData::parse(payload, Some(thing), now().timestamp_millis()) {
        Ok(data) => data,
        Err(error) => {
            state.stats.mqtt_rejected();
            tracing::warn!(%error, thing, "malformed container metrics message dropped");
            return true;
        }
    };
    let Some(device) = device_of_thing(thing) else {
        state.stats.mqtt_rejected();
        tracing::warn!(thing, "container metrics for an invalid thing id dropped");
        return true;
    };
    match state.store.device(&device).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            state.stats.mqtt_rejected();
            tracing::warn!(%device, "container metrics for an unregistered device dropped");
            return true;
        }
        Err(error) => {
            tracing::warn!(%error, "device lookup failed; message left for redelivery");
            return false;
        }
    }
    let points = data.points();
    for attempt in 0..5u32 {
        match state.pipeline.write_points(&format!("mqtt:{device}"), points.clone()).await {
            Ok(_) => return true,
            Err(WriteError::SeriesLimit(error)) => {
                state.stats.mqtt_rejected();
                tracing::error!(%error, %device, "container metrics over the live series limit; dropped");
                return true;
            }
            Err(WriteError::Overloaded | WriteError::Stopped) => {}
            Err(WriteError::Storage(error)) if !matches!(*error, homepot_storage::StorageError::Unavailable { .. }) => {
                state.stats.mqtt_rejected();
                tracing::error!(%error, %device, "container metrics could not be stored; dropped");
                return true;
            }
            Err(WriteError::Storage(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::warn!(%device, "storage unavailable; container metrics left for redelivery");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_requests() {
        let config = MqttConfig::from_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 1884));
        assert_eq!(MqttConfig::from_url("mqtt://broker").unwrap().port, 1883);
        assert!(MqttConfig::from_url("http://broker").is_err());
        let (topic, request) = request_for("edge:device:edge:containers", 2_000, &[]);
        assert!(topic.starts_with("command//edge:device:edge:containers/req/") && topic.ends_with("/request"));
        assert_eq!(request.to_message()["value"]["frequency"], "2s");
    }
}
