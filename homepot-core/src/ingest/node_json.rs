//! The JSON adapter for gateway node reports: `POST /api/monitoring/nodes/{node_id}/resources`.

use serde_json::Value;

use crate::ingest::json_reader::{ObjectReader, parse_object};
use crate::node::{CpuResources, NetworkResources, NodeReport, StorageResources};
use crate::validation::{
    ErrorKind, ErrorSink, LocSegment, ValidationErrors, check_float_range, check_int_range, check_len,
};

fn percent(r: &ObjectReader<'_>, sink: &mut ErrorSink, field: &str, required: bool) -> Option<f64> {
    let value = r.optional_float(sink, field);
    if required && !r.is_present(field) {
        sink.at(r.loc(), field, ErrorKind::Missing, "field required");
    }
    if let Some(v) = value {
        check_float_range(sink, r.loc(), field, v, 0.0, 100.0);
    }
    value
}

fn count(r: &ObjectReader<'_>, sink: &mut ErrorSink, field: &str, required: bool) -> Option<i64> {
    let value = if required { r.required_int(sink, field) } else { r.optional_int(sink, field) };
    if let Some(v) = value {
        check_int_range(sink, r.loc(), field, v, 0, i64::MAX);
    }
    value
}

fn storage(r: &ObjectReader<'_>, sink: &mut ErrorSink) -> Option<StorageResources> {
    let total = count(r, sink, "total_bytes", true);
    let free = count(r, sink, "free_bytes", true);
    let used = count(r, sink, "used_bytes", true);
    let usage = percent(r, sink, "usage_percent", true);
    let (total, free, used, usage) = (total?, free?, used?, usage?);
    // Nodes round their own figures; 1 % of the total absorbs that.
    if (used.saturating_add(free) - total).abs() > (total / 100).max(1) {
        sink.at(
            r.loc(),
            "used_bytes",
            ErrorKind::Inconsistent,
            format!("used_bytes + free_bytes ({}) must equal total_bytes ({total})", used + free),
        );
    }
    Some(StorageResources { total_bytes: total, free_bytes: free, used_bytes: used, usage_percent: usage })
}

/// Parses and validates a node's report. Reports without a timestamp get `now_s`.
///
/// # Errors
/// Every missing, mistyped or out-of-range field: percentages 0–100, counters non-negative,
/// used + free = total within 1 %, RSSI between -120 and 0 dBm.
pub fn parse_node_report(bytes: &[u8], now_s: i64) -> Result<NodeReport, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let timestamp = root.optional_int(&mut sink, "timestamp").unwrap_or(now_s);
    let node_ip = root.optional_str(&mut sink, "node_ip").map(str::to_owned);
    let hostname = root.optional_str(&mut sink, "hostname").map(str::to_owned);
    for (field, value) in [("node_ip", &node_ip), ("hostname", &hostname)] {
        if let Some(v) = value {
            check_len(&mut sink, &[], field, v, 1, 253);
        }
    }
    let group = |name: &str, sink: &mut ErrorSink, required: bool| {
        let found = root.optional_object(sink, name);
        if required && found.is_none() && map.get(name).is_none_or(Value::is_null) {
            sink.at(&[], name, ErrorKind::Missing, "field required");
        }
        found
    };
    let cpu_loc = [LocSegment::from("cpu")];
    let cpu = group("cpu", &mut sink, true).and_then(|m| {
        let r = ObjectReader::new(m, &cpu_loc);
        let usage = percent(&r, &mut sink, "usage_percent", true);
        let frequency_mhz = r.optional_float(&mut sink, "frequency_mhz");
        if let Some(f) = frequency_mhz {
            check_float_range(&mut sink, &cpu_loc, "frequency_mhz", f, 0.0, 100_000.0);
        }
        let temperature_c = r.optional_float(&mut sink, "temperature_c");
        if let Some(t) = temperature_c {
            check_float_range(&mut sink, &cpu_loc, "temperature_c", t, -60.0, 200.0);
        }
        Some(CpuResources { frequency_mhz, usage_percent: usage?, temperature_c })
    });
    let memory_loc = [LocSegment::from("memory")];
    let memory = group("memory", &mut sink, true).and_then(|m| storage(&ObjectReader::new(m, &memory_loc), &mut sink));
    let flash_loc = [LocSegment::from("flash")];
    let flash = group("flash", &mut sink, false).and_then(|m| storage(&ObjectReader::new(m, &flash_loc), &mut sink));
    let network_loc = [LocSegment::from("network")];
    let network = group("network", &mut sink, false).and_then(|m| {
        let r = ObjectReader::new(m, &network_loc);
        let bytes_sent = count(&r, &mut sink, "bytes_sent", true);
        let bytes_received = count(&r, &mut sink, "bytes_received", true);
        let packets_sent = count(&r, &mut sink, "packets_sent", false);
        let packets_received = count(&r, &mut sink, "packets_received", false);
        let rssi_dbm = r.optional_float(&mut sink, "rssi_dbm");
        if let Some(rssi) = rssi_dbm {
            check_float_range(&mut sink, &network_loc, "rssi_dbm", rssi, -120.0, 0.0);
        }
        let signal_quality_percent = percent(&r, &mut sink, "signal_quality_percent", false);
        Some(NetworkResources {
            bytes_sent: bytes_sent?,
            bytes_received: bytes_received?,
            packets_sent,
            packets_received,
            rssi_dbm,
            signal_quality_percent,
        })
    });
    let labels_loc = [LocSegment::from("labels")];
    let labels = root.string_map(&mut sink, "labels");
    if let Err(errors) = crate::device::Labels::parse(labels.clone()) {
        for e in errors.errors() {
            let mut loc = labels_loc.to_vec();
            loc.extend(e.loc.iter().cloned());
            sink.push(crate::FieldError::new(loc, e.kind, e.msg.clone()));
        }
    }
    sink.finish()?;
    match (cpu, memory) {
        (Some(cpu), Some(memory)) => {
            Ok(NodeReport { timestamp, node_ip, hostname, cpu, memory, network, flash, labels })
        }
        // Unreachable: a missing group records an error above.
        _ => Err(ValidationErrors::single(crate::FieldError::new(
            Vec::new(),
            ErrorKind::Missing,
            "cpu and memory are required",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::sample_node;
    use proptest::prelude::*;
    use serde_json::json;

    fn locs(doc: Value) -> Vec<String> {
        match parse_node_report(doc.to_string().as_bytes(), 0) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect()
            }
        }
    }

    #[test]
    fn every_rule_is_checked() {
        let mut doc = sample_node();
        doc["cpu"]["usage_percent"] = json!(101);
        doc["memory"]["used_bytes"] = json!(90000);
        doc["network"]["rssi_dbm"] = json!(-130);
        doc["flash"]["free_bytes"] = json!(-1);
        doc["labels"]["zone"] = json!(1);
        assert_eq!(
            locs(doc),
            [
                "cpu.usage_percent",
                "memory.used_bytes",
                "flash.free_bytes",
                "flash.used_bytes",
                "network.rssi_dbm",
                "labels.zone"
            ],
            "a negative free_bytes also breaks used + free = total"
        );
        assert_eq!(locs(json!({"cpu": {}})), ["cpu.usage_percent", "memory"]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_node_report(&bytes, 0);
        }

        #[test]
        fn percentages_are_accepted_exactly_in_range(cpu in -50.0f64..150.0) {
            let mut doc = sample_node();
            doc["cpu"]["usage_percent"] = json!(cpu);
            prop_assert_eq!(parse_node_report(doc.to_string().as_bytes(), 0).is_ok(), (0.0..=100.0).contains(&cpu));
        }
    }
}
