//! Host figures, read with `sysinfo` and from Linux's sysfs: what `homepot agent` reports for
//! its device and `homepot serve --host-metrics` shows for the server's own machine.
//!
//! The health check's `system` and `network` groups take the figures the device health API
//! names; everything else becomes `host_*` points. A source this machine lacks (no sensors, no
//! GPU, no swap) is left out without error.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use homepot_core::{FieldValue, MetricType, NetworkMetrics, Point, SystemMetrics};
use sysinfo::{Components, Disks, Networks, System};

const MB: u64 = 1024 * 1024;
const GB: u64 = 1024 * 1024 * 1024;

/// One reading of the host.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// When it was taken.
    pub(crate) taken_at: DateTime<Utc>,
    /// The health check's `system` group.
    pub(crate) system: SystemMetrics,
    /// The health check's `network` group (byte totals over every interface but loopback).
    pub(crate) network: NetworkMetrics,
    /// The rest, as points at `taken_at`.
    pub(crate) points: Vec<Point>,
}

/// Keeps the `sysinfo` state between readings: CPU usage is measured between two of them.
pub(crate) struct Collector {
    system: System,
    disks: Disks,
    networks: Networks,
    /// Sensors are optional: a container or a VM may show none.
    components: Option<Components>,
    /// Tags every point carries (the server's `host` for `--host-metrics`; none for the agent,
    /// whose points the server tags with its `device_id`).
    tags: Vec<(String, String)>,
    sysfs: &'static Path,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("tags", &self.tags).finish_non_exhaustive()
    }
}

fn point(
    name: &str,
    tags: &[(String, String)],
    fields: Vec<(&str, FieldValue)>,
    time_ns: i64,
    kind: MetricType,
) -> Option<Point> {
    let fields: Vec<(String, FieldValue)> = fields
        .into_iter()
        .filter(|(_, v)| !matches!(v, FieldValue::Float(f) if !f.is_finite()))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    if fields.is_empty() {
        return None;
    }
    Point::new(name.to_owned(), tags.to_vec(), fields, time_ns, kind).ok()
}

fn with_tag(tags: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut tags = tags.to_vec();
    tags.push((key.to_owned(), value.to_owned()));
    tags
}

fn int(value: u64) -> FieldValue {
    FieldValue::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Two decimals: `sysinfo`'s `f32` readings carry noise past them (2.999999761).
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round2((part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)))
}

impl Collector {
    /// A collector whose points carry `tags`.
    ///
    /// # Errors
    /// When `sysinfo` cannot read this system at all.
    pub(crate) fn new(tags: Vec<(String, String)>) -> anyhow::Result<Self> {
        let mut system = System::new().map_err(|e| anyhow::anyhow!("cannot read this system: {e}"))?;
        system.refresh_cpu_all();
        let disks = Disks::new_with_refreshed_list().map_err(|e| anyhow::anyhow!("cannot list disks: {e}"))?;
        let networks =
            Networks::new_with_refreshed_list().map_err(|e| anyhow::anyhow!("cannot list interfaces: {e}"))?;
        let components = Components::new_with_refreshed_list().ok();
        Ok(Self { system, disks, networks, components, tags, sysfs: Path::new("/sys") })
    }

    /// Reads the host now.
    pub(crate) fn read(&mut self, taken_at: DateTime<Utc>) -> Reading {
        let ns = taken_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let tags = self.tags.clone();
        let mut points = Vec::new();
        self.system.refresh_cpu_all();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        if let Some(components) = &mut self.components {
            components.refresh(true);
        }

        let cpu = round2(f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0));
        points.extend(point(
            "host_cpu",
            &with_tag(&tags, "cpu", "total"),
            vec![("usage_percent", FieldValue::Float(cpu))],
            ns,
            MetricType::Gauge,
        ));
        for core in self.system.cpus() {
            let fields = vec![
                ("usage_percent", FieldValue::Float(round2(f64::from(core.usage()).clamp(0.0, 100.0)))),
                ("frequency_mhz", int(core.frequency())),
            ];
            points.extend(point("host_cpu", &with_tag(&tags, "cpu", core.name()), fields, ns, MetricType::Gauge));
        }
        if let Ok(load) = System::load_average() {
            let fields = vec![
                ("load1", FieldValue::Float(load.one)),
                ("load5", FieldValue::Float(load.five)),
                ("load15", FieldValue::Float(load.fifteen)),
            ];
            points.extend(point("host_load", &tags, fields, ns, MetricType::Gauge));
        }

        let (total, used) = (self.system.total_memory(), self.system.used_memory());
        let mut memory = vec![
            ("total_bytes", int(total)),
            ("used_bytes", int(used)),
            ("available_bytes", int(self.system.available_memory())),
        ];
        if self.system.total_swap() > 0 {
            memory.push(("swap_total_bytes", int(self.system.total_swap())));
            memory.push(("swap_used_bytes", int(self.system.used_swap())));
        }
        points.extend(point("host_memory", &tags, memory, ns, MetricType::Gauge));

        // The health check reports the root file system, as the device health API's reporter did.
        let mut root = None;
        for disk in &self.disks {
            let mount = disk.mount_point().to_string_lossy();
            let (total, available) = (disk.total_space(), disk.available_space());
            if total == 0 {
                continue;
            }
            if mount == "/" {
                root = Some((total, total.saturating_sub(available)));
            }
            let fields = vec![
                ("total_bytes", int(total)),
                ("available_bytes", int(available)),
                ("used_percent", FieldValue::Float(percent(total.saturating_sub(available), total).unwrap_or(0.0))),
            ];
            points.extend(point("host_disk", &with_tag(&tags, "mount", &mount), fields, ns, MetricType::Gauge));
        }

        let (mut rx, mut tx) = (0u64, 0u64);
        for (interface, data) in &*self.networks {
            let interface = interface.to_string_lossy();
            if interface == "lo" {
                continue;
            }
            rx = rx.saturating_add(data.total_received());
            tx = tx.saturating_add(data.total_transmitted());
            let fields = vec![("rx_bytes", int(data.total_received())), ("tx_bytes", int(data.total_transmitted()))];
            points.extend(point(
                "host_network",
                &with_tag(&tags, "interface", &interface),
                fields,
                ns,
                MetricType::Counter,
            ));
        }

        for component in self.components.iter().flatten() {
            if let Some(celsius) = component.temperature().filter(|t| t.is_finite()) {
                let fields = vec![("celsius", FieldValue::Float(f64::from(celsius)))];
                let sensor = with_tag(&tags, "sensor", component.label());
                points.extend(point("host_temperature", &sensor, fields, ns, MetricType::Gauge));
            }
        }

        let uptime = System::uptime().ok();
        let mut host = Vec::new();
        if let Some(uptime) = uptime {
            host.push(("uptime_seconds", int(uptime)));
        }
        if let Some(processes) = process_count(self.sysfs.parent().unwrap_or(Path::new("/")).join("proc").as_path()) {
            host.push(("processes", int(processes)));
        }
        points.extend(point("host_system", &tags, host, ns, MetricType::Gauge));
        points.extend(accelerators(self.sysfs, &tags, ns));

        let system = SystemMetrics {
            cpu_percent: Some(cpu),
            memory_percent: percent(used, total),
            memory_used_mb: Some(i64::try_from(used / MB).unwrap_or(i64::MAX)),
            memory_total_mb: Some(i64::try_from(total / MB).unwrap_or(i64::MAX)),
            disk_percent: root.and_then(|(total, used)| percent(used, total)),
            disk_used_gb: root.map(|(_, used)| i64::try_from(used / GB).unwrap_or(i64::MAX)),
            disk_total_gb: root.map(|(total, _)| i64::try_from(total / GB).unwrap_or(i64::MAX)),
            uptime_seconds: uptime.map(|u| i64::try_from(u).unwrap_or(i64::MAX)),
        };
        let network = NetworkMetrics {
            latency_ms: None,
            rx_bytes: Some(i64::try_from(rx).unwrap_or(i64::MAX)),
            tx_bytes: Some(i64::try_from(tx).unwrap_or(i64::MAX)),
        };
        Reading { taken_at, system, network, points }
    }
}

/// Processes: the numeric entries of `/proc` (cheaper than `sysinfo`'s process table, which
/// keeps every process in memory).
fn process_count(proc: &Path) -> Option<u64> {
    let entries = fs::read_dir(proc).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
            .count() as u64,
    )
}

fn read_number(path: &Path) -> Option<f64> {
    fs::read_to_string(path).ok()?.split_whitespace().next()?.trim_end_matches('%').parse().ok()
}

/// GPUs and NPUs, where the kernel exposes them: a DRM card's `gpu_busy_percent` and
/// `mem_busy_percent` (amdgpu and others), and the `devfreq` devices whose name says GPU or
/// NPU (Mali, Adreno, Rockchip and other SoC accelerators) with their `load` and `cur_freq`.
fn accelerators(sysfs: &Path, tags: &[(String, String)], ns: i64) -> Vec<Point> {
    let mut points = Vec::new();
    if let Ok(cards) = fs::read_dir(sysfs.join("class/drm")) {
        for card in cards.filter_map(Result::ok) {
            let name = card.file_name().to_string_lossy().into_owned();
            // `card0`, not its connectors (`card0-HDMI-A-1`).
            if !name.starts_with("card") || name.contains('-') {
                continue;
            }
            let device = card.path().join("device");
            let mut fields = Vec::new();
            if let Some(busy) = read_number(&device.join("gpu_busy_percent")) {
                fields.push(("busy_percent", FieldValue::Float(busy)));
            }
            if let Some(busy) = read_number(&device.join("mem_busy_percent")) {
                fields.push(("memory_busy_percent", FieldValue::Float(busy)));
            }
            points.extend(point("host_gpu", &with_tag(tags, "card", &name), fields, ns, MetricType::Gauge));
        }
    }
    if let Ok(devices) = fs::read_dir(sysfs.join("class/devfreq")) {
        for device in devices.filter_map(Result::ok) {
            let name = device.file_name().to_string_lossy().into_owned();
            let lower = name.to_ascii_lowercase();
            let kind = if lower.contains("npu") {
                "host_npu"
            } else if lower.contains("gpu") || lower.contains("mali") || lower.contains("kgsl") {
                "host_gpu"
            } else {
                continue;
            };
            let path = device.path();
            let mut fields = Vec::new();
            // `load` reads "busy@frequency" (percent of time busy at that frequency).
            if let Some(load) =
                fs::read_to_string(path.join("load")).ok().and_then(|t| t.split('@').next()?.trim().parse::<f64>().ok())
            {
                fields.push(("busy_percent", FieldValue::Float(load)));
            }
            if let Some(hz) = read_number(&path.join("cur_freq")) {
                fields.push(("frequency_hz", FieldValue::Float(hz)));
            }
            points.extend(point(kind, &with_tag(tags, "device", &name), fields, ns, MetricType::Gauge));
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_fills_the_health_groups_and_host_points() {
        let mut collector = Collector::new(vec![("host".into(), "test".into())]).unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let reading = collector.read(at);
        let system = &reading.system;
        assert!(system.cpu_percent.is_some_and(|c| (0.0..=100.0).contains(&c)));
        assert!(system.memory_total_mb.is_some_and(|m| m > 0), "{system:?}");
        assert!(system.uptime_seconds.is_some());
        let names: std::collections::BTreeSet<&str> = reading.points.iter().map(Point::name).collect();
        for name in ["host_cpu", "host_memory", "host_system"] {
            assert!(names.contains(name), "{names:?}");
        }
        assert!(reading.points.iter().all(|p| p.timestamp_ns() == 1_800_000_000_000_000_000));
        assert!(reading.points.iter().all(|p| p.tags().contains(&("host".into(), "test".into()))));
        let health = homepot_core::HealthReport {
            system: Some(reading.system.clone()),
            network: Some(reading.network.clone()),
            ..homepot_core::HealthReport::minimal(true, 1)
        };
        homepot_core::HealthCheck::validate(health).expect("what the agent reports passes the server's rules");
    }

    #[test]
    fn accelerators_are_read_from_sysfs_where_present() {
        let root = tempfile::tempdir().unwrap();
        let card = root.path().join("class/drm/card0/device");
        fs::create_dir_all(&card).unwrap();
        fs::create_dir_all(root.path().join("class/drm/card0-HDMI-A-1")).unwrap();
        fs::write(card.join("gpu_busy_percent"), "37\n").unwrap();
        let npu = root.path().join("class/devfreq/fdab0000.npu");
        fs::create_dir_all(&npu).unwrap();
        fs::write(npu.join("load"), "12@1000000000Hz\n").unwrap();
        fs::write(npu.join("cur_freq"), "1000000000\n").unwrap();
        fs::create_dir_all(root.path().join("class/devfreq/dmc")).unwrap();
        let points = accelerators(root.path(), &[], 0);
        type Summary = (String, String, Vec<(String, FieldValue)>);
        let summary: Vec<Summary> =
            points.iter().map(|p| (p.name().to_owned(), p.tags()[0].1.clone(), p.fields().to_vec())).collect();
        assert_eq!(
            summary,
            vec![
                ("host_gpu".into(), "card0".into(), vec![("busy_percent".into(), FieldValue::Float(37.0))]),
                (
                    "host_npu".into(),
                    "fdab0000.npu".into(),
                    vec![
                        ("busy_percent".into(), FieldValue::Float(12.0)),
                        ("frequency_hz".into(), FieldValue::Float(1e9))
                    ]
                ),
            ]
        );
        assert!(accelerators(Path::new("/nonexistent"), &[], 0).is_empty(), "absent sources are no error");
    }
}
