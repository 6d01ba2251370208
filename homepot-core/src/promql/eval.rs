//! Evaluation of a [`Query`] over samples the caller read, at one time or at every step of a
//! range, with Prometheus 2's rules.

use std::collections::BTreeMap;

use crate::rollup::{Agg, Aggregate};

use super::{AggregateOp, BinaryOp, LOOKBACK_MS, LabelSet, Labels, Node, PromqlError, Query, RangeFunction};

/// A series and its samples (`(ms, value)`, oldest first), as read for one selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels, `__name__` among them, sorted.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels, sorted.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// The value of an expression at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<Sample>),
}

fn without_name(labels: &Labels) -> Labels {
    labels.iter().filter(|(k, _)| k != "__name__").cloned().collect()
}

/// The samples of `samples` with times in `[from, to]`.
fn window(samples: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let start = samples.partition_point(|s| s.0 < from);
    let end = samples.partition_point(|s| s.0 <= to);
    &samples[start..end.max(start)]
}

/// Prometheus's `extrapolatedRate`: the change over the window, corrected for counter
/// resets, extrapolated towards the window's edges, per second for a rate.
fn extrapolated(samples: &[(i64, f64)], from: i64, to: i64, counter: bool, per_second: bool) -> Option<f64> {
    let (first, last) = (samples.first()?, samples.last()?);
    if samples.len() < 2 {
        return None;
    }
    let mut change = last.1 - first.1;
    if counter {
        let mut previous = 0.0;
        for &(_, value) in samples {
            if value < previous {
                change += previous;
            }
            previous = value;
        }
    }
    let mut to_start = (first.0 - from) as f64 / 1_000.0;
    let to_end = (to - last.0) as f64 / 1_000.0;
    let sampled = (last.0 - first.0) as f64 / 1_000.0;
    let average_gap = sampled / (samples.len() - 1) as f64;
    if counter && change > 0.0 && first.1 >= 0.0 {
        // A counter does not extrapolate below zero.
        to_start = to_start.min(sampled * (first.1 / change));
    }
    let threshold = average_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average_gap / 2.0 };
    interval += if to_end < threshold { to_end } else { average_gap / 2.0 };
    change *= interval / sampled;
    if per_second {
        change /= (to - from) as f64 / 1_000.0;
    }
    Some(change)
}

fn range_function(function: RangeFunction, samples: &[(i64, f64)], from: i64, to: i64) -> Option<f64> {
    match function {
        RangeFunction::Rate => extrapolated(samples, from, to, true, true),
        RangeFunction::Increase => extrapolated(samples, from, to, true, false),
        RangeFunction::Delta => extrapolated(samples, from, to, false, false),
        RangeFunction::Irate => {
            let [.., previous, last] = samples else { return None };
            let change = if last.1 < previous.1 { last.1 } else { last.1 - previous.1 };
            let gap = (last.0 - previous.0) as f64 / 1_000.0;
            (gap > 0.0).then(|| change / gap)
        }
        RangeFunction::OverTime(agg) => {
            let sample = |&(ms, value): &(i64, f64)| Aggregate::sample(value, ms.saturating_mul(1_000_000));
            let (first, rest) = samples.split_first()?;
            let mut folded = sample(first);
            for s in rest {
                folded.merge(&sample(s));
            }
            Some(folded.value(agg))
        }
    }
}

fn apply(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Mod => a % b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Eq => f64::from(u8::from(a == b)),
        BinaryOp::Ne => f64::from(u8::from(a != b)),
        BinaryOp::Gt => f64::from(u8::from(a > b)),
        BinaryOp::Lt => f64::from(u8::from(a < b)),
        BinaryOp::Ge => f64::from(u8::from(a >= b)),
        BinaryOp::Le => f64::from(u8::from(a <= b)),
    }
}

/// The labels `set` keeps of `labels`; `Except` also drops the metric name when `drop_name`.
fn restrict(labels: &Labels, set: &LabelSet, drop_name: bool) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| match set {
            LabelSet::Only(keep) => keep.contains(k),
            LabelSet::Except(drop) => !(drop.contains(k) || drop_name && k == "__name__"),
        })
        .cloned()
        .collect()
}

fn execution(message: String) -> PromqlError {
    PromqlError::Execution(message)
}

impl Query {
    /// The query's value at `t` (ms), from `data[i]`: the series of selector `i` with at
    /// least the samples of its [`Selector::window`](super::Selector::window) around `t`.
    ///
    /// # Errors
    /// A vector match that is not one to one.
    pub fn instant(&self, data: &[Vec<Series>], t: i64) -> Result<Value, PromqlError> {
        self.eval(&self.root, data, t)
    }

    /// The query at every step from `start` to `end` (ms, inclusive): one series per label
    /// set with the steps at which it had a value, ordered by labels. A scalar is one series
    /// without labels, as Prometheus answers it.
    ///
    /// # Errors
    /// As [`Query::instant`].
    pub fn range(&self, data: &[Vec<Series>], start: i64, end: i64, step: i64) -> Result<Vec<Series>, PromqlError> {
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start;
        while t <= end {
            match self.instant(data, t)? {
                Value::Scalar(v) => out.entry(Vec::new()).or_default().push((t, v)),
                Value::Vector(samples) => {
                    for s in samples {
                        out.entry(s.labels).or_default().push((t, s.value));
                    }
                }
            }
            t += step.max(1);
        }
        Ok(out.into_iter().map(|(labels, samples)| Series { labels, samples }).collect())
    }

    fn eval(&self, node: &Node, data: &[Vec<Series>], t: i64) -> Result<Value, PromqlError> {
        Ok(match node {
            Node::Number(v) => Value::Scalar(*v),
            Node::Instant(i) => {
                let at = t - self.selectors[*i].offset_ms;
                Value::Vector(
                    data[*i]
                        .iter()
                        .filter_map(|s| {
                            let latest = window(&s.samples, at - LOOKBACK_MS, at).last()?;
                            Some(Sample { labels: s.labels.clone(), value: latest.1 })
                        })
                        .collect(),
                )
            }
            Node::Function(function, i) => {
                let selector = &self.selectors[*i];
                let at = t - selector.offset_ms;
                let from = at - selector.range_ms.unwrap_or(0);
                Value::Vector(
                    data[*i]
                        .iter()
                        .filter_map(|s| {
                            let value = range_function(*function, window(&s.samples, from, at), from, at)?;
                            // Prometheus keeps the name only where the value is a sample's own.
                            let labels = if *function == RangeFunction::OverTime(Agg::Last) {
                                s.labels.clone()
                            } else {
                                without_name(&s.labels)
                            };
                            Some(Sample { labels, value })
                        })
                        .collect(),
                )
            }
            Node::Negate(inner) => match self.eval(inner, data, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(samples) => Value::Vector(
                    samples.into_iter().map(|s| Sample { labels: without_name(&s.labels), value: -s.value }).collect(),
                ),
            },
            Node::Aggregate { op, param, grouping, expr } => {
                let Value::Vector(samples) = self.eval(expr, data, t)? else {
                    return Err(PromqlError::Unsupported("aggregating a scalar".to_owned()));
                };
                let k = match param {
                    Some(p) => match self.eval(p, data, t)? {
                        Value::Scalar(k) => Some(k),
                        Value::Vector(_) => return Err(PromqlError::Unsupported("a vector as topk's k".to_owned())),
                    },
                    None => None,
                };
                Value::Vector(aggregate(*op, k, grouping, samples))
            }
            Node::Binary { op, lhs, rhs, return_bool, matching } => {
                let (left, right) = (self.eval(lhs, data, t)?, self.eval(rhs, data, t)?);
                binary(*op, *return_bool, matching, left, right)?
            }
        })
    }
}

fn aggregate(op: AggregateOp, k: Option<f64>, grouping: &LabelSet, samples: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for sample in samples {
        groups.entry(restrict(&sample.labels, grouping, true)).or_default().push(sample);
    }
    let mut out = Vec::new();
    for (labels, mut members) in groups {
        let values = || members.iter().map(|s| s.value);
        let value = match op {
            AggregateOp::Sum => values().sum(),
            AggregateOp::Avg => values().sum::<f64>() / members.len() as f64,
            AggregateOp::Min => values().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
            AggregateOp::Max => values().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
            AggregateOp::Count => members.len() as f64,
            AggregateOp::Topk | AggregateOp::Bottomk => {
                let k = k.unwrap_or(0.0);
                let keep = if k >= 1.0 { k.min(members.len() as f64) as usize } else { 0 };
                members.sort_by(|a, b| {
                    let order = a.value.partial_cmp(&b.value).unwrap_or(std::cmp::Ordering::Equal);
                    if op == AggregateOp::Topk { order.reverse() } else { order }
                });
                out.extend(members.into_iter().take(keep));
                continue;
            }
        };
        out.push(Sample { labels, value });
    }
    out
}

fn binary(
    op: BinaryOp,
    return_bool: bool,
    matching: &LabelSet,
    left: Value,
    right: Value,
) -> Result<Value, PromqlError> {
    let drop_name = !op.is_comparison() || return_bool;
    // A comparison without `bool` filters: the vector's own value passes, or nothing.
    let compare = |a: f64, b: f64, own: f64| {
        let result = apply(op, a, b);
        if !op.is_comparison() || return_bool { Some(result) } else { (result == 1.0).then_some(own) }
    };
    Ok(match (left, right) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(op, a, b)),
        (Value::Vector(samples), Value::Scalar(b)) => Value::Vector(
            samples
                .into_iter()
                .filter_map(|s| {
                    let value = compare(s.value, b, s.value)?;
                    let labels = if drop_name { without_name(&s.labels) } else { s.labels };
                    Some(Sample { labels, value })
                })
                .collect(),
        ),
        (Value::Scalar(a), Value::Vector(samples)) => Value::Vector(
            samples
                .into_iter()
                .filter_map(|s| {
                    let value = compare(a, s.value, s.value)?;
                    let labels = if drop_name { without_name(&s.labels) } else { s.labels };
                    Some(Sample { labels, value })
                })
                .collect(),
        ),
        (Value::Vector(lhs), Value::Vector(rhs)) => {
            let signature = |labels: &Labels| restrict(labels, matching, true);
            let mut right: BTreeMap<Labels, Sample> = BTreeMap::new();
            for sample in rhs {
                let key = signature(&sample.labels);
                if right.insert(key.clone(), sample).is_some() {
                    return Err(execution(format!(
                        "many-to-many matching (several series on the right side for {key:?})"
                    )));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut out = Vec::new();
            for sample in lhs {
                let key = signature(&sample.labels);
                let Some(other) = right.get(&key) else { continue };
                if !seen.insert(key.clone()) {
                    return Err(execution(format!(
                        "many-to-one matching (several series on the left side for {key:?})"
                    )));
                }
                let Some(value) = compare(sample.value, other.value, sample.value) else { continue };
                let labels = match matching {
                    LabelSet::Only(_) => key,
                    LabelSet::Except(_) => restrict(&sample.labels, matching, drop_name),
                };
                out.push(Sample { labels, value });
            }
            Value::Vector(out)
        }
    })
}
