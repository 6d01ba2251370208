//! Alerting's pure rules: what a rule is and how one is read from a document ([`rule`]), how
//! an alert moves from pending to firing to resolved ([`lifecycle`]), and who hears of it
//! ([`notify`]: silences, receivers and the messages they get). The engine gathers the
//! readings, stores the alerts and delivers the messages; nothing here reads a clock.

pub mod lifecycle;
pub mod notify;
mod reader;
pub mod rule;

pub use lifecycle::{Ack, Alert, AlertEvent, AlertState, EventKind, Reading, Step, judge, step};
pub use notify::{DeliveryState, Matcher, Notification, NotificationKind, Receiver, ReceiverKind, Silence};
pub use rule::{Comparator, Measure, Rule, RuleKind, Scope, SeriesRef, Severity, parse_duration};
