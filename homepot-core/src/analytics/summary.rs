//! The aggregations behind the query endpoints. A store groups rows (in SQL or however it
//! likes) into the small per-group records here; these functions finish the job, so every
//! backend answers alike and no handler ever walks raw rows.
//!
//! Percentiles come from log-scale latency histograms ([`LatencyHistogram`]), which merge
//! across time ranges: a store keeps one per hour, endpoint and method and merges them for a
//! window. Each bucket spans a factor of 2^(1/8) (about 9 %), so a reported p95 is an observed
//! latency at most 9 % above the exact one.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::RequestLog;

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

/// Request counts per latency bucket, each with the slowest latency seen in it, so a
/// percentile can be answered with an observed value. Histograms of any time ranges merge.
/// A sorted vector: a store merges thousands of these per query, and they are short.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// `(bucket, count, slowest_ms)`, ascending by bucket, one entry per bucket.
    buckets: Vec<(i32, u64, f64)>,
}

impl LatencyHistogram {
    /// Counts one latency.
    pub fn record(&mut self, ms: f64) {
        self.add(latency_bucket(ms), 1, ms);
    }

    /// Adds `count` latencies of `bucket`, the slowest being `max_ms`.
    pub fn add(&mut self, bucket: i32, count: u64, max_ms: f64) {
        // Stores decode in bucket order, so appending is the common case.
        match self.buckets.last_mut() {
            Some(last) if last.0 == bucket => {
                last.1 += count;
                last.2 = last.2.max(max_ms);
            }
            Some(last) if last.0 > bucket => match self.buckets.binary_search_by_key(&bucket, |e| e.0) {
                Ok(i) => {
                    self.buckets[i].1 += count;
                    self.buckets[i].2 = self.buckets[i].2.max(max_ms);
                }
                Err(i) => self.buckets.insert(i, (bucket, count, max_ms)),
            },
            _ => self.buckets.push((bucket, count, max_ms)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len().max(other.buckets.len()));
        let (mut a, mut b) = (self.buckets.iter().peekable(), other.buckets.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    let (x, y) = (a.next().copied(), b.next().copied());
                    x.zip(y).map(|(x, y)| (x.0, x.1 + y.1, x.2.max(y.2)))
                }
                (Some(x), Some(y)) if x.0 < y.0 => a.next().copied(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next().copied(),
                (Some(_), None) => a.next().copied(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        self.buckets = merged;
    }

    /// `(bucket, count, slowest)` in bucket order.
    pub fn entries(&self) -> impl Iterator<Item = (i32, u64, f64)> + '_ {
        self.buckets.iter().copied()
    }

    /// The `q`-quantile (0 < q ≤ 1): the slowest latency seen in the bucket holding it, at
    /// most one bucket width (9 %) above the exact value. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|e| e.1).sum();
        if total == 0 {
            return None;
        }
        // The smallest rank r with r >= q * total, at least 1.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        self.buckets.iter().find_map(|&(_, count, max_ms)| {
            seen += count;
            (seen >= rank).then_some(max_ms)
        })
    }
}

/// Request logs of one endpoint and method, over some time range: what a store keeps per
/// hour and returns per query.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointLatency {
    /// Route template.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Requests.
    pub count: u64,
    /// Sum of their response times, ms.
    pub sum_ms: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Answered 4xx or 5xx.
    pub errors: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// Their latencies by bucket.
    pub histogram: LatencyHistogram,
}

impl EndpointLatency {
    /// No requests yet.
    pub fn new(endpoint: &str, method: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            method: method.to_owned(),
            count: 0,
            sum_ms: 0.0,
            min_ms: f64::INFINITY,
            max_ms: f64::NEG_INFINITY,
            errors: 0,
            server_errors: 0,
            histogram: LatencyHistogram::default(),
        }
    }

    /// Counts one request.
    pub fn record(&mut self, response_time_ms: f64, status_code: u16) {
        self.count += 1;
        self.sum_ms += response_time_ms;
        self.min_ms = self.min_ms.min(response_time_ms);
        self.max_ms = self.max_ms.max(response_time_ms);
        self.errors += u64::from(status_code >= 400);
        self.server_errors += u64::from(status_code >= 500);
        self.histogram.record(response_time_ms);
    }

    /// Adds another range's requests of the same endpoint and method.
    pub fn merge(&mut self, other: &EndpointLatency) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        self.errors += other.errors;
        self.server_errors += other.server_errors;
        self.histogram.merge(&other.histogram);
    }
}

/// The start of the hour holding `at`.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// Request logs summed per hour, endpoint and method: the deltas a store adds to its hourly
/// rollups.
pub fn hourly_rollups(logs: &[RequestLog]) -> Vec<(DateTime<Utc>, EndpointLatency)> {
    let mut rollups: BTreeMap<(DateTime<Utc>, &str, &str), EndpointLatency> = BTreeMap::new();
    for log in logs {
        rollups
            .entry((hour_of(log.timestamp), &log.endpoint, &log.method))
            .or_insert_with(|| EndpointLatency::new(&log.endpoint, &log.method))
            .record(log.response_time_ms, log.status_code);
    }
    rollups.into_iter().map(|((hour, _, _), latency)| (hour, latency)).collect()
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

/// Merges a store's parts (per hour, per bucket, in any order) into one record per endpoint
/// and method, busiest first.
pub fn summarize_performance(parts: &[EndpointLatency]) -> Vec<EndpointPerformance> {
    let mut merged: BTreeMap<(&str, &str), EndpointLatency> = BTreeMap::new();
    for part in parts.iter().filter(|p| p.count > 0) {
        merged
            .entry((&part.endpoint, &part.method))
            .or_insert_with(|| EndpointLatency::new(&part.endpoint, &part.method))
            .merge(part);
    }
    let mut out: Vec<EndpointPerformance> = merged
        .into_values()
        .map(|m| EndpointPerformance {
            request_count: m.count,
            avg_response_time_ms: m.sum_ms / m.count as f64,
            min_response_time_ms: m.min_ms,
            max_response_time_ms: m.max_ms,
            // A store may keep bucket maxima coarser than the extremes (to the microsecond):
            // the percentile never leaves the observed range.
            p95_response_time_ms: m.histogram.quantile(0.95).unwrap_or(m.max_ms).clamp(m.min_ms, m.max_ms),
            error_count: m.errors,
            server_error_count: m.server_errors,
            endpoint: m.endpoint,
            method: m.method,
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

/// Errors of one category and severity over a window, or over one bucket of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorTrend {
    /// The bucket's start (Unix seconds, aligned to its width) when counted per bucket.
    pub bucket: Option<i64>,
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

    /// One endpoint's requests, as a store would return them.
    fn latency(endpoint: &str, latencies: &[(f64, u16)]) -> EndpointLatency {
        let mut part = EndpointLatency::new(endpoint, "GET");
        for &(ms, status) in latencies {
            part.record(ms, status);
        }
        part
    }

    #[test]
    fn a_known_distribution() {
        let mut latencies: Vec<(f64, u16)> = (1..=100).map(|i| (f64::from(i), 200)).collect();
        latencies[0].1 = 404;
        latencies[99].1 = 503;
        // Split in two parts, as an hourly rollup and the window's leading raw logs would be.
        let parts = [latency("/a", &latencies[..30]), latency("/a", &latencies[30..])];
        let summary = summarize_performance(&parts);
        assert_eq!(summary.len(), 1);
        let s = &summary[0];
        assert_eq!((s.request_count, s.error_count, s.server_error_count), (100, 2, 1));
        assert_eq!((s.min_response_time_ms, s.max_response_time_ms, s.avg_response_time_ms), (1.0, 100.0, 50.5));
        assert!((95.0..=95.0 * 1.091).contains(&s.p95_response_time_ms), "{}", s.p95_response_time_ms);
    }

    #[test]
    fn rollups_group_by_hour_endpoint_and_method() {
        let at = |h: u32, m: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 22, h, m, 0).unwrap();
        let log = |when, endpoint: &str, ms| RequestLog {
            timestamp: when,
            endpoint: endpoint.to_owned(),
            method: "GET".to_owned(),
            status_code: 200,
            response_time_ms: ms,
            user_id: None,
            ip_address: None,
            user_agent: None,
            error_message: None,
            request_size_bytes: None,
            response_size_bytes: None,
        };
        let rollups = hourly_rollups(&[
            log(at(10, 5), "/a", 1.0),
            log(at(10, 59), "/a", 3.0),
            log(at(11, 0), "/a", 2.0),
            log(at(10, 1), "/b", 4.0),
        ]);
        let got: Vec<(u32, &str, u64, f64)> = rollups
            .iter()
            .map(|(hour, l)| (chrono::Timelike::hour(hour), l.endpoint.as_str(), l.count, l.sum_ms))
            .collect();
        assert_eq!(got, vec![(10, "/a", 2, 4.0), (10, "/b", 1, 4.0), (11, "/a", 1, 2.0)]);
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
        fn p95_is_observed_and_close_however_split(
            mut latencies in proptest::collection::vec(0.01f64..100_000.0, 1..400),
            split in any::<prop::sample::Index>(),
        ) {
            let cut = split.index(latencies.len());
            let with_status: Vec<(f64, u16)> = latencies.iter().map(|&ms| (ms, 200)).collect();
            let parts = [latency("/x", &with_status[..cut]), latency("/x", &with_status[cut..])];
            let summary = summarize_performance(&parts);
            latencies.sort_by(f64::total_cmp);
            let exact = latencies[(latencies.len() * 95).div_ceil(100) - 1];
            let p95 = summary[0].p95_response_time_ms;
            prop_assert!(latencies.contains(&p95));
            prop_assert!(p95 >= exact && p95 <= exact * 2f64.powf(1.0 / 8.0) * (1.0 + 1e-9), "p95 {p95} exact {exact}");
        }

        #[test]
        fn merging_equals_recording_everything(
            a in proptest::collection::vec(0.01f64..10_000.0, 0..60),
            b in proptest::collection::vec(0.01f64..10_000.0, 0..60),
        ) {
            let (mut left, mut right, mut all) = (LatencyHistogram::default(), LatencyHistogram::default(), LatencyHistogram::default());
            a.iter().for_each(|&ms| { left.record(ms); all.record(ms); });
            b.iter().for_each(|&ms| { right.record(ms); all.record(ms); });
            left.merge(&right);
            prop_assert_eq!(left, all);
        }

        #[test]
        fn garbage_latencies_never_panic(ms in any::<f64>()) {
            let b = latency_bucket(ms);
            prop_assert!((MIN_BUCKET..=MAX_BUCKET).contains(&b));
        }
    }
}
