//! A subset of PromQL over homepot's series, for Grafana's Prometheus data source.
//!
//! [`Query::parse`] reads a query with the `promql-parser` crate and keeps it only if it stays
//! inside the subset: selectors with `=`, `!=`, `=~`, `!~` (on `__name__` too) and `offset`;
//! `rate`, `irate`, `increase`, `delta` and `avg|min|max|sum|count|last_over_time` over a
//! range; `sum|avg|min|max|count` with `by`/`without`, `topk` and `bottomk`; unary minus;
//! arithmetic and comparison (with or without `bool`) between scalars, a vector and a scalar,
//! and two vectors matched one to one (`on`/`ignoring`). Anything else is
//! [`PromqlError::Unsupported`].
//!
//! Evaluation is pure: the caller reads the samples each [`Selector`] needs (see
//! [`Query::selectors`]) and passes them to [`Query::instant`] or [`Query::range`]. The rules
//! are Prometheus 2's: a 5-minute lookback for instant selectors, closed range windows,
//! Prometheus's extrapolation for `rate`, `increase` and `delta`, and the metric name dropped
//! by functions, arithmetic and `bool` comparisons.
//!
//! A series is named as in `/metrics`: the point name when the field is `value`, else
//! `<name>_<field>`, with characters Prometheus does not allow replaced by `_` ([`series_name`]).

mod eval;

use promql_parser::label::MatchOp;

use crate::rollup::Agg;
use promql_parser::parser::{self, Expr, LabelModifier, Offset, VectorMatchCardinality};

pub use eval::{Sample, Series, Value};

/// How far back an instant selector looks for a series' latest sample.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1_000;

/// A sorted label set, `__name__` among them.
pub type Labels = Vec<(String, String)>;

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromqlError {
    /// Not PromQL (Prometheus answers `bad_data`, 400).
    #[error("{0}")]
    Parse(String),
    /// PromQL outside the subset homepot evaluates (422).
    #[error("{0} is not supported by homepot")]
    Unsupported(String),
    /// A query that cannot be evaluated on this data, as Prometheus refuses it too
    /// (`execution`, 422): a vector match that is not one to one.
    #[error("{0}")]
    Execution(String),
}

/// A label matcher of a selector.
#[derive(Debug, Clone)]
pub struct LabelMatcher(promql_parser::label::Matcher);

impl LabelMatcher {
    /// The label it matches.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The value, when the matcher is `name="value"`.
    pub fn equal_to(&self) -> Option<&str> {
        matches!(self.0.op, MatchOp::Equal).then_some(self.0.value.as_str())
    }

    /// Whether a series whose label is `value` (`""` when absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        self.0.is_match(value)
    }
}

/// A series selector of the query, with the span of samples it reads before each
/// evaluation time.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Every matcher must hold; the metric name is a `__name__` matcher.
    pub matchers: Vec<LabelMatcher>,
    /// A range selector's width; `None` for an instant selector (which reads [`LOOKBACK_MS`]).
    pub range_ms: Option<i64>,
    /// `offset`: evaluation at `t` reads around `t - offset_ms`.
    pub offset_ms: i64,
}

impl Selector {
    /// Whether a series with `labels` is selected.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels.iter().find(|(k, _)| k == m.name()).map_or("", |(_, v)| v.as_str());
            m.matches(value)
        })
    }

    /// The samples, by time in ms, that evaluations from `start` to `end` read: `[from, to]`.
    pub fn window(&self, start: i64, end: i64) -> (i64, i64) {
        let width = self.range_ms.unwrap_or(LOOKBACK_MS);
        (start - self.offset_ms - width, end - self.offset_ms)
    }
}

/// A time as the Prometheus API takes it, in ms: Unix seconds with an optional fraction, or
/// RFC 3339.
///
/// # Errors
/// [`PromqlError::Parse`] naming `parameter`.
pub fn parse_time_ms(parameter: &str, raw: &str) -> Result<i64, PromqlError> {
    if let Ok(seconds) = raw.parse::<f64>() {
        if seconds.is_finite() && seconds.abs() < 1e13 {
            return Ok((seconds * 1_000.0).round() as i64);
        }
    } else if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(time.timestamp_millis());
    }
    Err(PromqlError::Parse(format!("invalid parameter \"{parameter}\": cannot parse \"{raw}\" to a valid timestamp")))
}

/// A duration as the Prometheus API takes it, in ms: seconds with an optional fraction, or a
/// PromQL duration (`15s`, `1h30m`).
///
/// # Errors
/// [`PromqlError::Parse`] naming `parameter`.
pub fn parse_duration_ms(parameter: &str, raw: &str) -> Result<i64, PromqlError> {
    if let Ok(seconds) = raw.parse::<f64>() {
        if seconds.is_finite() && seconds.abs() < 1e13 {
            return Ok((seconds * 1_000.0).round() as i64);
        }
    } else if let Ok(duration) = promql_parser::util::parse_duration(raw) {
        return Ok(millis(duration));
    }
    Err(PromqlError::Parse(format!("invalid parameter \"{parameter}\": cannot parse \"{raw}\" to a valid duration")))
}

/// Parses a series selector as the `match[]` parameter gives it (`up{job="api"}`).
///
/// # Errors
/// [`PromqlError::Parse`] when it is not a single selector.
pub fn parse_selector(raw: &str) -> Result<Selector, PromqlError> {
    let query = Query::parse(raw)?;
    match (&query.root, query.selectors.as_slice()) {
        (Node::Instant(_), [selector]) => Ok(selector.clone()),
        _ => Err(PromqlError::Parse(format!("invalid parameter \"match[]\": {raw} is not a series selector"))),
    }
}

/// The PromQL name of a homepot series: the point name for the field `value`, else
/// `<name>_<field>`, made a valid Prometheus name.
pub fn series_name(name: &str, field: &str) -> String {
    crate::prometheus::metric_name(name, field)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFunction {
    Rate,
    Irate,
    Increase,
    Delta,
    /// `<agg>_over_time`: the window's samples folded as a rollup bucket folds them.
    OverTime(Agg),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggregateOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl BinaryOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(self, Self::Eq | Self::Ne | Self::Gt | Self::Lt | Self::Ge | Self::Le)
    }
}

/// Which labels a grouping or a vector match looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelSet {
    /// `by (..)` / `on (..)`.
    Only(Vec<String>),
    /// `without (..)` / `ignoring (..)`; no modifier is `Except([])`.
    Except(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    Instant(usize),
    Function(RangeFunction, usize),
    Aggregate { op: AggregateOp, param: Option<Box<Node>>, grouping: LabelSet, expr: Box<Node> },
    Binary { op: BinaryOp, lhs: Box<Node>, rhs: Box<Node>, return_bool: bool, matching: LabelSet },
    Negate(Box<Node>),
}

/// A parsed query inside the subset.
#[derive(Debug, Clone)]
pub struct Query {
    root: Node,
    selectors: Vec<Selector>,
}

fn unsupported(what: impl Into<String>) -> PromqlError {
    PromqlError::Unsupported(what.into())
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The labels a modifier names; without one, `otherwise`.
fn labels(modifier: Option<&LabelModifier>, otherwise: LabelSet) -> LabelSet {
    match modifier {
        Some(LabelModifier::Include(l)) => LabelSet::Only(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => LabelSet::Except(l.labels.clone()),
        None => otherwise,
    }
}

impl Query {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`PromqlError::Parse`] for what is not PromQL, [`PromqlError::Unsupported`] for PromQL
    /// outside the subset.
    pub fn parse(text: &str) -> Result<Self, PromqlError> {
        let expr = parser::parse(text).map_err(PromqlError::Parse)?;
        let mut selectors = Vec::new();
        let root = Self::node(&expr, &mut selectors)?;
        Ok(Self { root, selectors })
    }

    /// The selectors, in the order [`Query::instant`] and [`Query::range`] expect their series.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    fn selector(
        vs: &parser::VectorSelector,
        range_ms: Option<i64>,
        selectors: &mut Vec<Selector>,
    ) -> Result<usize, PromqlError> {
        if vs.at.is_some() {
            return Err(unsupported("the @ modifier"));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(unsupported("`or` inside a selector"));
        }
        let offset_ms = match vs.offset {
            None => 0,
            Some(Offset::Pos(d)) => millis(d),
            Some(Offset::Neg(d)) => -millis(d),
        };
        let mut matchers: Vec<LabelMatcher> = vs.matchers.matchers.iter().cloned().map(LabelMatcher).collect();
        if let Some(name) = &vs.name {
            matchers.push(LabelMatcher(promql_parser::label::Matcher::new(MatchOp::Equal, "__name__", name)));
        }
        selectors.push(Selector { matchers, range_ms, offset_ms });
        Ok(selectors.len() - 1)
    }

    fn node(expr: &Expr, selectors: &mut Vec<Selector>) -> Result<Node, PromqlError> {
        Ok(match expr {
            Expr::NumberLiteral(n) => Node::Number(n.val),
            Expr::Paren(p) => Self::node(&p.expr, selectors)?,
            Expr::Unary(u) => Node::Negate(Box::new(Self::node(&u.expr, selectors)?)),
            Expr::VectorSelector(vs) => Node::Instant(Self::selector(vs, None, selectors)?),
            Expr::MatrixSelector(_) => return Err(unsupported("a range vector as a result")),
            Expr::Call(call) => {
                let function = match call.func.name {
                    "rate" => RangeFunction::Rate,
                    "irate" => RangeFunction::Irate,
                    "increase" => RangeFunction::Increase,
                    "delta" => RangeFunction::Delta,
                    "avg_over_time" => RangeFunction::OverTime(Agg::Avg),
                    "min_over_time" => RangeFunction::OverTime(Agg::Min),
                    "max_over_time" => RangeFunction::OverTime(Agg::Max),
                    "sum_over_time" => RangeFunction::OverTime(Agg::Sum),
                    "count_over_time" => RangeFunction::OverTime(Agg::Count),
                    "last_over_time" => RangeFunction::OverTime(Agg::Last),
                    other => return Err(unsupported(format!("the function {other}()"))),
                };
                match call.args.args.as_slice() {
                    [arg] => match arg.as_ref() {
                        Expr::MatrixSelector(ms) => {
                            let index = Self::selector(&ms.vs, Some(millis(ms.range)), selectors)?;
                            Node::Function(function, index)
                        }
                        _ => {
                            return Err(unsupported(format!(
                                "{}() over anything but a range selector",
                                call.func.name
                            )));
                        }
                    },
                    _ => return Err(PromqlError::Parse(format!("{}() takes one argument", call.func.name))),
                }
            }
            Expr::Aggregate(aggregate) => {
                let op = match aggregate.op.to_string().as_str() {
                    "sum" => AggregateOp::Sum,
                    "avg" => AggregateOp::Avg,
                    "min" => AggregateOp::Min,
                    "max" => AggregateOp::Max,
                    "count" => AggregateOp::Count,
                    "topk" => AggregateOp::Topk,
                    "bottomk" => AggregateOp::Bottomk,
                    other => return Err(unsupported(format!("the aggregation {other}"))),
                };
                let param = match &aggregate.param {
                    Some(p) => Some(Box::new(Self::node(p, selectors)?)),
                    None => None,
                };
                Node::Aggregate {
                    op,
                    param,
                    // No grouping aggregates everything into one group: `by ()`.
                    grouping: labels(aggregate.modifier.as_ref(), LabelSet::Only(Vec::new())),
                    expr: Box::new(Self::node(&aggregate.expr, selectors)?),
                }
            }
            Expr::Binary(binary) => {
                let op = match binary.op.to_string().as_str() {
                    "+" => BinaryOp::Add,
                    "-" => BinaryOp::Sub,
                    "*" => BinaryOp::Mul,
                    "/" => BinaryOp::Div,
                    "%" => BinaryOp::Mod,
                    "^" => BinaryOp::Pow,
                    "==" => BinaryOp::Eq,
                    "!=" => BinaryOp::Ne,
                    ">" => BinaryOp::Gt,
                    "<" => BinaryOp::Lt,
                    ">=" => BinaryOp::Ge,
                    "<=" => BinaryOp::Le,
                    other => return Err(unsupported(format!("the operator {other}"))),
                };
                let (return_bool, matching) = match &binary.modifier {
                    None => (false, LabelSet::Except(Vec::new())),
                    Some(modifier) => {
                        if !matches!(modifier.card, VectorMatchCardinality::OneToOne) {
                            return Err(unsupported("group_left and group_right"));
                        }
                        if modifier.fill_values.lhs.is_some() || modifier.fill_values.rhs.is_some() {
                            return Err(unsupported("fill values"));
                        }
                        (modifier.return_bool, labels(modifier.matching.as_ref(), LabelSet::Except(Vec::new())))
                    }
                };
                Node::Binary {
                    op,
                    lhs: Box::new(Self::node(&binary.lhs, selectors)?),
                    rhs: Box::new(Self::node(&binary.rhs, selectors)?),
                    return_bool,
                    matching,
                }
            }
            Expr::StringLiteral(_) => return Err(unsupported("a string result")),
            Expr::Subquery(_) => return Err(unsupported("subqueries")),
            Expr::Extension(_) => return Err(unsupported("extensions")),
        })
    }
}

#[cfg(test)]
mod tests;
