//! The SmartDataFilter: decides which samples of a series are worth a durable write.
//!
//! A sample is stored when
//! 1. it is the first one seen for its series since start ("first contact"), or
//! 2. the snapshot interval has passed since the last **stored** sample (a heartbeat), or
//! 3. it differs significantly from the last **stored** sample: a value appears or disappears;
//!    a discrete value (health flag, status code, error text) changes at all; or a number moves
//!    by at least the threshold relative to the stored one. Against a baseline of zero a
//!    relative change is undefined, so there the change must be at least the threshold as an
//!    absolute amount (0.05 at the default 5 %).
//!
//! Pure: the caller passes the time. State is per series and bounded: beyond `max_series`, the
//! least recently seen series is forgotten (its next sample is a first contact again, so it is
//! stored: forgetting never loses a change).
//!
//! Several filters that each see part of a series (instances behind a balancer that is not
//! pinned by device) keep their own baselines. What still holds for the samples stored by all
//! of them together: every skipped sample is within the threshold of a stored sample no older
//! than the interval (the one its own filter stored last); stored samples are never further
//! apart than the interval plus one gap between samples. What weakens: a skipped sample may
//! differ from the newest stored sample by more than the threshold (another filter stored it),
//! and each filter stores its own first contact and heartbeats, so a steady series is stored
//! up to once per filter per interval.

use std::collections::HashMap;

/// One tracked value of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracked {
    /// A measurement compared by relative change.
    Number(f64),
    /// A value where any change matters (`is_healthy`, `status_code`, an error message).
    Discrete(String),
}

/// Filter settings (`SMART_FILTER_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterConfig {
    /// Off: every sample is stored.
    pub enabled: bool,
    /// Heartbeat: store at least this often while samples arrive (ns; default 300 s).
    pub interval_ns: i64,
    /// Significant relative change (0.05 = 5 %).
    pub threshold: f64,
    /// Most series tracked at once.
    pub max_series: usize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self { enabled: true, interval_ns: 300 * 1_000_000_000, threshold: 0.05, max_series: 100_000 }
    }
}

/// Why a sample is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReason {
    /// The filter is off.
    Disabled,
    /// First sample of the series since start.
    FirstContact,
    /// The snapshot interval passed since the last stored sample.
    IntervalElapsed,
    /// This value changed significantly (or appeared, or disappeared).
    SignificantChange(String),
}

/// The filter's verdict on one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write it.
    Store(StoreReason),
    /// Nothing new: the last stored sample still describes the series.
    Skip,
}

#[derive(Debug)]
struct LastStored {
    values: Vec<(String, Tracked)>,
    stored_ns: i64,
    seen_ns: i64,
}

/// Per-series filter state.
#[derive(Debug, Default)]
pub struct SmartDataFilter {
    config: FilterConfig,
    series: HashMap<String, LastStored>,
}

impl SmartDataFilter {
    /// A filter with no history.
    pub fn new(config: FilterConfig) -> Self {
        Self { config, series: HashMap::new() }
    }

    /// The settings.
    pub fn config(&self) -> FilterConfig {
        self.config
    }

    /// Series currently tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Decides on `values` of `series` at `now_ns`. A `Store` decision makes these values the
    /// new baseline; a `Skip` leaves the baseline alone, so slow drifts add up to a change.
    pub fn decide(&mut self, series: &str, values: &[(String, Tracked)], now_ns: i64) -> Decision {
        if !self.config.enabled {
            return Decision::Store(StoreReason::Disabled);
        }
        let reason = match self.series.get_mut(series) {
            None => Some(StoreReason::FirstContact),
            Some(last) => {
                last.seen_ns = now_ns;
                if now_ns.saturating_sub(last.stored_ns) >= self.config.interval_ns {
                    Some(StoreReason::IntervalElapsed)
                } else {
                    significant_change(&last.values, values, self.config.threshold).map(StoreReason::SignificantChange)
                }
            }
        };
        match reason {
            None => Decision::Skip,
            Some(reason) => {
                if !self.series.contains_key(series) && self.series.len() >= self.config.max_series {
                    self.forget_least_recent();
                }
                self.series.insert(
                    series.to_owned(),
                    LastStored { values: values.to_vec(), stored_ns: now_ns, seen_ns: now_ns },
                );
                Decision::Store(reason)
            }
        }
    }

    /// Forgets a series, e.g. when the write its last `Store` promised failed: its next sample
    /// is then stored as a first contact.
    pub fn forget(&mut self, series: &str) {
        self.series.remove(series);
    }

    fn forget_least_recent(&mut self) {
        if let Some(oldest) = self.series.iter().min_by_key(|(_, s)| s.seen_ns).map(|(k, _)| k.clone()) {
            self.series.remove(&oldest);
        }
    }
}

/// The first value whose change matters, if any.
fn significant_change(stored: &[(String, Tracked)], sample: &[(String, Tracked)], threshold: f64) -> Option<String> {
    for (name, value) in sample {
        let Some((_, before)) = stored.iter().find(|(k, _)| k == name) else {
            return Some(name.clone());
        };
        let changed = match (before, value) {
            (Tracked::Number(b), Tracked::Number(x)) => {
                let delta = (x - b).abs();
                if b.abs() < f64::EPSILON { delta >= threshold } else { delta / b.abs() >= threshold }
            }
            (b, x) => b != x,
        };
        if changed {
            return Some(name.clone());
        }
    }
    stored.iter().find(|(k, _)| !sample.iter().any(|(n, _)| n == k)).map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn values(cpu: f64, healthy: bool) -> Vec<(String, Tracked)> {
        vec![("cpu".into(), Tracked::Number(cpu)), ("is_healthy".into(), Tracked::Discrete(healthy.to_string()))]
    }

    #[test]
    fn decisions_follow_the_documented_rules() {
        let mut f = SmartDataFilter::new(FilterConfig::default());
        assert_eq!(f.decide("pos-1", &values(50.0, true), 0), Decision::Store(StoreReason::FirstContact));
        assert_eq!(f.decide("pos-1", &values(51.0, true), S), Decision::Skip, "2 % is not significant");
        assert_eq!(
            f.decide("pos-1", &values(52.6, true), 2 * S),
            Decision::Store(StoreReason::SignificantChange("cpu".into()))
        );
        assert_eq!(
            f.decide("pos-1", &values(52.6, false), 3 * S),
            Decision::Store(StoreReason::SignificantChange("is_healthy".into()))
        );
        assert_eq!(f.decide("pos-1", &values(52.6, false), 303 * S), Decision::Store(StoreReason::IntervalElapsed));
        let mut fewer = values(52.6, false);
        fewer.pop();
        assert_eq!(
            f.decide("pos-1", &fewer, 304 * S),
            Decision::Store(StoreReason::SignificantChange("is_healthy".into())),
            "a value disappearing counts"
        );
        assert_eq!(
            f.decide("pos-2", &values(52.6, false), 304 * S),
            Decision::Store(StoreReason::FirstContact),
            "per series"
        );
    }

    #[test]
    fn zero_baselines_need_an_absolute_change() {
        let mut f = SmartDataFilter::new(FilterConfig::default());
        let zero = |v: f64| vec![("errors".to_owned(), Tracked::Number(v))];
        f.decide("s", &zero(0.0), 0);
        assert_eq!(f.decide("s", &zero(0.04), S), Decision::Skip);
        assert!(matches!(f.decide("s", &zero(1.0), 2 * S), Decision::Store(_)));
    }

    #[test]
    fn slow_drift_adds_up_against_the_stored_baseline() {
        let mut f = SmartDataFilter::new(FilterConfig::default());
        f.decide("s", &values(100.0, true), 0);
        assert_eq!(f.decide("s", &values(102.0, true), S), Decision::Skip);
        assert_eq!(f.decide("s", &values(104.0, true), 2 * S), Decision::Skip);
        assert!(matches!(f.decide("s", &values(105.0, true), 3 * S), Decision::Store(_)), "5 % from the stored 100");
    }

    #[test]
    fn state_is_bounded_and_forgetting_stores_again() {
        let mut f = SmartDataFilter::new(FilterConfig { max_series: 2, ..FilterConfig::default() });
        f.decide("a", &values(1.0, true), 0);
        f.decide("b", &values(1.0, true), 1);
        f.decide("a", &values(1.0, true), 2);
        f.decide("c", &values(1.0, true), 3);
        assert_eq!(f.len(), 2);
        assert_eq!(
            f.decide("b", &values(1.0, true), 4),
            Decision::Store(StoreReason::FirstContact),
            "b was least recent"
        );
        f.forget("b");
        assert_eq!(f.decide("b", &values(1.0, true), 5), Decision::Store(StoreReason::FirstContact));
        let mut off = SmartDataFilter::new(FilterConfig { enabled: false, ..FilterConfig::default() });
        assert_eq!(off.decide("a", &values(1.0, true), 0), Decision::Store(StoreReason::Disabled));
    }

    fn arb_values() -> impl Strategy<Value = Vec<(String, Tracked)>> {
        (0.0f64..200.0, any::<bool>(), 0u8..3).prop_map(|(cpu, ok, code)| {
            vec![
                ("cpu".to_owned(), Tracked::Number(cpu)),
                ("is_healthy".to_owned(), Tracked::Discrete(ok.to_string())),
                ("status".to_owned(), Tracked::Discrete(code.to_string())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_first_sample_is_always_stored(v in arb_values(), now in any::<i64>()) {
            let mut f = SmartDataFilter::new(FilterConfig::default());
            prop_assert_eq!(f.decide("s", &v, now), Decision::Store(StoreReason::FirstContact));
        }

        #[test]
        fn an_elapsed_interval_always_stores(a in arb_values(), b in arb_values(), extra in 0i64..1_000 * S) {
            let mut f = SmartDataFilter::new(FilterConfig::default());
            f.decide("s", &a, 0);
            prop_assert!(matches!(f.decide("s", &b, 300 * S + extra), Decision::Store(_)));
        }

        #[test]
        fn a_repeat_within_the_interval_is_never_stored(v in arb_values(), later in 0i64..300 * S) {
            let mut f = SmartDataFilter::new(FilterConfig::default());
            f.decide("s", &v, 0);
            prop_assert_eq!(f.decide("s", &v, later), Decision::Skip);
        }

        #[test]
        fn filters_sharing_a_series_keep_the_documented_guarantees(
            filters in 1usize..5,
            samples in proptest::collection::vec((arb_values(), 1i64..60 * S, any::<prop::sample::Index>()), 1..300)
        ) {
            let mut all: Vec<SmartDataFilter> = (0..filters).map(|_| SmartDataFilter::new(FilterConfig::default())).collect();
            let (mut now, mut largest_gap) = (0i64, 0i64);
            let mut stored: Vec<(i64, Vec<(String, Tracked)>)> = Vec::new();
            for (v, gap, which) in &samples {
                now += gap;
                largest_gap = largest_gap.max(*gap);
                match all[which.index(filters)].decide("s", v, now) {
                    Decision::Store(_) => {
                        if let Some((previous, _)) = stored.last() {
                            prop_assert!(now - previous <= 300 * S + largest_gap, "{} s apart", (now - previous) / S);
                        }
                        stored.push((now, v.clone()));
                    }
                    Decision::Skip => {
                        let close = stored.iter().rev().take_while(|(at, _)| now - at < 300 * S).any(|(_, kept)| {
                            significant_change(kept, v, FilterConfig::default().threshold).is_none()
                        });
                        prop_assert!(close, "a skipped sample at {} s has a close stored one within the interval", now / S);
                    }
                }
            }
        }

        #[test]
        fn a_steady_series_is_stored_at_most_once_per_filter_per_interval(filters in 1usize..5, v in arb_values()) {
            let mut all: Vec<SmartDataFilter> = (0..filters).map(|_| SmartDataFilter::new(FilterConfig::default())).collect();
            // Ten intervals of a sample a second, round-robin.
            let stored = (0..3_000i64).filter(|i| {
                matches!(all[*i as usize % filters].decide("s", &v, i * S), Decision::Store(_))
            }).count();
            prop_assert!(stored <= filters * 11, "{stored} stored by {filters} filters");
        }

        #[test]
        fn stored_samples_are_never_further_apart_than_the_interval_plus_one_gap(
            samples in proptest::collection::vec((arb_values(), 1i64..60 * S), 1..200)
        ) {
            let mut f = SmartDataFilter::new(FilterConfig::default());
            let (mut now, mut last_stored, mut largest_gap) = (0i64, None::<i64>, 0i64);
            for (v, gap) in &samples {
                now += gap;
                largest_gap = largest_gap.max(*gap);
                if let Decision::Store(_) = f.decide("s", v, now) {
                    if let Some(previous) = last_stored {
                        prop_assert!(now - previous <= 300 * S + largest_gap, "{} s apart", (now - previous) / S);
                    }
                    last_stored = Some(now);
                }
            }
        }
    }
}
