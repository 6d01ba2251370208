//! Realistic simulated health reports, in the ranges the device health API shows, for the simulator
//! endpoint and the fleet simulator. Randomness comes from the caller's generator.

use rand::Rng;

use crate::health::{AppMetrics, HealthReport, NetworkMetrics, SystemMetrics};

/// One plausible report from a POS terminal. Unhealthy reports show a loaded, failing machine.
pub fn simulated_report<R: Rng + ?Sized>(rng: &mut R, is_healthy: bool) -> HealthReport {
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let (cpu, memory, response_ms) = if is_healthy {
        (rng.random_range(20.0..75.0), rng.random_range(40.0..85.0), rng.random_range(80..250))
    } else {
        (rng.random_range(85.0..100.0), rng.random_range(90.0..100.0), rng.random_range(2000..6000))
    };
    let memory_total_mb = 2048;
    let disk_total_gb = 200;
    let disk_percent: f64 = rng.random_range(40.0..75.0);
    let mut report = HealthReport::minimal(is_healthy, response_ms);
    report.status_code = if is_healthy { 200 } else { 500 };
    report.endpoint = Some("/health".to_owned());
    if !is_healthy {
        report.error_message = Some("Database connection timeout".to_owned());
    }
    report.system = Some(SystemMetrics {
        cpu_percent: Some(round1(cpu)),
        memory_percent: Some(round1(memory)),
        memory_used_mb: Some((memory / 100.0 * memory_total_mb as f64) as i64),
        memory_total_mb: Some(memory_total_mb),
        disk_percent: Some(round1(disk_percent)),
        disk_used_gb: Some((disk_percent / 100.0 * disk_total_gb as f64) as i64),
        disk_total_gb: Some(disk_total_gb),
        uptime_seconds: Some(rng.random_range(3_600..1_000_000)),
    });
    report.app_metrics = Some(AppMetrics {
        app_version: Some("1.2.3".to_owned()),
        transactions_count: Some(rng.random_range(50..300)),
        errors_count: Some(if is_healthy { rng.random_range(0..3) } else { rng.random_range(5..50) }),
        warnings_count: Some(rng.random_range(0..10)),
        avg_response_time_ms: Some(rng.random_range(200..500)),
    });
    report.network = Some(NetworkMetrics {
        latency_ms: Some(if is_healthy { rng.random_range(10..80) } else { rng.random_range(200..2000) }),
        rx_bytes: Some(rng.random_range(500_000..2_000_000)),
        tx_bytes: Some(rng.random_range(200_000..1_000_000)),
    });
    report
}

/// A random lower-case alphanumeric suffix for simulated device ids (`simulator-pos-abc123`).
pub fn random_suffix<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The gateway monitoring API's firmware registry: 40 % of nodes on 1.0.0, 40 % on 1.1.0 (stable, production),
/// 20 % on the 1.2.0 beta. `index` picks the node's place in that split, so labels stay stable.
pub fn firmware_labels(index: usize) -> std::collections::BTreeMap<String, String> {
    let (version, stable, env) = match index % 5 {
        0 | 1 => ("1.0.0", "true", "production"),
        2 | 3 => ("1.1.0", "true", "production"),
        _ => ("1.2.0", "false", "beta"),
    };
    [
        ("version", version.to_owned()),
        ("stable", stable.to_owned()),
        ("env", env.to_owned()),
        ("zone", format!("zone-{}", index % 3 + 1)),
        ("type", "spore-node".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A plausible ESP32 node report in the gateway monitoring API's ranges: 80–240 MHz, 45–65 °C, 64–128 KB of RAM,
/// 4 MB of flash, RSSI -30 to -90 dBm converted to signal quality. `uptime_s` grows the
/// network counters, as counters since boot do.
pub fn simulated_node_report<R: Rng + ?Sized>(
    rng: &mut R,
    index: usize,
    uptime_s: i64,
    now_s: i64,
) -> crate::node::NodeReport {
    use crate::node::{CpuResources, NetworkResources, NodeReport, StorageResources};
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let storage = |total: i64, usage: f64| {
        let used = (total as f64 * usage / 100.0) as i64;
        StorageResources {
            total_bytes: total,
            free_bytes: total - used,
            used_bytes: used,
            usage_percent: round1(usage),
        }
    };
    let rssi: f64 = rng.random_range(-90.0..-30.0);
    let uptime = uptime_s.max(1);
    NodeReport {
        timestamp: now_s,
        node_ip: Some(format!("192.168.1.{}", 100 + index % 150)),
        hostname: Some(format!("spore-node-{}", index + 1)),
        cpu: CpuResources {
            frequency_mhz: Some([80.0, 160.0, 240.0][rng.random_range(0..3)]),
            usage_percent: round1(rng.random_range(10.0..90.0)),
            temperature_c: Some(round1(rng.random_range(45.0..65.0))),
        },
        memory: storage(rng.random_range(64..=128) * 1024, rng.random_range(30.0..75.0)),
        network: Some(NetworkResources {
            bytes_sent: uptime * rng.random_range(500..1_500),
            bytes_received: uptime * rng.random_range(800..2_500),
            packets_sent: Some(uptime * rng.random_range(5..15)),
            packets_received: Some(uptime * rng.random_range(8..25)),
            rssi_dbm: Some(rssi.round()),
            // The usual mapping: -100 dBm is 0 %, -50 dBm and better is 100 %.
            signal_quality_percent: Some(round1((2.0 * (rssi + 100.0)).clamp(0.0, 100.0))),
        }),
        flash: Some(storage(4 * 1024 * 1024, rng.random_range(40.0..70.0))),
        labels: firmware_labels(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthCheck;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn firmware_follows_the_40_40_20_split() {
        let versions: Vec<String> = (0..10).map(|i| firmware_labels(i)["version"].clone()).collect();
        assert_eq!(versions.iter().filter(|v| *v == "1.0.0").count(), 4);
        assert_eq!(versions.iter().filter(|v| *v == "1.1.0").count(), 4);
        assert_eq!(versions.iter().filter(|v| *v == "1.2.0").count(), 2);
    }

    proptest! {
        #[test]
        fn simulated_nodes_always_validate(seed in any::<u64>(), index in 0usize..1000, uptime in 0i64..10_000_000) {
            let mut rng = SmallRng::seed_from_u64(seed);
            let report = simulated_node_report(&mut rng, index, uptime, 1_700_000_000);
            let json = serde_json::to_vec(&report).unwrap();
            prop_assert_eq!(crate::ingest::node_json::parse_node_report(&json, 0).unwrap(), report.clone());
            // What is stored rebuilds the report, but for the node's own clock reading.
            let node = crate::DeviceId::parse(&format!("spore-node-{index}")).unwrap();
            let time_ns = 1_700_000_123_000_000_000;
            let stored = report.points(&node, time_ns);
            let (rebuilt_node, rebuilt, at) = crate::node::NodeReport::from_points(&stored).unwrap();
            prop_assert_eq!((rebuilt_node, at), (node, time_ns));
            prop_assert_eq!(rebuilt, crate::node::NodeReport { timestamp: 1_700_000_123, ..report });
        }

        #[test]
        fn simulated_reports_always_validate(seed in any::<u64>(), healthy in any::<bool>()) {
            let mut rng = SmallRng::seed_from_u64(seed);
            prop_assert!(HealthCheck::validate(simulated_report(&mut rng, healthy)).is_ok());
        }
    }
}
