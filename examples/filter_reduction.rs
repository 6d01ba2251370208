//! How much the SmartDataFilter saves on a realistic fleet: 100 POS terminals reporting every
//! 10 s for 24 hours. CPU, memory and latency drift slowly (a random walk of about ±0.5 % a
//! step), and a device turns unhealthy, and back, about twice a day. Fixed seed, so every run
//! prints the same figures.
//!
//! `cargo run --release -p homepot-examples --example filter_reduction`

use homepot_core::filter::{Decision, FilterConfig, SmartDataFilter, StoreReason, Tracked};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn main() {
    const DEVICES: usize = 100;
    const STEP_S: i64 = 10;
    const STEPS: i64 = 24 * 3600 / STEP_S;
    let mut rng = SmallRng::seed_from_u64(42);
    let mut filter = SmartDataFilter::new(FilterConfig { max_series: DEVICES, ..FilterConfig::default() });
    let mut state: Vec<(f64, f64, f64, bool)> =
        (0..DEVICES).map(|_| (rng.random_range(20.0..60.0), rng.random_range(40.0..80.0), 40.0, true)).collect();
    let (mut total, mut first, mut interval, mut change) = (0u64, 0u64, 0u64, 0u64);
    for step in 0..STEPS {
        for (device, (cpu, memory, latency, healthy)) in state.iter_mut().enumerate() {
            let mut walk =
                |value: &mut f64, lo: f64, hi: f64| *value = (*value * rng.random_range(0.995..1.005)).clamp(lo, hi);
            walk(cpu, 1.0, 100.0);
            walk(memory, 1.0, 100.0);
            walk(latency, 5.0, 500.0);
            if rng.random_range(0..4_320) == 0 {
                *healthy = !*healthy;
            }
            let values = [
                ("is_healthy".to_owned(), Tracked::Discrete(healthy.to_string())),
                ("cpu_percent".to_owned(), Tracked::Number((*cpu * 10.0).round() / 10.0)),
                ("memory_percent".to_owned(), Tracked::Number((*memory * 10.0).round() / 10.0)),
                ("latency_ms".to_owned(), Tracked::Number(latency.round())),
            ];
            total += 1;
            match filter.decide(&format!("pos-{device:03}"), &values, step * STEP_S * 1_000_000_000) {
                Decision::Store(StoreReason::FirstContact) => first += 1,
                Decision::Store(StoreReason::IntervalElapsed) => interval += 1,
                Decision::Store(_) => change += 1,
                Decision::Skip => {}
            }
        }
    }
    let stored = first + interval + change;
    println!("samples:  {total} ({DEVICES} devices, every {STEP_S} s, 24 h)");
    println!("stored:   {stored} ({first} first contact, {interval} heartbeat, {change} significant change)");
    println!("skipped:  {}", total - stored);
    println!(
        "reduction: {:.1} % fewer writes ({:.1}x)",
        100.0 * (1.0 - stored as f64 / total as f64),
        total as f64 / stored as f64
    );
}
