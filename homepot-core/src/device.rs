//! Devices: their identifiers, registration data and labels.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validation::{ErrorKind, ErrorSink, FieldError, LocSegment, ValidationErrors, check_len};

/// Longest device identifier accepted.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest device name.
pub const MAX_DEVICE_NAME_LEN: usize = 200;
/// Longest device type.
pub const MAX_DEVICE_TYPE_LEN: usize = 64;
/// Most labels one device may carry.
pub const MAX_LABELS: usize = 64;

/// A device's unique, case-sensitive identifier, such as `pos-terminal-001`.
///
/// **Invariant:** 1–128 characters from `A-Z a-z 0-9 . _ - :`, so it is safe in URLs,
/// MQTT topics and log lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl TryFrom<String> for DeviceId {
    type Error = ValidationErrors;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

impl DeviceId {
    /// Checks `raw` against the identifier rules.
    ///
    /// # Errors
    /// A [`ValidationErrors`] located at the empty path when `raw` breaks a rule.
    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        Self::check(&mut sink, &[], raw);
        sink.finish().map(|()| Self(raw.to_owned()))
    }

    /// Records at `loc` every rule `raw` breaks.
    fn check(sink: &mut ErrorSink, loc: &[LocSegment], raw: &str) {
        if raw.is_empty() || raw.len() > MAX_DEVICE_ID_LEN {
            sink.push(FieldError::new(
                loc.to_vec(),
                if raw.is_empty() { ErrorKind::TooShort } else { ErrorKind::TooLong },
                format!("device id must be 1 to {MAX_DEVICE_ID_LEN} characters"),
            ));
        } else if !raw.bytes().all(is_id_byte) {
            sink.push(FieldError::new(
                loc.to_vec(),
                ErrorKind::BadFormat,
                "device id may contain only letters, digits, '.', '_', '-' and ':'",
            ));
        }
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Key/value labels on a device (zone, environment, firmware...), ordered by key.
///
/// **Invariant:** at most 64 labels; keys 1–63 characters of `A-Z a-z 0-9 . _ -`;
/// values at most 256 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct Labels(BTreeMap<String, String>);

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = ValidationErrors;

    fn try_from(raw: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.0
    }
}

impl Labels {
    /// Validates `raw`, recording problems under `loc`.
    fn check(sink: &mut ErrorSink, loc: &[LocSegment], raw: &BTreeMap<String, String>) {
        if raw.len() > MAX_LABELS {
            sink.push(FieldError::new(
                loc.to_vec(),
                ErrorKind::TooLong,
                format!("at most {MAX_LABELS} labels are allowed"),
            ));
            return;
        }
        for (key, value) in raw {
            if key.is_empty()
                || key.len() > 63
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                sink.at(
                    loc,
                    key,
                    ErrorKind::BadFormat,
                    "label keys are 1 to 63 characters of letters, digits, '.', '_' and '-'",
                );
            }
            check_len(sink, loc, key, value, 0, 256);
        }
    }

    /// Validates a label map.
    ///
    /// # Errors
    /// Every rule the map breaks, located by label key.
    pub fn parse(raw: BTreeMap<String, String>) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        Self::check(&mut sink, &[], &raw);
        sink.finish().map(|()| Self(raw))
    }

    /// The labels.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// What is needed to register a device.
///
/// Serde uses the registration body's shape and validates it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NewDeviceDoc", into = "NewDeviceDoc")]
pub struct NewDevice {
    id: DeviceId,
    name: Option<String>,
    device_type: Option<String>,
    labels: Labels,
}

/// [`NewDevice`] as serialised: the registration body.
#[derive(Serialize, Deserialize)]
struct NewDeviceDoc {
    device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

impl TryFrom<NewDeviceDoc> for NewDevice {
    type Error = ValidationErrors;

    fn try_from(doc: NewDeviceDoc) -> Result<Self, Self::Error> {
        Self::parse(&doc.device_id, doc.name, doc.device_type, doc.labels)
    }
}

impl From<NewDevice> for NewDeviceDoc {
    fn from(device: NewDevice) -> Self {
        Self { device_id: device.id.0, name: device.name, device_type: device.device_type, labels: device.labels.0 }
    }
}

impl NewDevice {
    /// Validates a registration; errors are located by field name (`device_id`, `name`,
    /// `device_type`, `labels`).
    ///
    /// # Errors
    /// Every field that breaks its rule.
    pub fn parse(
        id: &str,
        name: Option<String>,
        device_type: Option<String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        DeviceId::check(&mut sink, &[LocSegment::from("device_id")], id);
        if let Some(name) = &name {
            check_len(&mut sink, &[], "name", name, 1, MAX_DEVICE_NAME_LEN);
        }
        if let Some(device_type) = &device_type {
            check_len(&mut sink, &[], "device_type", device_type, 1, MAX_DEVICE_TYPE_LEN);
        }
        Labels::check(&mut sink, &[LocSegment::from("labels")], &labels);
        sink.finish()?;
        Ok(Self { id: DeviceId(id.to_owned()), name, device_type, labels: Labels(labels) })
    }

    /// A registration with only an identifier.
    pub fn with_id(id: DeviceId) -> Self {
        Self { id, name: None, device_type: None, labels: Labels::default() }
    }

    /// The device identifier.
    pub fn id(&self) -> &DeviceId {
        &self.id
    }
    /// The human-readable name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The kind of device (`pos-terminal`, `esp32`...).
    pub fn device_type(&self) -> Option<&str> {
        self.device_type.as_deref()
    }
    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The registered device this becomes at `created_at`.
    pub fn into_device(self, created_at: DateTime<Utc>) -> Device {
        Device { id: self.id, name: self.name, device_type: self.device_type, labels: self.labels, created_at }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Its identifier.
    pub id: DeviceId,
    /// Its human-readable name.
    pub name: Option<String>,
    /// Its kind.
    pub device_type: Option<String>,
    /// Its labels.
    pub labels: Labels,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl Device {
    /// Rebuilds a device read back from storage, trusting that it was validated on the way in.
    pub fn from_stored(
        id: String,
        name: Option<String>,
        device_type: Option<String>,
        labels: BTreeMap<String, String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self { id: DeviceId(id), name, device_type, labels: Labels(labels), created_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn serde_validates_like_parse() {
        let device =
            NewDevice::parse("pos-1", Some("Till".into()), None, BTreeMap::from([("site".into(), "a".into())]))
                .expect("valid");
        let json = serde_json::to_string(&device).expect("serialises");
        assert_eq!(json, r#"{"device_id":"pos-1","name":"Till","labels":{"site":"a"}}"#);
        assert_eq!(serde_json::from_str::<NewDevice>(&json).expect("reads back"), device);
        assert!(serde_json::from_str::<NewDevice>(r#"{"device_id":"has space"}"#).is_err());
        assert!(serde_json::from_str::<DeviceId>(r#""slash/""#).is_err());
    }

    #[test]
    fn device_ids() {
        for ok in ["pos-terminal-001", "a", "edge:device:edge:containers", "x.y_z"] {
            assert!(DeviceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "slash/", "ü", &"x".repeat(129)] {
            assert!(DeviceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_reports_each_field() {
        let labels = BTreeMap::from([("bad key".to_owned(), "v".to_owned())]);
        let err = NewDevice::parse("bad id", Some(String::new()), None, labels).unwrap_err();
        let locs: Vec<String> =
            err.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect();
        assert_eq!(locs, ["device_id", "name", "labels.bad key"]);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_alphabet(raw in "\\PC{0,140}") {
            let ok = DeviceId::parse(&raw).is_ok();
            let expected = !raw.is_empty() && raw.len() <= MAX_DEVICE_ID_LEN && raw.bytes().all(is_id_byte);
            prop_assert_eq!(ok, expected);
        }
    }
}
