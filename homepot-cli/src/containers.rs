//! `homepot containers request`: asks an edge device over MQTT to report container metrics,
//! as the bridge does when it starts, and reports the status the device answers with.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use homepot_core::container::{MetricsFilter, parse_frequency};
use homepot_http::{MqttConfig, request_for};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Debug, Subcommand)]
pub(crate) enum ContainersCommand {
    /// Send a metrics request to a thing and wait for its status (204: accepted).
    Request(RequestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The broker.
    #[arg(long, env = "HOMEPOT_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    url: String,
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
    let broker = MqttConfig::from_url(&args.url).map_err(anyhow::Error::msg)?;
    let frequency_ms =
        parse_frequency(&serde_json::Value::String(args.frequency.clone())).map_err(anyhow::Error::msg)?;
    let filters = if args.ids.is_empty() && args.originator.is_empty() {
        Vec::new()
    } else {
        vec![MetricsFilter { ids: args.ids, originator: args.originator }]
    };
    let (topic, request) = request_for(&args.thing, frequency_ms, &filters);
    let client_id = format!("homepot-cli-{}", request.correlation_id);
    let (client, mut events) = AsyncClient::new(MqttOptions::new(client_id, broker.host, broker.port), 16);
    let answer = format!("command//{}/res/{}/", args.thing, request.correlation_id);
    client.subscribe(format!("{answer}+"), QoS::AtLeastOnce).await?;
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
                Event::Incoming(Packet::Publish(p)) if p.topic.starts_with(&answer) => {
                    let status = p.topic[answer.len()..].to_owned();
                    return anyhow::Ok((status, String::from_utf8_lossy(&p.payload).into_owned()));
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
