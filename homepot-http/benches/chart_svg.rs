//! Server-side SVG charts (plotters) against what the dashboard's canvas charts need: the
//! dashboard's device page draws four charts of up to 360 points, each an average line over a
//! min–max band. Rendered on the server, each chart is an SVG document; drawn in the browser,
//! each is three range answers (avg, min, max) in JSON plus the chart code, sent once.
//!
//! `cargo bench -p homepot-http --bench chart_svg` times the SVG rendering and writes one
//! chart's SVG and the JSON answers it replaces to `target/bench-data/chart-svg/`, so their
//! compressed sizes can be compared (`gzip -9 -c FILE | wc -c`).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plotters::prelude::*;

const POINTS: i64 = 360;
const WIDTH: u32 = 320;
const HEIGHT: u32 = 160;

/// `(t, avg, min, max)` of a month at 2-hour steps, from a fixed generator.
fn series(seed: u64) -> Vec<(i64, f64, f64, f64)> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = 1_780_000_000 / 7_200 * 7_200;
    (0..POINTS)
        .map(|i| {
            let avg = 40.0 + 20.0 * ((i as f64) / 20.0).sin() + 10.0 * next();
            (start + i * 7_200, avg, avg - 5.0 * next(), avg + 5.0 * next())
        })
        .collect()
}

/// One chart as the dashboard draws it: the band, the line, the two bound labels.
fn render(points: &[(i64, f64, f64, f64)]) -> String {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        area.fill(&WHITE).expect("fill");
        let (t0, t1) = (points[0].0 as f64, points[points.len() - 1].0 as f64);
        let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.3).fold(f64::NEG_INFINITY, f64::max);
        let x = |t: i64| 30 + ((t as f64 - t0) / (t1 - t0) * f64::from(WIDTH - 40)) as i32;
        let y = |v: f64| (f64::from(HEIGHT) - 15.0 - (v - lo) / (hi - lo) * f64::from(HEIGHT - 25)) as i32;
        let band: Vec<(i32, i32)> =
            points.iter().map(|p| (x(p.0), y(p.3))).chain(points.iter().rev().map(|p| (x(p.0), y(p.2)))).collect();
        area.draw(&Polygon::new(band, RGBColor(9, 105, 218).mix(0.15).filled())).expect("band");
        let line: Vec<(i32, i32)> = points.iter().map(|p| (x(p.0), y(p.1))).collect();
        area.draw(&PathElement::new(line, RGBColor(9, 105, 218).stroke_width(2))).expect("line");
        let style = ("sans-serif", 10).into_font().color(&RGBColor(101, 109, 118));
        area.draw(&Text::new(format!("{hi:.1}"), (2, 3), style.clone())).expect("label");
        area.draw(&Text::new(format!("{lo:.1}"), (2, HEIGHT as i32 - 25), style)).expect("label");
        area.present().expect("present");
    }
    svg
}

/// The range answer the canvas chart reads for one figure, as `/api/v1/query/range` sends it.
fn answer(points: &[(i64, f64, f64, f64)], figure: impl Fn(&(i64, f64, f64, f64)) -> f64) -> String {
    let mut json = String::from(
        r#"{"series":[{"labels":{"__field__":"cpu_percent","__name__":"device_system","device_id":"fleet-0042"},"points":["#,
    );
    for (i, p) in points.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(json, "{sep}[{},{}]", p.0, figure(p)).expect("write");
    }
    json.push_str(r#"]}],"tier":"1h","step":7200}"#);
    json
}

fn chart_svg(c: &mut Criterion) {
    let charts: Vec<_> = (1..=4).map(series).collect();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/chart-svg");
    std::fs::create_dir_all(&out).expect("output directory");
    std::fs::write(out.join("chart.svg"), render(&charts[0])).expect("svg");
    for (name, figure) in [("avg", 1), ("min", 2), ("max", 3)] {
        let json = answer(&charts[0], |p| [p.1, p.2, p.3][figure - 1]);
        std::fs::write(out.join(format!("answer-{name}.json")), json).expect("json");
    }
    let mut group = c.benchmark_group("chart_svg");
    group.throughput(Throughput::Elements(4));
    group.bench_function("four charts of 360 points", |b| {
        b.iter(|| charts.iter().map(|points| render(black_box(points)).len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(benches, chart_svg);
criterion_main!(benches);
