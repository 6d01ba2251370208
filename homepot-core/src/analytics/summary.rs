//! The aggregations behind the query endpoints. A store groups rows (in SQL or however it
//! likes) into the small per-group records here; these functions finish the job, so every
//! backend answers alike and no handler ever walks raw rows.
//!
//! Percentiles come from log-scale latency buckets stored beside each request log: a store
//! sums counts per bucket, and the percentile is read from the cumulative counts. Each
//! bucket spans a factor of 2^(1/8) (about 9 %), so a reported p95 is an observed latency at
//! most 9 % above the exact one.

use std::collections::BTreeMap;

/// Buckets per doubling of latency.
pub const LATENCY_BUCKETS_PER_DOUBLING: i32 = 8;
/// Lowest bucket: 2^-10 ms, about one microsecond, and everything faster.
const MIN_BUCKET: i32 = -10 * LATENCY_BUCKETS_PER_DOUBLING;
/// Highest bucket: 2^30 ms, about twelve days, and everything slower.
const MAX_BUCKET: i32 = 30 * LATENCY_BUCKETS_PER_DOUBLING;

/// The bucket of a latency in ms: bucket `b` holds `[2^(b/8), 2^((b+1)/8))`.
pub fn latency_bucket(ms: f64) -> i32 {
    if ms.is_nan() || ms <= 0.0 {
        return MIN_BUCKET;
    }
    // Clamped to a small range first, so the cast cannot saturate surprisingly.
    let raw = (ms.log2() * f64::from(LATENCY_BUCKETS_PER_DOUBLING)).floor();
    raw.clamp(f64::from(MIN_BUCKET), f64::from(MAX_BUCKET)) as i32
}

/// The upper bound of bucket `b`, in ms.
pub fn bucket_upper_ms(bucket: i32) -> f64 {
    2f64.powf(f64::from(bucket + 1) / f64::from(LATENCY_BUCKETS_PER_DOUBLING))
}

/// Request logs of one endpoint, method and latency bucket, as a store groups them.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyGroup {
    /// Route template.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Latency bucket ([`latency_bucket`]).
    pub bucket: i32,
    /// Requests in the group.
    pub count: u64,
    /// Sum of their response times, in ms.
    pub sum_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Answered with a 4xx or 5xx status.
    pub errors: u64,
    /// Answered with a 5xx status.
    pub server_errors: u64,
}

/// Performance of one endpoint and method over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPerformance {
    /// Route template.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Requests.
    pub request_count: u64,
    /// Mean response time, ms.
    pub avg_response_time_ms: f64,
    /// Fastest, ms.
    pub min_response_time_ms: f64,
    /// Slowest, ms.
    pub max_response_time_ms: f64,
    /// 95th percentile, ms (at most 9 % above the exact value).
    pub p95_response_time_ms: f64,
    /// Answered 4xx or 5xx.
    pub error_count: u64,
    /// Answered 5xx.
    pub server_error_count: u64,
}

/// Merges a store's groups into one record per endpoint and method, busiest first.
pub fn summarize_performance(groups: &[LatencyGroup]) -> Vec<EndpointPerformance> {
    let mut by_endpoint: BTreeMap<(&str, &str), Vec<&LatencyGroup>> = BTreeMap::new();
    for group in groups.iter().filter(|g| g.count > 0) {
        by_endpoint.entry((&group.endpoint, &group.method)).or_default().push(group);
    }
    let mut out: Vec<EndpointPerformance> = by_endpoint
        .into_iter()
        .map(|((endpoint, method), mut buckets)| {
            buckets.sort_by_key(|g| g.bucket);
            let count: u64 = buckets.iter().map(|g| g.count).sum();
            let sum: f64 = buckets.iter().map(|g| g.sum_ms).sum();
            // The smallest rank r with r >= 0.95 * count, in integers.
            let rank = (count * 95).div_ceil(100).max(1);
            let mut seen = 0;
            let mut p95 = 0.0;
            for g in &buckets {
                seen += g.count;
                if seen >= rank {
                    p95 = g.max_ms;
                    break;
                }
            }
            EndpointPerformance {
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
                request_count: count,
                avg_response_time_ms: sum / count as f64,
                min_response_time_ms: buckets.iter().map(|g| g.min_ms).fold(f64::INFINITY, f64::min),
                max_response_time_ms: buckets.iter().map(|g| g.max_ms).fold(0.0, f64::max),
                p95_response_time_ms: p95,
                error_count: buckets.iter().map(|g| g.errors).sum(),
                server_error_count: buckets.iter().map(|g| g.server_errors).sum(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.request_count.cmp(&a.request_count).then_with(|| a.endpoint.cmp(&b.endpoint)));
    out
}

/// Job outcomes of one type and status, as a store groups them.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatusCount {
    /// Job type.
    pub job_type: String,
    /// Outcome (`success`, `failed`, `timeout`, `cancelled`).
    pub status: String,
    /// How many.
    pub count: u64,
    /// Mean duration of those that reported one, ms.
    pub avg_duration_ms: Option<f64>,
}

/// How often jobs of one type succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSuccessRate {
    /// Job type.
    pub job_type: String,
    /// Outcomes reported.
    pub total: u64,
    /// Of which `success`.
    pub succeeded: u64,
    /// `succeeded / total`, as a percentage.
    pub success_rate_percent: f64,
}

/// One success rate per job type, in job-type order.
pub fn summarize_jobs(counts: &[JobStatusCount]) -> Vec<JobSuccessRate> {
    let mut by_type: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for c in counts {
        let entry = by_type.entry(&c.job_type).or_default();
        entry.0 += c.count;
        if c.status == super::JobStatus::Success.as_str() {
            entry.1 += c.count;
        }
    }
    by_type
        .into_iter()
        .filter(|(_, (total, _))| *total > 0)
        .map(|(job_type, (total, succeeded))| JobSuccessRate {
            job_type: job_type.to_owned(),
            total,
            succeeded,
            success_rate_percent: succeeded as f64 * 100.0 / total as f64,
        })
        .collect()
}

/// Errors of one category and severity over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorTrend {
    /// Category.
    pub category: String,
    /// Severity.
    pub severity: String,
    /// How many.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Groups raw latencies as a store would.
    fn group(endpoint: &str, latencies: &[(f64, u16)]) -> Vec<LatencyGroup> {
        let mut groups: BTreeMap<i32, LatencyGroup> = BTreeMap::new();
        for &(ms, status) in latencies {
            let b = latency_bucket(ms);
            let g = groups.entry(b).or_insert_with(|| LatencyGroup {
                endpoint: endpoint.to_owned(),
                method: "GET".to_owned(),
                bucket: b,
                count: 0,
                sum_ms: 0.0,
                min_ms: f64::INFINITY,
                max_ms: 0.0,
                errors: 0,
                server_errors: 0,
            });
            g.count += 1;
            g.sum_ms += ms;
            g.min_ms = g.min_ms.min(ms);
            g.max_ms = g.max_ms.max(ms);
            g.errors += u64::from(status >= 400);
            g.server_errors += u64::from(status >= 500);
        }
        groups.into_values().collect()
    }

    #[test]
    fn a_known_distribution() {
        let mut latencies: Vec<(f64, u16)> = (1..=100).map(|i| (f64::from(i), 200)).collect();
        latencies[0].1 = 404;
        latencies[99].1 = 503;
        let summary = summarize_performance(&group("/a", &latencies));
        assert_eq!(summary.len(), 1);
        let s = &summary[0];
        assert_eq!((s.request_count, s.error_count, s.server_error_count), (100, 2, 1));
        assert_eq!((s.min_response_time_ms, s.max_response_time_ms, s.avg_response_time_ms), (1.0, 100.0, 50.5));
        assert!((95.0..=95.0 * 1.091).contains(&s.p95_response_time_ms), "{}", s.p95_response_time_ms);
    }

    #[test]
    fn success_rates_per_type() {
        let row = |t: &str, s: &str, n| JobStatusCount {
            job_type: t.into(),
            status: s.into(),
            count: n,
            avg_duration_ms: None,
        };
        let rates =
            summarize_jobs(&[row("restart", "success", 3), row("restart", "failed", 1), row("update", "timeout", 2)]);
        assert_eq!(rates[0].success_rate_percent, 75.0);
        assert_eq!((rates[1].job_type.as_str(), rates[1].succeeded, rates[1].success_rate_percent), ("update", 0, 0.0));
    }

    proptest! {
        #[test]
        fn buckets_bound_their_values(ms in 0.001f64..1e9) {
            let b = latency_bucket(ms);
            let lower = bucket_upper_ms(b - 1);
            prop_assert!(lower <= ms * (1.0 + 1e-12) && ms < bucket_upper_ms(b) * (1.0 + 1e-12), "{ms} in bucket {b}");
        }

        #[test]
        fn p95_is_observed_and_close(mut latencies in proptest::collection::vec(0.01f64..100_000.0, 1..400)) {
            let summary = summarize_performance(&group("/x", &latencies.iter().map(|&ms| (ms, 200)).collect::<Vec<_>>()));
            latencies.sort_by(f64::total_cmp);
            let exact = latencies[(latencies.len() * 95).div_ceil(100) - 1];
            let p95 = summary[0].p95_response_time_ms;
            prop_assert!(latencies.contains(&p95));
            prop_assert!(p95 >= exact && p95 <= exact * 2f64.powf(1.0 / 8.0) * (1.0 + 1e-9), "p95 {p95} exact {exact}");
        }

        #[test]
        fn garbage_latencies_never_panic(ms in any::<f64>()) {
            let b = latency_bucket(ms);
            prop_assert!((MIN_BUCKET..=MAX_BUCKET).contains(&b));
        }
    }
}
