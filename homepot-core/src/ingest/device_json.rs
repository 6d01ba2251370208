//! The JSON adapters of the registry: device registrations (`POST /api/v1/devices`) and
//! fleet key requests (`POST /api/v1/keys`).

use crate::api_key::Role;
use crate::device::NewDevice;
use crate::ingest::json_reader::{ObjectReader, parse_object};
use crate::validation::{ErrorKind, ErrorSink, ValidationErrors};

/// Parses and validates a registration: `device_id` (required), `name`, `device_type`, and
/// `labels` (an object of strings).
///
/// # Errors
/// Every missing, mistyped or invalid field, located from the document root.
pub fn parse_new_device(bytes: &[u8]) -> Result<NewDevice, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let device_id = root.required_str(&mut sink, "device_id");
    let name = root.optional_str(&mut sink, "name").map(str::to_owned);
    let device_type = root.optional_str(&mut sink, "device_type").map(str::to_owned);
    let labels = root.string_map(&mut sink, "labels");
    sink.finish()?;
    NewDevice::parse(device_id.unwrap_or_default(), name, device_type, labels)
}

/// Parses a request for a key that belongs to no device: `{"role": "read" | "admin"}`.
/// Device keys are issued through their device.
///
/// # Errors
/// A missing or mistyped `role`, or one outside the two.
pub fn parse_fleet_key_request(bytes: &[u8]) -> Result<Role, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let role = root.required_str(&mut sink, "role").and_then(|raw| {
        let role = Role::parse(raw).filter(|r| *r != Role::Device);
        if role.is_none() {
            sink.at(
                &[],
                "role",
                ErrorKind::NotOneOf,
                "value is not a valid enumeration member; permitted: 'read', 'admin'",
            );
        }
        role
    });
    sink.finish().map(|()| role.unwrap_or(Role::Read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fleet_key_requests_name_read_or_admin() {
        assert_eq!(parse_fleet_key_request(br#"{"role": "read"}"#), Ok(Role::Read));
        assert_eq!(parse_fleet_key_request(br#"{"role": "admin"}"#), Ok(Role::Admin));
        for bad in [&br#"{"role": "device"}"#[..], br#"{"role": 1}"#, b"{}", b"[]", b"nope"] {
            assert!(parse_fleet_key_request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn registrations() {
        let ok = parse_new_device(br#"{"device_id": "pos-1", "name": "Till", "labels": {"zone": "zone-1"}}"#).unwrap();
        assert_eq!(ok.id().as_str(), "pos-1");
        assert_eq!(ok.labels().as_map()["zone"], "zone-1");
        let err = parse_new_device(br#"{"labels": {"zone": 1}}"#).unwrap_err();
        let kinds: Vec<_> = err.errors().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ErrorKind::Missing, ErrorKind::NotString]);
        assert!(parse_new_device(br#"{"device_id": "no spaces"}"#).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_new_device(&bytes);
        }
    }
}
