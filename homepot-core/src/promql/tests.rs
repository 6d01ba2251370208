use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    l.sort();
    l
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    Series { labels: labels(pairs), samples: samples.to_vec() }
}

/// The query's value at `t` over `all`, each selector given the series it matches.
fn at(query: &str, all: &[Series], t: i64) -> Value {
    let query = Query::parse(query).expect("parses");
    let data: Vec<Vec<Series>> = query
        .selectors()
        .iter()
        .map(|s| all.iter().filter(|series| s.matches(&series.labels)).cloned().collect())
        .collect();
    query.instant(&data, t).expect("evaluates")
}

fn vector(value: Value) -> Vec<(Labels, f64)> {
    let Value::Vector(mut samples) = value else { panic!("a vector: {value:?}") };
    samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    samples.into_iter().map(|s| (s.labels, s.value)).collect()
}

/// A counter sampled every 15 s from t = 0 that resets to 0 at 60 s.
fn fleet() -> Vec<Series> {
    vec![
        series(
            &[("__name__", "requests_total"), ("job", "api"), ("code", "200")],
            &[(0, 10.0), (15_000, 20.0), (30_000, 30.0), (45_000, 40.0), (60_000, 5.0), (75_000, 15.0)],
        ),
        series(&[("__name__", "requests_total"), ("job", "api"), ("code", "500")], &[(0, 1.0), (75_000, 4.0)]),
        series(&[("__name__", "temperature"), ("room", "lab")], &[(0, 20.0), (60_000, 23.0)]),
        series(&[("__name__", "temperature"), ("room", "hall")], &[(0, 18.0)]),
    ]
}

#[test]
fn instant_selectors_look_back_five_minutes() {
    let all = fleet();
    assert_eq!(vector(at("temperature", &all, 60_000)).len(), 2);
    assert_eq!(vector(at("temperature", &all, 300_000)).len(), 2, "exactly five minutes old still counts");
    assert_eq!(
        vector(at("temperature", &all, 300_001)),
        [(labels(&[("__name__", "temperature"), ("room", "lab")]), 23.0)]
    );
    assert!(vector(at("temperature", &all, 360_001)).is_empty(), "older than the lookback");
    assert_eq!(vector(at("temperature offset 1m", &all, 60_000)).len(), 2, "offset reads a minute earlier");
    assert_eq!(vector(at(r#"temperature{room!="hall"}"#, &all, 60_000)).len(), 1);
    assert_eq!(vector(at(r#"{__name__=~"temp.*", room=~"h.*"}"#, &all, 60_000)).len(), 1);
    assert_eq!(vector(at(r#"requests_total{code!~"5.."}"#, &all, 75_000)).len(), 1);
}

#[test]
fn rates_follow_prometheus_extrapolation_and_resets() {
    let all = fleet();
    let ok = |q: &str| {
        vector(at(q, &all, 75_000)).into_iter().find(|(l, _)| l.contains(&("code".into(), "200".into()))).unwrap()
    };
    // The reset adds 40 back: increase 10 → 15 is 45 over 75 s of samples in a 75 s window.
    let (labels_out, increase) = ok("increase(requests_total[75s])");
    assert!(!labels_out.iter().any(|(k, _)| k == "__name__"), "functions drop the name");
    assert!((increase - 45.0).abs() < 1e-9, "{increase}");
    let (_, rate) = ok("rate(requests_total[75s])");
    assert!((rate - 45.0 / 75.0).abs() < 1e-9, "{rate}");
    let (_, irate) = ok("irate(requests_total[75s])");
    assert!((irate - 10.0 / 15.0).abs() < 1e-9, "{irate}");
    let (_, delta) = ok("delta(requests_total[75s])");
    assert!((delta - 5.0).abs() < 1e-9, "no reset correction: {delta}");
    let (name_kept, last) = ok("last_over_time(requests_total[1m])");
    assert_eq!((name_kept.iter().any(|(k, _)| k == "__name__"), last), (true, 15.0));
    assert_eq!(ok("count_over_time(requests_total[1m])").1, 5.0, "closed window [15 s, 75 s]");
    assert_eq!(ok("max_over_time(requests_total[1m])").1, 40.0);
    assert_eq!(ok("min_over_time(requests_total[1m])").1, 5.0);
    assert_eq!(ok("sum_over_time(requests_total[30s])").1, 60.0, "40 + 5 + 15");
    assert_eq!(ok("avg_over_time(requests_total[30s])").1, 20.0);
}

#[test]
fn aggregations_group_by_and_without() {
    let all = fleet();
    assert_eq!(vector(at("sum(requests_total)", &all, 75_000)), [(vec![], 19.0)]);
    assert_eq!(
        vector(at("sum by (code) (requests_total)", &all, 75_000)),
        [(labels(&[("code", "200")]), 15.0), (labels(&[("code", "500")]), 4.0)]
    );
    assert_eq!(vector(at("max without (code) (requests_total)", &all, 75_000)), [(labels(&[("job", "api")]), 15.0)]);
    assert_eq!(vector(at("count(temperature)", &all, 60_000)), [(vec![], 2.0)]);
    assert_eq!(vector(at("avg(temperature)", &all, 60_000)), [(vec![], 20.5)]);
    let top = vector(at("topk(1, temperature)", &all, 60_000));
    assert_eq!(top, [(labels(&[("__name__", "temperature"), ("room", "lab")]), 23.0)], "topk keeps the labels");
    assert_eq!(vector(at("bottomk(1, temperature)", &all, 60_000))[0].1, 18.0);
}

#[test]
fn binary_operators_match_labels_one_to_one() {
    let all = fleet();
    assert_eq!(vector(at("temperature * 2", &all, 60_000))[0], (labels(&[("room", "hall")]), 36.0));
    assert_eq!(
        vector(at("temperature > 20", &all, 60_000)),
        [(labels(&[("__name__", "temperature"), ("room", "lab")]), 23.0)],
        "a filter keeps the name and the value"
    );
    assert_eq!(vector(at("temperature > bool 20", &all, 60_000)).iter().map(|s| s.1).sum::<f64>(), 1.0);
    assert_eq!(vector(at("30 - temperature", &all, 60_000))[1].1, 7.0);
    let ratio = vector(at(r#"requests_total{code="500"} / ignoring(code) requests_total{code="200"}"#, &all, 75_000));
    assert_eq!(ratio, [(labels(&[("job", "api")]), 4.0 / 15.0)], "ignored labels leave the result");
    let on = vector(at(r#"requests_total{code="500"} + on(job) requests_total{code="200"}"#, &all, 75_000));
    assert_eq!(on, [(labels(&[("job", "api")]), 19.0)]);
    assert_eq!(at("1 + 2 * 3", &all, 0), Value::Scalar(7.0));
    assert_eq!(at("-(2 ^ 3) % 5", &all, 0), Value::Scalar(-3.0));
    let query = Query::parse("requests_total + ignoring(code) requests_total").unwrap();
    let data = vec![fleet()[..2].to_vec(), fleet()[..2].to_vec()];
    assert!(matches!(query.instant(&data, 75_000), Err(PromqlError::Execution(_))), "many-to-many is refused");
}

#[test]
fn range_queries_evaluate_every_step() {
    let all = fleet();
    let query = Query::parse("temperature").unwrap();
    let data = vec![all.iter().filter(|s| query.selectors()[0].matches(&s.labels)).cloned().collect()];
    let matrix = query.range(&data, 0, 60_000, 30_000).unwrap();
    assert_eq!(matrix.len(), 2);
    assert_eq!(matrix[1].samples, [(0, 20.0), (30_000, 20.0), (60_000, 23.0)]);
    let scalar = Query::parse("2").unwrap().range(&[], 0, 20_000, 10_000).unwrap();
    assert_eq!(scalar, [Series { labels: vec![], samples: vec![(0, 2.0), (10_000, 2.0), (20_000, 2.0)] }]);
}

#[test]
fn outside_the_subset_is_refused_clearly() {
    for (query, expected) in [
        ("histogram_quantile(0.9, rate(x[5m]))", "the function histogram_quantile()"),
        ("x and y", "the operator and"),
        ("x * on(a) group_left y", "group_left and group_right"),
        ("rate(x[5m])[30m:1m]", "subqueries"),
        ("x @ 100", "the @ modifier"),
        ("stddev(x)", "the aggregation stddev"),
        ("x[5m]", "a range vector as a result"),
    ] {
        assert_eq!(Query::parse(query).unwrap_err(), PromqlError::Unsupported(expected.to_owned()), "{query}");
    }
    assert!(matches!(Query::parse("sum(("), Err(PromqlError::Parse(_))));
    assert_eq!(series_name("device_system", "cpu_percent"), "device_system_cpu_percent");
    assert_eq!(series_name("up", "value"), "up");
    assert_eq!(series_name("container", "cpu.utilization"), "container_cpu_utilization");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
        if let Ok(query) = Query::parse(&text) {
            let data = vec![fleet(); query.selectors().len()];
            let _ = query.range(&data, 0, 120_000, 15_000);
        }
    }

    #[test]
    fn increase_of_a_steady_counter_is_its_growth(per_step in 0.0f64..1e6, steps in 3usize..50) {
        let samples: Vec<(i64, f64)> = (0..=steps).map(|i| (i as i64 * 10_000, i as f64 * per_step)).collect();
        let window = steps as i64 * 10_000;
        let data = vec![vec![series(&[("__name__", "c")], &samples)]];
        let query = Query::parse(&format!("increase(c[{}ms])", window)).unwrap();
        let Value::Vector(out) = query.instant(&data, window).unwrap() else { panic!("vector") };
        prop_assert!((out[0].value - steps as f64 * per_step).abs() <= 1e-6 * (1.0 + steps as f64 * per_step));
    }
}
