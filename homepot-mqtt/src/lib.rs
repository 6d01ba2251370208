//! The MQTT adapter of homepot: the bridge between an edge device's local broker and the
//! engine, for container metrics. A transport beside HTTP: it turns MQTT messages into
//! [`Homepot`] calls and carries the engine's metrics requests to devices.
//!
//! Depends on the engine and `homepot-core`; must not depend on storage, on HTTP, or read
//! the environment.
//!
//! - Data messages arrive on `e/<tenantId>/<thingId>` and, as the container metrics
//!   documentation shows them, on `command//<thingId>/res//data` (QoS 1).
//! - Metrics requests go to `command//<thingId>/req/<requestId>/request`. The device answers
//!   on `command//<thingId>/res/<requestId>/<status>` or, as documented, on
//!   `command//<thingId>/res//request` with the status and correlation id in the payload;
//!   the payload is read first.
//! - Requests go to the configured things at every connect, to every device that has sent
//!   container data with `request_all`, and to one device at a time through
//!   `POST /api/v1/containers/requests`, which waits for the device's answer.
//!
//! Nothing acknowledged is lost: the session is persistent and acks are manual, so a data
//! message is acknowledged to the broker only once its points are durable. A message storage
//! cannot take is left unacknowledged and the broker delivers it again after a reconnect.
//! Malformed messages are logged, counted and acknowledged (dropped): retrying cannot fix
//! them. The broker is reached over `mqtt://` or `mqtts://` (rustls, with the system's roots
//! or a given CA file), with a user name and password when configured.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use homepot_core::container::{
    ContainerTopic, MetricsFilter, MetricsRequest, THING_SUFFIX, classify_topic, device_of_thing,
};
use homepot_core::ingest::container_json::{parse_data_message, response_from_message};
use homepot_engine::{ContainerRequester, DeviceAnswer, EngineError, Homepot, RequestError};
use rand::RngCore;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the bridge verifies a `mqtts://` broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttTls {
    /// Against the operating system's trusted roots.
    SystemRoots,
    /// Against the CA certificates in this PEM file only.
    CaFile(PathBuf),
}

/// Bridge settings.
#[derive(Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS to the broker (`mqtts://`); `None` is plain TCP.
    pub tls: Option<MqttTls>,
    /// User name for the broker, if it wants one.
    pub username: Option<String>,
    /// Password for the broker (never logged).
    pub password: Option<String>,
    /// MQTT client id; keep it stable so the broker keeps the session across restarts.
    pub client_id: String,
    /// Things (`<deviceId>:edge:containers`) to ask for metrics whenever the bridge connects.
    pub things: Vec<String>,
    /// Also ask every registered device that has sent container data, at every connect.
    pub request_all: bool,
    /// Requested reporting interval in ms (0 stops reporting).
    pub frequency_ms: u64,
    /// Requested measurements (none: everything).
    pub filters: Vec<MetricsFilter>,
    /// How long `POST /api/v1/containers/requests` waits for a device's answer.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field("things", &self.things)
            .field("request_all", &self.request_all)
            .field("frequency_ms", &self.frequency_ms)
            .field("filters", &self.filters)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl MqttConfig {
    /// Settings for `mqtt://[user[:password]@]host[:port]` (port 1883) or `mqtts://…`
    /// (TLS against the system's roots, port 8883).
    ///
    /// # Errors
    /// When the URL is neither, or has no host or a bad port.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, Some(MqttTls::SystemRoots), 8883)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (rest, None, 1883)
        } else {
            return Err("expected mqtt://host[:port] or mqtts://host[:port]".to_owned());
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, rest),
        };
        let (username, password) = match credentials {
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
                None => (Some(c.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("bad port in {}", redact_url(url)))?),
            None => (address, default_port),
        };
        if host.is_empty() {
            return Err(format!("no host in {}", redact_url(url)));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            username,
            password,
            client_id: "homepot".to_owned(),
            things: Vec::new(),
            request_all: false,
            frequency_ms: 2_000,
            filters: Vec::new(),
            request_timeout: Duration::from_secs(10),
        })
    }

    /// Client options for this broker under `client_id`: transport, credentials, keep-alive.
    ///
    /// # Errors
    /// When the CA file cannot be read or holds no certificate, or the system has no roots.
    pub fn options(&self, client_id: &str) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::Tls(tls_configuration(tls)?));
        }
        if let Some(username) = &self.username {
            options.set_credentials(username, self.password.clone().unwrap_or_default());
        }
        Ok(options)
    }
}

/// An MQTT URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((credentials, address)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{address}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// rustls with ring, whatever provider the process installed: an embedding service need
/// not install one.
fn tls_configuration(tls: &MqttTls) -> Result<TlsConfiguration, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match tls {
        MqttTls::SystemRoots => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!("no trusted roots found on this system: {:?}", found.errors));
            }
        }
        MqttTls::CaFile(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("no certificate in CA file {}", path.display()));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
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

/// The running bridge's handle: sends requests and matches the devices' answers to them.
#[derive(Debug)]
struct MqttBridge {
    client: AsyncClient,
    /// Requests waiting for an answer, by correlation id.
    pending: Mutex<HashMap<String, oneshot::Sender<DeviceAnswer>>>,
    timeout: Duration,
}

impl MqttBridge {
    /// The handle and the event loop that [`run_bridge`] drives.
    ///
    /// # Errors
    /// When the TLS settings cannot be loaded.
    fn new(config: &MqttConfig) -> Result<(Arc<Self>, EventLoop), String> {
        let mut options = config.options(&config.client_id)?;
        options.set_manual_acks(true).set_clean_session(false);
        let (client, events) = AsyncClient::new(options, 256);
        let bridge = Self { client, pending: Mutex::default(), timeout: config.request_timeout };
        Ok((Arc::new(bridge), events))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<DeviceAnswer>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends a metrics request to `thing` and waits for its answer.
    async fn ask(
        &self,
        thing: &str,
        frequency_ms: u64,
        filters: &[MetricsFilter],
    ) -> Result<DeviceAnswer, RequestError> {
        let (topic, request) = request_for(thing, frequency_ms, filters);
        let (answer, answered) = oneshot::channel();
        self.pending().insert(request.correlation_id.clone(), answer);
        let payload = request.to_message().to_string();
        let result = match self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
            Ok(()) => match tokio::time::timeout(self.timeout, answered).await {
                Ok(Ok(answer)) => Ok(answer),
                _ => Err(RequestError::Timeout),
            },
            Err(error) => Err(RequestError::NotSent(error.to_string())),
        };
        self.pending().remove(&request.correlation_id);
        result
    }

    /// Sends requests without waiting for answers (they are logged when they come).
    async fn send_requests(&self, things: Vec<String>, frequency_ms: u64, filters: &[MetricsFilter]) {
        for thing in things {
            let (topic, request) = request_for(&thing, frequency_ms, filters);
            let payload = request.to_message().to_string();
            if let Err(error) = self.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                tracing::warn!(%error, thing, "MQTT metrics request not sent");
            }
        }
    }

    /// Hands an answer to the request waiting for it, if one is.
    fn answer(&self, correlation_id: &str, answer: DeviceAnswer) {
        if let Some(waiting) = self.pending().remove(correlation_id) {
            let _ = waiting.send(answer);
        }
    }
}

#[async_trait]
impl ContainerRequester for MqttBridge {
    async fn request(
        &self,
        thing: &str,
        frequency_ms: u64,
        filters: &[MetricsFilter],
    ) -> Result<DeviceAnswer, RequestError> {
        self.ask(thing, frequency_ms, filters).await
    }
}

/// A running bridge.
#[derive(Debug)]
pub struct RunningBridge {
    task: JoinHandle<()>,
}

impl RunningBridge {
    /// Stops the bridge. A message it was storing stays unacknowledged: the broker delivers
    /// it again.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Starts the bridge for `homepot` and makes it the engine's transport for metrics requests.
///
/// # Errors
/// When the TLS settings cannot be loaded.
pub fn spawn(homepot: Homepot, config: MqttConfig) -> Result<RunningBridge, String> {
    let (bridge, events) = MqttBridge::new(&config)?;
    homepot.set_container_requester(bridge.clone());
    let task = tokio::spawn(run_bridge(config, bridge, events, homepot));
    Ok(RunningBridge { task })
}

/// Runs until aborted, reconnecting whenever the broker goes away.
async fn run_bridge(config: MqttConfig, bridge: Arc<MqttBridge>, mut events: EventLoop, state: Homepot) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(host = %config.host, port = config.port, tls = config.tls.is_some(), "MQTT bridge connected");
                // Subscriptions survive in a persistent session, but a new broker may not have it.
                for topic in ["e/+/+", "command//+/res/#"] {
                    if let Err(error) = bridge.client.subscribe(topic, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, topic, "MQTT subscribe failed");
                    }
                }
                // Publishing waits when the client's queue is full, and only this loop empties
                // it: requests go out from a task of their own.
                tokio::spawn(request_on_connect(config.clone(), Arc::clone(&bridge), state.clone()));
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => handle(&bridge, &state, publish).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "MQTT connection lost; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The requests due at every connect: the configured things, and with `request_all` every
/// device that has sent container data.
async fn request_on_connect(config: MqttConfig, bridge: Arc<MqttBridge>, state: Homepot) {
    let mut things = config.things.clone();
    if config.request_all {
        match state.container_reporters().await {
            Ok(devices) => things.extend(devices.into_iter().map(|d| format!("{d}{THING_SUFFIX}"))),
            Err(error) => tracing::warn!(%error, "devices sending container data not read; only --mqtt-thing asked"),
        }
    }
    things.sort();
    things.dedup();
    bridge.send_requests(things, config.frequency_ms, &config.filters).await;
}

async fn handle(bridge: &MqttBridge, state: &Homepot, publish: Publish) {
    match classify_topic(&publish.topic) {
        ContainerTopic::Data { thing } => {
            state.stats().mqtt_message();
            if store_data(state, thing, &publish.payload).await {
                ack(&bridge.client, &publish).await;
            }
        }
        ContainerTopic::Response { thing, request_id, last } => {
            match response_from_message(&publish.payload, request_id, last) {
                Some(response) => {
                    if response.status == 204 {
                        tracing::info!(thing, request_id = %response.correlation_id, "container metrics request accepted");
                    } else {
                        tracing::warn!(thing, request_id = %response.correlation_id, status = response.status,
                            payload = %String::from_utf8_lossy(&publish.payload), "container metrics request refused");
                    }
                    let payload = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                    bridge.answer(&response.correlation_id, DeviceAnswer { status: response.status, payload });
                }
                None => tracing::warn!(thing, topic = %publish.topic, "container metrics response without a status"),
            }
            ack(&bridge.client, &publish).await;
        }
        ContainerTopic::Other => ack(&bridge.client, &publish).await,
    }
}

async fn ack(client: &AsyncClient, publish: &Publish) {
    if let Err(error) = client.ack(publish).await {
        tracing::warn!(%error, "MQTT ack failed");
    }
}

/// Stores one data message; `true` when it may be acknowledged (stored, or hopeless).
async fn store_data(state: &Homepot, thing: &str, payload: &[u8]) -> bool {
    let data = match parse_data_message(payload, Some(thing), state.now().timestamp_millis()) {
        Ok(data) => data,
        Err(error) => {
            state.stats().mqtt_rejected();
            tracing::warn!(%error, thing, "malformed container metrics message dropped");
            return true;
        }
    };
    let Some(device) = device_of_thing(thing) else {
        state.stats().mqtt_rejected();
        tracing::warn!(thing, "container metrics for an invalid thing id dropped");
        return true;
    };
    match state.device(&device).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            state.stats().mqtt_rejected();
            tracing::warn!(%device, "container metrics for an unregistered device dropped");
            return true;
        }
        Err(error) => {
            tracing::warn!(%error, "device lookup failed; message left for redelivery");
            return false;
        }
    }
    for attempt in 0..5u32 {
        match state.record_container_data(&format!("mqtt:{device}"), &device, &data, None).await {
            Ok(_) => return true,
            Err(EngineError::SeriesLimit(error)) => {
                state.stats().mqtt_rejected();
                tracing::error!(%error, %device, "container metrics over the live series limit; dropped");
                return true;
            }
            // Worth waiting for: storage is busy, unreachable or locked, or the queue is full.
            Err(error) if error.is_retryable() => {}
            Err(error) => {
                state.stats().mqtt_rejected();
                tracing::error!(%error, %device, "container metrics could not be stored; dropped");
                return true;
            }
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
        assert_eq!((config.host.as_str(), config.port, config.tls.clone()), ("127.0.0.1", 1884, None));
        assert_eq!(MqttConfig::from_url("mqtt://broker").unwrap().port, 1883);
        let secure = MqttConfig::from_url("mqtts://user:s3cret@broker.example/").unwrap();
        assert_eq!((secure.host.as_str(), secure.port), ("broker.example", 8883));
        assert_eq!(
            (secure.tls.clone(), secure.username.as_deref(), secure.password.as_deref()),
            (Some(MqttTls::SystemRoots), Some("user"), Some("s3cret"))
        );
        assert!(!format!("{secure:?}").contains("s3cret"), "the password is never printed");
        assert_eq!(redact_url("mqtts://user:s3cret@broker:8883"), "mqtts://user:***@broker:8883");
        assert!(MqttConfig::from_url("http://broker").is_err());
        assert!(MqttConfig::from_url("mqtt://:1883").is_err());
        let (topic, request) = request_for("edge:device:edge:containers", 2_000, &[]);
        assert!(topic.starts_with("command//edge:device:edge:containers/req/") && topic.ends_with("/request"));
        assert_eq!(request.to_message()["value"]["frequency"], "2s");
    }
}
