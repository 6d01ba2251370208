//! Rollups: every numeric sample folded into 1-minute, 1-hour and 1-day buckets of count, sum,
//! min, max and last, which is what range queries, alerting and dashboards read.
//!
//! Folding is exact and order-free, so a coarser tier rebuilt from a finer one equals the tier
//! folded from the raw samples, and any split or reordering of the input gives the same
//! buckets:
//! - the sum is an [`ExactSum`], a fixed-point integer, because float addition depends on
//!   its order;
//! - min and max compare with `total_cmp` (so `-0.0 < 0.0`, whatever arrives first);
//! - last is the sample with the latest time, the larger value on a tie.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::metric::Point;

/// A bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Tier {
    /// 60 s buckets.
    Minute,
    /// 3,600 s buckets.
    Hour,
    /// 86,400 s buckets.
    Day,
}

impl Tier {
    /// Finest first.
    pub const ALL: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    /// The bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Tier::Minute => 60,
            Tier::Hour => 3_600,
            Tier::Day => 86_400,
        }
    }

    /// The wire name: `1m`, `1h` or `1d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Minute => "1m",
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The start (Unix seconds) of the bucket holding `time_s`.
    pub fn bucket_start(self, time_s: i64) -> i64 {
        time_s - time_s.rem_euclid(self.seconds())
    }
}

/// Fractional bits of an [`ExactSum`]: samples are kept to 2⁻³² (about 2.3 × 10⁻¹⁰).
const FRACTION_BITS: u32 = 32;
/// Samples beyond ±2⁶⁴ (1.8 × 10¹⁹, the largest unsigned counter) are clamped to it, so a
/// bucket of up to 2³⁰ samples cannot overflow the sum.
const MAX_MAGNITUDE: f64 = 18_446_744_073_709_551_616.0;

/// An exact sum of samples, each rounded once to a multiple of 2⁻³²: integer addition does
/// not depend on order, as float addition does. Serialised as its exact decimal form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExactSum(i128);

impl TryFrom<String> for ExactSum {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse_decimal(&raw).ok_or("an exact sum is a decimal multiple of 2^-32")
    }
}

impl From<ExactSum> for String {
    fn from(sum: ExactSum) -> Self {
        sum.to_decimal()
    }
}

impl TryFrom<String> for Tier {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or("a tier is 1m, 1h or 1d")
    }
}

impl From<Tier> for &'static str {
    fn from(tier: Tier) -> Self {
        tier.as_str()
    }
}

impl ExactSum {
    /// One sample. Non-finite values count as zero; ingest refuses them before this.
    pub fn of(value: f64) -> Self {
        if !value.is_finite() {
            return Self(0);
        }
        let clamped = value.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE);
        // Scaling by a power of two is exact; only the rounding to an integer loses bits.
        Self((clamped * f64::from(1u32 << 16) * f64::from(1u32 << 16)).round() as i128)
    }

    /// The sum as a float (rounded once, at the end).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }

    /// Adds, saturating at the representable range (unreachable within the documented bounds).
    #[must_use]
    pub fn plus(self, other: ExactSum) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// The exact value in decimal, as stored: every multiple of 2⁻³² has a finite expansion.
    pub fn to_decimal(self) -> String {
        let negative = self.0 < 0;
        let magnitude = self.0.unsigned_abs();
        let whole = magnitude >> FRACTION_BITS;
        // frac / 2^32 = frac * 5^32 / 10^32, and frac * 5^32 < 10^32 fits in a u128.
        let fraction = (magnitude & ((1u128 << FRACTION_BITS) - 1)) * 5u128.pow(FRACTION_BITS);
        let sign = if negative { "-" } else { "" };
        if fraction == 0 {
            return format!("{sign}{whole}");
        }
        let digits = format!("{fraction:032}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }

    /// Parses [`ExactSum::to_decimal`]'s form; `None` for anything it cannot have written.
    pub fn parse_decimal(raw: &str) -> Option<Self> {
        let (negative, unsigned) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 32 {
            return None;
        }
        let whole: u128 = whole.parse().ok()?;
        let scaled_fraction: u128 = format!("{fraction:0<32}").parse().ok()?;
        let five = 5u128.pow(FRACTION_BITS);
        if !scaled_fraction.is_multiple_of(five) {
            return None;
        }
        let magnitude =
            whole.checked_shl(FRACTION_BITS).filter(|m| m >> FRACTION_BITS == whole)? | (scaled_fraction / five);
        let value = if negative { 0i128.checked_sub_unsigned(magnitude)? } else { i128::try_from(magnitude).ok()? };
        Some(Self(value))
    }
}

/// Count, sum, min, max and last of the samples in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// How many samples.
    pub count: u64,
    /// Their exact sum.
    pub sum: ExactSum,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The latest one's value.
    pub last: f64,
    /// The latest one's time, in nanoseconds.
    pub last_ns: i64,
}

impl Aggregate {
    /// One sample.
    pub fn sample(value: f64, time_ns: i64) -> Self {
        Self { count: 1, sum: ExactSum::of(value), min: value, max: value, last: value, last_ns: time_ns }
    }

    /// Folds `other` in. Commutative and associative, so the order of merges never shows.
    pub fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.sum = self.sum.plus(other.sum);
        if other.min.total_cmp(&self.min) == Ordering::Less {
            self.min = other.min;
        }
        if other.max.total_cmp(&self.max) == Ordering::Greater {
            self.max = other.max;
        }
        let later = other.last_ns.cmp(&self.last_ns).then(other.last.total_cmp(&self.last));
        if later == Ordering::Greater {
            self.last = other.last;
            self.last_ns = other.last_ns;
        }
    }

    /// The mean.
    pub fn avg(&self) -> f64 {
        self.sum.to_f64() / self.count as f64
    }

    /// The figure `agg` asks for.
    pub fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Avg => self.avg(),
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Sum => self.sum.to_f64(),
            Agg::Count => self.count as f64,
            Agg::Last => self.last,
        }
    }
}

/// Which figure of a bucket a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// The mean.
    Avg,
    /// The smallest sample.
    Min,
    /// The largest sample.
    Max,
    /// The sum.
    Sum,
    /// How many samples.
    Count,
    /// The latest sample.
    Last,
}

impl Agg {
    /// Every figure, as documented.
    pub const ALL: [Agg; 6] = [Agg::Avg, Agg::Min, Agg::Max, Agg::Sum, Agg::Count, Agg::Last];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::Last => "last",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

/// The numeric fields of a point, as rollup samples: booleans count as 0 and 1, strings have
/// no rollup.
pub fn samples(point: &Point) -> impl Iterator<Item = (&str, f64)> {
    point.fields().iter().filter_map(|(field, value)| value.as_f64().map(|v| (field.as_str(), v)))
}

/// Folds buckets (start in Unix seconds, any order) into buckets `step_s` wide aligned to the
/// epoch, oldest first. `step_s` must be positive.
pub fn rebucket(buckets: impl IntoIterator<Item = (i64, Aggregate)>, step_s: i64) -> Vec<(i64, Aggregate)> {
    let mut out: HashMap<i64, Aggregate> = HashMap::new();
    for (start, aggregate) in buckets {
        let aligned = start - start.rem_euclid(step_s);
        match out.entry(aligned) {
            Entry::Occupied(mut e) => e.get_mut().merge(&aggregate),
            Entry::Vacant(e) => {
                e.insert(aggregate);
            }
        }
    }
    let mut out: Vec<(i64, Aggregate)> = out.into_iter().collect();
    out.sort_unstable_by_key(|(start, _)| *start);
    out
}

/// Most points a range query answers per series.
pub const MAX_RANGE_POINTS: i64 = 11_000;
/// Points per series a range query aims for when it is given no step.
pub const DEFAULT_RANGE_POINTS: i64 = 1_000;

/// How a range query is answered: from which tier, in buckets of which step, over which span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePlan {
    /// The tier read.
    pub tier: Tier,
    /// The answer's bucket width in seconds, a multiple of the tier's.
    pub step_s: i64,
    /// The first bucket's start: the query's start aligned down to the step.
    pub from_s: i64,
    /// The end, exclusive.
    pub to_s: i64,
}

/// Why a range cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// `to` is not after `from`.
    #[error("to must be after from")]
    EmptyRange,
    /// A step that is not a positive multiple of a minute.
    #[error("step must be a positive multiple of 60 seconds")]
    BadStep,
    /// `max_points` out of range.
    #[error("max_points must be between 1 and {MAX_RANGE_POINTS}")]
    BadMaxPoints,
    /// The step is too fine for the span.
    #[error("{points} points per series exceed the limit of {MAX_RANGE_POINTS}; use a larger step")]
    TooManyPoints {
        /// How many the step would give.
        points: i64,
    },
}

impl PlanError {
    /// The query parameter the error is about.
    pub fn parameter(&self) -> &'static str {
        match self {
            PlanError::EmptyRange => "to",
            PlanError::BadStep | PlanError::TooManyPoints { .. } => "step",
            PlanError::BadMaxPoints => "max_points",
        }
    }
}

/// `a / b` rounded up, for positive `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b > 0)
}

/// Plans a range query over `[from_s, to_s)`. `kept_since(tier)` is the oldest start a tier
/// still holds (`None`: kept forever). Without a step, the step is the span over
/// `max_points` rounded up to a multiple of the finest tier that reaches back to `from_s`.
/// The tier read is the coarsest whose buckets divide the step.
///
/// # Errors
/// The first rule the request breaks.
pub fn plan_range(
    from_s: i64,
    to_s: i64,
    step_s: Option<i64>,
    max_points: Option<i64>,
    kept_since: impl Fn(Tier) -> Option<i64>,
) -> Result<RangePlan, PlanError> {
    if to_s <= from_s {
        return Err(PlanError::EmptyRange);
    }
    let max_points = max_points.unwrap_or(DEFAULT_RANGE_POINTS);
    if !(1..=MAX_RANGE_POINTS).contains(&max_points) {
        return Err(PlanError::BadMaxPoints);
    }
    let reaches = |tier: Tier| kept_since(tier).is_none_or(|since| from_s >= since);
    let step_s = match step_s {
        Some(step) if step <= 0 || step % Tier::Minute.seconds() != 0 => return Err(PlanError::BadStep),
        Some(step) => step,
        None => {
            let wanted = ceil_div(to_s - from_s, max_points).max(1);
            let width = Tier::ALL.into_iter().find(|t| reaches(*t)).unwrap_or(Tier::Day).seconds();
            ceil_div(wanted, width).saturating_mul(width)
        }
    };
    // Tiers are exact rollups of each other: the coarsest that divides the step gives the
    // same numbers from the fewest rows, and is kept at least as long as the finer ones.
    let tier = Tier::ALL.into_iter().rev().find(|t| step_s % t.seconds() == 0).unwrap_or(Tier::Minute);
    let from_aligned = from_s - from_s.rem_euclid(step_s);
    let points = ceil_div(to_s - from_aligned, step_s);
    if points > MAX_RANGE_POINTS {
        return Err(PlanError::TooManyPoints { points });
    }
    Ok(RangePlan { tier, step_s, from_s: from_aligned, to_s })
}

/// Samples folded into buckets of every tier, per series key `K`, until drained.
#[derive(Debug, Clone)]
pub struct Rollup<K> {
    buckets: HashMap<(K, Tier, i64), Aggregate>,
}

impl<K> Default for Rollup<K> {
    fn default() -> Self {
        Self { buckets: HashMap::new() }
    }
}

impl<K: Clone + Eq + Hash> Rollup<K> {
    /// Folds one sample of series `key` into its bucket of every tier.
    pub fn add(&mut self, key: &K, time_ns: i64, value: f64) {
        let sample = Aggregate::sample(value, time_ns);
        let time_s = time_ns.div_euclid(1_000_000_000);
        for tier in Tier::ALL {
            self.merge(key.clone(), tier, tier.bucket_start(time_s), &sample);
        }
    }

    /// Folds an aggregate into one bucket.
    pub fn merge(&mut self, key: K, tier: Tier, start: i64, aggregate: &Aggregate) {
        match self.buckets.entry((key, tier, start)) {
            Entry::Occupied(mut e) => e.get_mut().merge(aggregate),
            Entry::Vacant(e) => {
                e.insert(*aggregate);
            }
        }
    }

    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The held buckets of `key` in `tier`, any order.
    pub fn buckets_of<'a>(&'a self, key: &'a K, tier: Tier) -> impl Iterator<Item = (i64, Aggregate)> + 'a {
        self.buckets.iter().filter(move |((k, t, _), _)| k == key && *t == tier).map(|((_, _, s), a)| (*s, *a))
    }

    /// Takes every bucket out.
    pub fn drain(&mut self) -> Vec<(K, Tier, i64, Aggregate)> {
        self.buckets.drain().map(|((key, tier, start), aggregate)| (key, tier, start, aggregate)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(mut buckets: Vec<(u8, Tier, i64, Aggregate)>) -> Vec<(u8, Tier, i64, Aggregate)> {
        buckets.sort_by_key(|(k, t, s, _)| (*k, *t, *s));
        buckets
    }

    fn fold(samples: &[(u8, i64, f64)]) -> Rollup<u8> {
        let mut rollup = Rollup::default();
        for (key, time_ns, value) in samples {
            rollup.add(key, *time_ns, *value);
        }
        rollup
    }

    /// Samples of a few series over about three days, with values of every sign and scale.
    fn arb_samples() -> impl Strategy<Value = Vec<(u8, i64, f64)>> {
        let value =
            prop_oneof![-1e15..1e15f64, -100.0..100.0f64, Just(0.0), Just(-0.0), any::<i32>().prop_map(f64::from),];
        proptest::collection::vec((0u8..3, 1_700_000_000_000_000_000i64..1_700_260_000_000_000_000, value), 0..200)
    }

    proptest! {
        #[test]
        fn a_rollup_of_rollups_equals_the_rollup_of_the_samples(samples in arb_samples()) {
            let mut all = fold(&samples);
            let raw = sorted(all.drain());
            for (coarse, fine) in [(Tier::Hour, Tier::Minute), (Tier::Day, Tier::Hour), (Tier::Day, Tier::Minute)] {
                let mut rebuilt = Rollup::default();
                for (key, tier, start, aggregate) in &raw {
                    if *tier == fine {
                        rebuilt.merge(*key, coarse, coarse.bucket_start(*start), aggregate);
                    }
                }
                let expected: Vec<_> = raw.iter().filter(|(_, t, _, _)| *t == coarse).copied().collect();
                prop_assert_eq!(sorted(rebuilt.drain()), expected);
            }
        }

        #[test]
        fn any_split_or_order_gives_the_same_buckets(
            samples in arb_samples(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            shuffle_seed in any::<u64>(),
        ) {
            let expected = sorted(fold(&samples).drain());
            let mut shuffled = samples.clone();
            // A deterministic shuffle from the generated seed.
            let mut state = shuffle_seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(shuffled.len() + 1)).collect();
            bounds.extend([0, shuffled.len()]);
            bounds.sort_unstable();
            let mut merged = Rollup::default();
            for pair in bounds.windows(2) {
                for (key, tier, start, aggregate) in fold(&shuffled[pair[0]..pair[1]]).drain() {
                    merged.merge(key, tier, start, &aggregate);
                }
            }
            prop_assert_eq!(sorted(merged.drain()), expected);
        }

        #[test]
        fn exact_sums_survive_their_decimal_form(raw in any::<i128>()) {
            let sum = ExactSum(raw);
            prop_assert_eq!(ExactSum::parse_decimal(&sum.to_decimal()), Some(sum));
        }

        #[test]
        fn rebucketing_matches_folding_at_the_step(samples in arb_samples(), step_minutes in 1i64..200) {
            let step = step_minutes * 60;
            let minutes: Vec<(i64, Aggregate)> = fold(&samples)
                .drain()
                .into_iter()
                .filter(|(k, t, _, _)| *k == 0 && *t == Tier::Minute)
                .map(|(_, _, s, a)| (s, a))
                .collect();
            let mut direct: HashMap<i64, Aggregate> = HashMap::new();
            for (_, time_ns, value) in samples.iter().filter(|(k, _, _)| *k == 0) {
                let start = time_ns.div_euclid(1_000_000_000).div_euclid(step) * step;
                let sample = Aggregate::sample(*value, *time_ns);
                direct.entry(start).and_modify(|a| a.merge(&sample)).or_insert(sample);
            }
            let mut direct: Vec<(i64, Aggregate)> = direct.into_iter().collect();
            direct.sort_unstable_by_key(|(s, _)| *s);
            prop_assert_eq!(rebucket(minutes, step), direct);
        }
    }

    #[test]
    fn sums_are_exact_where_floats_are_not() {
        let mut a = Aggregate::sample(0.1, 0);
        a.merge(&Aggregate::sample(0.2, 1));
        let mut b = Aggregate::sample(0.2, 1);
        b.merge(&Aggregate::sample(0.1, 0));
        assert_eq!(a, b);
        assert!((a.avg() - 0.15).abs() < 1e-9);
        assert_eq!(ExactSum::of(1.5).to_decimal(), "1.5");
        assert_eq!(ExactSum::of(-2.0).to_decimal(), "-2");
        assert_eq!(ExactSum::parse_decimal("1.25"), Some(ExactSum::of(1.25)));
        assert_eq!(ExactSum::parse_decimal("0.1"), None, "not a multiple of 2^-32: never written");
        assert_eq!(ExactSum::parse_decimal("1e3"), None);
    }

    #[test]
    fn last_prefers_the_latest_time_then_the_larger_value() {
        let mut a = Aggregate::sample(5.0, 10);
        a.merge(&Aggregate::sample(7.0, 5));
        assert_eq!((a.last, a.last_ns), (5.0, 10));
        a.merge(&Aggregate::sample(9.0, 10));
        assert_eq!((a.last, a.last_ns), (9.0, 10));
        assert_eq!((a.min, a.max, a.count), (5.0, 9.0, 3));
    }

    #[test]
    fn plans_pick_the_finest_tier_that_fits() {
        let forever = |_: Tier| None;
        let day = 86_400;
        // A day at most 1,000 points: 87 s rounds up to 120 s of minutes.
        let plan = plan_range(0, day, None, None, forever).unwrap();
        assert_eq!((plan.tier, plan.step_s, plan.from_s), (Tier::Minute, 120, 0));
        // Thirty days at one-hour steps reads hours.
        let plan = plan_range(10, 30 * day, Some(3_600), None, forever).unwrap();
        assert_eq!((plan.tier, plan.step_s, plan.from_s), (Tier::Hour, 3_600, 0));
        // Minutes kept for 90 days only: an older start reads hours, and the step follows.
        let kept = |t: Tier| (t == Tier::Minute).then_some(200 * day);
        let plan = plan_range(100 * day, 101 * day, None, Some(11_000), kept).unwrap();
        assert_eq!((plan.tier, plan.step_s), (Tier::Hour, 3_600));
        // A step only minutes divide is read from minutes, even where they are gone.
        assert_eq!(plan_range(100 * day, 101 * day, Some(120), None, kept).unwrap().tier, Tier::Minute);
        assert_eq!(plan_range(0, 30 * day, Some(day), None, forever).unwrap().tier, Tier::Day);
        assert_eq!(plan_range(5, 5, None, None, forever), Err(PlanError::EmptyRange));
        assert_eq!(plan_range(0, 60, Some(90), None, forever), Err(PlanError::BadStep));
        assert_eq!(plan_range(0, 60, None, Some(0), forever), Err(PlanError::BadMaxPoints));
        assert_eq!(
            plan_range(0, 11_001 * 60, Some(60), None, forever),
            Err(PlanError::TooManyPoints { points: 11_001 })
        );
        assert!(plan_range(0, 11_000 * 60, Some(60), None, forever).is_ok());
    }

    #[test]
    fn buckets_align_to_the_epoch() {
        assert_eq!(Tier::Minute.bucket_start(125), 120);
        assert_eq!(Tier::Hour.bucket_start(-1), -3_600);
        assert_eq!(Tier::Day.bucket_start(86_400 * 3 + 5), 86_400 * 3);
    }
}
