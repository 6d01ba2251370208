//! The JSON adapter for health reports: the request body of
//! `POST /api/v1/devices/{device_id}/health`. Unknown top-level fields are ignored, as the
//! original service did; every known field is type- and range-checked in one pass.

use crate::health::{AppMetrics, HealthCheck, HealthReport, NetworkMetrics, SystemMetrics};
use crate::ingest::json_reader::{ObjectReader, parse_object};
use chrono::{DateTime, Utc};

use crate::validation::{ErrorKind, ErrorSink, LocSegment, ValidationErrors};

/// Parses and validates a health report.
///
/// # Errors
/// Every missing, mistyped or out-of-range field, located from the document root
/// (`["is_healthy"]`, `["system", "cpu_percent"]`...).
pub fn parse_health_check(bytes: &[u8]) -> Result<HealthCheck, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();

    let is_healthy = root.required_bool(&mut sink, "is_healthy");
    let response_time_ms = root.required_int(&mut sink, "response_time_ms");
    let mut report = HealthReport::minimal(is_healthy.unwrap_or(false), response_time_ms.unwrap_or(0));
    report.status_code = root.optional_int(&mut sink, "status_code").unwrap_or(200);
    report.endpoint = root.optional_str(&mut sink, "endpoint").map(str::to_owned);
    report.error_message = root.optional_str(&mut sink, "error_message").map(str::to_owned);
    if let Some(raw) = root.optional_str(&mut sink, "checked_at") {
        report.checked_at = DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc));
        if report.checked_at.is_none() {
            sink.at(&[], "checked_at", ErrorKind::BadFormat, "an RFC 3339 date-time, e.g. 2026-12-03T10:00:00Z");
        }
    }
    if let Some(data) = root.optional_object(&mut sink, "response_data") {
        report.response_data = data.clone();
    }

    let system_loc = [LocSegment::from("system")];
    if let Some(map) = root.optional_object(&mut sink, "system") {
        let r = ObjectReader::new(map, &system_loc);
        report.system = Some(SystemMetrics {
            cpu_percent: r.optional_float(&mut sink, "cpu_percent"),
            memory_percent: r.optional_float(&mut sink, "memory_percent"),
            memory_used_mb: r.optional_int(&mut sink, "memory_used_mb"),
            memory_total_mb: r.optional_int(&mut sink, "memory_total_mb"),
            disk_percent: r.optional_float(&mut sink, "disk_percent"),
            disk_used_gb: r.optional_int(&mut sink, "disk_used_gb"),
            disk_total_gb: r.optional_int(&mut sink, "disk_total_gb"),
            uptime_seconds: r.optional_int(&mut sink, "uptime_seconds"),
        });
    }
    let app_loc = [LocSegment::from("app_metrics")];
    if let Some(map) = root.optional_object(&mut sink, "app_metrics") {
        let r = ObjectReader::new(map, &app_loc);
        report.app_metrics = Some(AppMetrics {
            app_version: r.optional_str(&mut sink, "app_version").map(str::to_owned),
            transactions_count: r.optional_int(&mut sink, "transactions_count"),
            errors_count: r.optional_int(&mut sink, "errors_count"),
            warnings_count: r.optional_int(&mut sink, "warnings_count"),
            avg_response_time_ms: r.optional_int(&mut sink, "avg_response_time_ms"),
        });
    }
    let network_loc = [LocSegment::from("network")];
    if let Some(map) = root.optional_object(&mut sink, "network") {
        let r = ObjectReader::new(map, &network_loc);
        report.network = Some(NetworkMetrics {
            latency_ms: r.optional_int(&mut sink, "latency_ms"),
            rx_bytes: r.optional_int(&mut sink, "rx_bytes"),
            tx_bytes: r.optional_int(&mut sink, "tx_bytes"),
        });
    }

    // Range rules run on whatever parsed, so one response lists type and range errors together.
    report.check(&mut sink);
    sink.finish().map(|()| HealthCheck::checked(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::ErrorKind;
    use proptest::prelude::*;
    use serde_json::json;

    /// Parses `doc` and compares the (loc, type) list with `expected`.
    fn check(doc: serde_json::Value, expected: &[(&str, ErrorKind)]) {
        let got: Vec<(String, ErrorKind)> = match parse_health_check(doc.to_string().as_bytes()) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors()
                .iter()
                .map(|e| (e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join("."), e.kind))
                .collect(),
        };
        let expected: Vec<(String, ErrorKind)> = expected.iter().map(|(l, k)| ((*l).to_owned(), *k)).collect();
        assert_eq!(got, expected, "for {doc}");
    }

    #[test]
    fn documented_examples_are_accepted() {
        check(json!({"is_healthy": true, "response_time_ms": 100}), &[]);
        check(
            json!({
                "is_healthy": true, "response_time_ms": 150, "status_code": 200, "endpoint": "/health",
                "response_data": {"status": "healthy", "version": "1.2.3"}, "error_message": null,
                "system": {"cpu_percent": 65.5, "memory_percent": 80.0, "memory_used_mb": 1024, "memory_total_mb": 2048,
                           "disk_percent": 60.0, "disk_used_gb": 120, "disk_total_gb": 200, "uptime_seconds": 86400},
                "app_metrics": {"app_version": "1.2.3", "transactions_count": 150, "errors_count": 2,
                                "warnings_count": 5, "avg_response_time_ms": 350},
                "network": {"latency_ms": 45, "rx_bytes": 1024000, "tx_bytes": 512000}
            }),
            &[],
        );
        check(
            json!({"is_healthy": false, "response_time_ms": 5000, "status_code": 500,
                   "error_message": "Database connection timeout", "system": {"cpu_percent": 95.0, "memory_percent": 98.0}}),
            &[],
        );
    }

    #[test]
    fn checked_at_is_an_rfc3339_sample_time_bounded_by_the_clock_and_retention() {
        check(
            json!({"is_healthy": true, "response_time_ms": 1, "checked_at": "yesterday"}),
            &[("checked_at", ErrorKind::BadFormat)],
        );
        check(
            json!({"is_healthy": true, "response_time_ms": 1, "checked_at": 5}),
            &[("checked_at", ErrorKind::NotString)],
        );
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").unwrap().with_timezone(&Utc);
        let parse = |at: &str| {
            parse_health_check(
                json!({"is_healthy": true, "response_time_ms": 1, "checked_at": at}).to_string().as_bytes(),
            )
            .unwrap()
        };
        let day = Some(chrono::TimeDelta::days(1));
        let kind = |r: Result<DateTime<Utc>, ValidationErrors>| r.unwrap_err().errors()[0].kind;
        assert_eq!(parse("2026-12-03T13:00:00+02:00").sample_time(now, day), Ok(now - chrono::TimeDelta::hours(1)));
        assert_eq!(parse("2026-12-03T12:05:00Z").sample_time(now, day), Ok(now + chrono::TimeDelta::minutes(5)));
        assert_eq!(kind(parse("2026-12-03T12:05:01Z").sample_time(now, day)), ErrorKind::TooLarge);
        assert_eq!(kind(parse("2026-12-02T11:59:59Z").sample_time(now, day)), ErrorKind::TooSmall);
        assert_eq!(parse("2000-01-01T00:00:00Z").sample_time(now, None).map(|t| t.timestamp()), Ok(946_684_800));
        let plain = parse_health_check(br#"{"is_healthy": true, "response_time_ms": 1}"#).unwrap();
        assert_eq!(plain.sample_time(now, day), Ok(now), "without checked_at the server's time applies");
    }

    #[test]
    fn every_bad_field_is_reported() {
        check(json!({"response_time_ms": 1}), &[("is_healthy", ErrorKind::Missing)]);
        check(json!({}), &[("is_healthy", ErrorKind::Missing), ("response_time_ms", ErrorKind::Missing)]);
        check(
            json!({"is_healthy": "yes", "response_time_ms": -1, "system": {"cpu_percent": 101, "memory_used_mb": 5, "memory_total_mb": 4}}),
            &[
                ("is_healthy", ErrorKind::NotBool),
                ("response_time_ms", ErrorKind::TooSmall),
                ("system.cpu_percent", ErrorKind::TooLarge),
                ("system.memory_used_mb", ErrorKind::Inconsistent),
            ],
        );
        check(
            json!({"is_healthy": true, "response_time_ms": 1, "network": {"rx_bytes": "x"}, "app_metrics": 3}),
            &[("app_metrics", ErrorKind::NotObject), ("network.rx_bytes", ErrorKind::NotInteger)],
        );
        check(
            json!({"is_healthy": true, "response_time_ms": 1, "endpoint": "x".repeat(201), "status_code": 99}),
            &[("status_code", ErrorKind::TooSmall), ("endpoint", ErrorKind::TooLong)],
        );
        check(
            json!({"is_healthy": true, "response_time_ms": 1, "response_data": {"system": 1}, "system": {}}),
            &[("response_data.system", ErrorKind::Inconsistent)],
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_health_check(&bytes);
        }

        #[test]
        fn percentages_are_accepted_exactly_in_range(cpu in -1000.0f64..1000.0, mem in -10.0f64..110.0) {
            let doc = json!({"is_healthy": true, "response_time_ms": 5, "system": {"cpu_percent": cpu, "memory_percent": mem}});
            let ok = parse_health_check(doc.to_string().as_bytes()).is_ok();
            prop_assert_eq!(ok, (0.0..=100.0).contains(&cpu) && (0.0..=100.0).contains(&mem));
        }

        #[test]
        fn valid_reports_keep_every_value(cpu in 0.0f64..=100.0, used in 0i64..4096, extra in 0i64..4096, tx in 0i64..i64::MAX) {
            let doc = json!({"is_healthy": false, "response_time_ms": 5,
                             "system": {"cpu_percent": cpu, "memory_used_mb": used, "memory_total_mb": used + extra},
                             "network": {"tx_bytes": tx}});
            let check = parse_health_check(doc.to_string().as_bytes()).unwrap();
            prop_assert_eq!(check.cpu_percent(), Some(cpu));
            let stored = check.document();
            prop_assert_eq!(&stored["system"]["memory_used_mb"], &json!(used));
            prop_assert_eq!(&stored["network"]["tx_bytes"], &json!(tx));
        }
    }
}
