//! `homepot containers request`: asks an edge device over MQTT to report container metrics,
//! as the bridge does when it starts, and reports the status the device answers with.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use homepot_core::container::{ContainerTopic, MetricsFilter, classify_topic};
use homepot_core::ingest::container_json::{parse_frequency, response_from_message};
use homepot_mqtt::request_for;
use rumqttc::{AsyncClient, Event, Packet, QoS};

use crate::settings::MqttAuthArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum ContainersCommand {
    /// Send a metrics request to a thing and wait for its status (204: accepted).
    Request(RequestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The broker: `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[arg(long, env = "HOMEPOT_MQTT_URL", default_value = "mqtt://127.0.0.1:1883", hide_env_values = true)]
    url: String,
    #[command(flatten)]
    auth: MqttAuthArgs,
    /// The thing, `<deviceId>:edge:containers`.
    #[arg(long)]
    thing: String,
    /// Reporting interval: seconds or 2s, 500ms, 1m; 0s stops reporting.
    #[arg(long, default_value = "2s")]
    frequency: String,
    /// Measurement ids or `prefix*` patterns; repeat for more (none: all).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only this originator (empty: all).
    #[arg(long, default_value = "")]
    originator: String,
    /// Seconds to wait for the device's answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

pub(crate) async fn run(command: ContainersCommand) -> anyhow::Result<()> {
    let ContainersCommand::Request(args) = command;
    let broker = args.auth.config(&args.url)?;
    let frequency_ms =
        parse_frequency(&serde_json::Value::String(args.frequency.clone())).map_err(anyhow::Error::msg)?;
    let filters = if args.ids.is_empty() && args.originator.is_empty() {
        Vec::new()
    } else {
        vec![MetricsFilter { ids: args.ids, originator: args.originator }]
    };
    let (topic, request) = request_for(&args.thing, frequency_ms, &filters);
    let client_id = format!("homepot-cli-{}", request.correlation_id);
    let options = broker.options(&client_id).map_err(anyhow::Error::msg)?;
    let (client, mut events) = AsyncClient::new(options, 16);
    // Both answer shapes: `res/<requestId>/<status>`, and the documented `res//request`
    // with the status and correlation id in the payload.
    client.subscribe(format!("command//{}/res/#", args.thing), QoS::AtLeastOnce).await?;
    let mut sent = false;
    let status = tokio::time::timeout(Duration::from_secs(args.timeout), async {
        loop {
            match events.poll().await.context("MQTT connection failed")? {
                Event::Incoming(Packet::SubAck(_)) if !sent => {
                    client.publish(&topic, QoS::AtLeastOnce, false, request.to_message().to_string()).await?;
                    sent = true;
                    println!(
                        "Sent metrics request {} to {} (frequency {})",
                        request.correlation_id, args.thing, args.frequency
                    );
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let ContainerTopic::Response { request_id, last, .. } = classify_topic(&p.topic) else { continue };
                    match response_from_message(&p.payload, request_id, last) {
                        Some(response) if response.correlation_id == request.correlation_id => {
                            let payload = String::from_utf8_lossy(&p.payload).into_owned();
                            return anyhow::Ok((response.status.to_string(), payload));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {} within {} s", args.thing, args.timeout))??;
    match status.0.as_str() {
        "204" => {
            println!("Accepted (204).");
            Ok(())
        }
        other => bail!("refused with {other}: {}", status.1),
    }
}
