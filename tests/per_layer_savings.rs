//! Per-layer savings against the baseline precision's layers cell. A test binary of its own: the
//! per_layer tests compare timings, which a concurrent run on the same cores would disturb.

mod common;
use common::*;

#[test]
fn layers_of_another_precision_are_compared_with_the_baselines_layers() {
    let toml = format!(
        "[experiment]\nname = \"layers\"\n{}{}[matrix]\nprecision = [\"fp32\", \"q8_0\"]\nbatch_size = [4]\nseq_len = [16]\nscope = [\"layers\"]\n",
        common_tables(),
        FAST_PROTOCOL
    );
    let f = Fixture::new(&toml);
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let csv = std::fs::read_to_string(run.join("per_layer.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let (fp32, q8): (Vec<_>, Vec<_>) = rows.iter().partition(|r| &r[col("precision")] == "fp32");
    assert_eq!(fp32.len(), q8.len());
    assert!(fp32.iter().all(|r| r[col("latency_saving_pct")].is_empty()));
    for r in q8 {
        assert_eq!(&r[col("baseline_precision")], "fp32");
        let saving: f64 = r[col("latency_saving_pct")].parse().unwrap();
        assert!(saving.is_finite() && saving < 100.0, "{saving}");
        // No energy on the CPU: no energy saving either, not a zero.
        assert!(r[col("energy_saving_pct")].is_empty());
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("saving vs fp32, % (energy, else latency)"));
}
