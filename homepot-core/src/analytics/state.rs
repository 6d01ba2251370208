//! The device state machine: what a health check or a silence does to a device's state.
//! The server keeps the current state per device and records each [`Transition`] in the
//! device's state history with `changed_by: "system"`.

use chrono::TimeDelta;

/// The states the system assigns. Clients may post other states; the next health check or
/// silence moves the device back into one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Reporting and healthy.
    Online,
    /// Reporting, but its last check said it is not healthy.
    Unhealthy,
    /// Silent for longer than the allowed missed heartbeats.
    Offline,
}

impl DeviceState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Unhealthy => "unhealthy",
            DeviceState::Offline => "offline",
        }
    }
}

/// A change of state and why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before (`None` for a device never seen before).
    pub previous: Option<String>,
    /// The state after.
    pub new: DeviceState,
    /// A sentence for the history.
    pub reason: String,
}

/// What a health check does to a device in state `current`.
pub fn on_health(current: Option<&str>, is_healthy: bool, error_message: Option<&str>) -> Option<Transition> {
    let new = if is_healthy { DeviceState::Online } else { DeviceState::Unhealthy };
    if current == Some(new.as_str()) {
        return None;
    }
    let reason = match (new, current, error_message) {
        (DeviceState::Unhealthy, _, Some(error)) => format!("health check reported unhealthy: {error}"),
        (DeviceState::Unhealthy, _, None) => "health check reported unhealthy".to_owned(),
        (_, None, _) => "first health check".to_owned(),
        (_, Some("offline"), _) => "health check received after silence".to_owned(),
        _ => "health check reported healthy".to_owned(),
    };
    Some(Transition { previous: current.map(str::to_owned), new, reason })
}

/// What `silent_for` without a health check does to a device in state `current`, when
/// `allowed` is the silence tolerated (the missed heartbeats times the interval).
pub fn on_silence(current: Option<&str>, silent_for: TimeDelta, allowed: TimeDelta) -> Option<Transition> {
    let current = current?;
    if current == DeviceState::Offline.as_str() || silent_for < allowed {
        return None;
    }
    Some(Transition {
        previous: Some(current.to_owned()),
        new: DeviceState::Offline,
        reason: format!("no health check for {} s (allowed {} s)", silent_for.num_seconds(), allowed.num_seconds()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_move_between_online_and_unhealthy() {
        let first = on_health(None, true, None).unwrap();
        assert_eq!(
            (first.previous, first.new, first.reason.as_str()),
            (None, DeviceState::Online, "first health check")
        );
        assert_eq!(on_health(Some("online"), true, None), None);
        let sick = on_health(Some("online"), false, Some("disk full")).unwrap();
        assert_eq!(
            (sick.new, sick.reason.as_str()),
            (DeviceState::Unhealthy, "health check reported unhealthy: disk full")
        );
        assert_eq!(on_health(Some("unhealthy"), false, None), None);
        assert_eq!(on_health(Some("offline"), true, None).unwrap().reason, "health check received after silence");
        assert_eq!(on_health(Some("maintenance"), true, None).unwrap().previous.as_deref(), Some("maintenance"));
    }

    #[test]
    fn silence_makes_a_device_offline_once() {
        let allowed = TimeDelta::seconds(180);
        assert_eq!(on_silence(None, TimeDelta::hours(1), allowed), None);
        assert_eq!(on_silence(Some("online"), TimeDelta::seconds(179), allowed), None);
        let gone = on_silence(Some("unhealthy"), TimeDelta::seconds(181), allowed).unwrap();
        assert_eq!(
            (gone.new, gone.reason.as_str()),
            (DeviceState::Offline, "no health check for 181 s (allowed 180 s)")
        );
        assert_eq!(on_silence(Some("offline"), TimeDelta::hours(1), allowed), None);
    }
}
