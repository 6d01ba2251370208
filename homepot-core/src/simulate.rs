//! Realistic simulated health reports, in the ranges seed 01 shows, for the simulator
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthCheck;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    proptest! {
        #[test]
        fn simulated_reports_always_validate(seed in any::<u64>(), healthy in any::<bool>()) {
            let mut rng = SmallRng::seed_from_u64(seed);
            prop_assert!(HealthCheck::validate(simulated_report(&mut rng, healthy)).is_ok());
        }
    }
}
