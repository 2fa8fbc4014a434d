//! `sluice lab bmt` end to end with a tiny matrix: the outputs exist, the
//! measured modes have real rows, and every mode that could not run is
//! listed as unavailable with a reason and has no row. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// Requests per repetition: tiny, the debug build is slow.
const REQUESTS: u64 = 300;
/// Modes asked for: two that exist, plus ones that may not (yet).
const MODES: &[&str] = &["direct", "dr", "nat", "fullnat"];

#[test]
fn tiny_matrix_writes_table_json_and_charts_without_fake_rows() {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(SLUICE)
        .args([
            "lab",
            "bmt",
            "--modes",
            &MODES.join(","),
            "--concurrency",
            "10",
            "--requests",
            &REQUESTS.to_string(),
            "--reps",
            "1",
            "--backend",
            "sluice",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "bmt failed ({}):\n{stdout}\n{stderr}",
        result.status
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("bmt.json")).unwrap())
            .unwrap();
    let md = std::fs::read_to_string(out.path().join("bmt.md")).unwrap();
    assert!(stdout.contains(&md), "the table is printed");
    assert!(stdout.contains("bmt.png") && stdout.contains("bmt.svg"));
    assert!(md.contains(
        "| Mode | Thread | Concurrency | Total Requests | File Size | Requests/sec | Latency (ms) |"
    ));

    let cells = json["cells"].as_array().unwrap();
    let unavailable = json["unavailable"].as_array().unwrap();
    let measured: BTreeSet<&str> = cells.iter().map(|c| c["mode"].as_str().unwrap()).collect();
    let missing: BTreeSet<&str> = unavailable
        .iter()
        .map(|u| u["mode"].as_str().unwrap())
        .collect();
    // The baseline and L4 dr exist and must be measured for real.
    assert!(
        measured.contains("direct") && measured.contains("dr"),
        "{json}"
    );
    for c in cells {
        let s = &c["samples"][0];
        assert_eq!(s["ok"].as_u64().unwrap(), REQUESTS, "{c}");
        assert!(c["requests_per_sec"].as_f64().unwrap() > 0.0, "{c}");
        assert_eq!(c["file_size_bytes"], 5120);
        let mode = c["mode"].as_str().unwrap();
        let row = format!("| {mode} | – | 10 | {REQUESTS} | 5KiB | ");
        assert!(md.contains(&row), "no row {row:?} in\n{md}");
    }
    // dr's CPU figure is the XDP program's run time, and it is not zero.
    let dr = cells.iter().find(|c| c["mode"] == "dr").unwrap();
    assert_eq!(dr["cpu_source"], "bpf");
    assert!(dr["lb_cpu_us_per_req"].as_f64().unwrap() > 0.0, "{dr}");
    // Every requested mode is either measured or explained, never both, and
    // an unavailable mode has no row.
    for m in MODES {
        assert!(
            measured.contains(m) != missing.contains(m),
            "mode {m}: measured {measured:?}, unavailable {missing:?}"
        );
    }
    for u in unavailable {
        let mode = u["mode"].as_str().unwrap();
        let reason = u["reason"].as_str().unwrap();
        assert!(!reason.is_empty());
        assert!(
            !md.contains(&format!("| {mode} |")),
            "row for unavailable {mode}"
        );
        assert!(
            md.contains(&format!("- **{mode}")),
            "{mode} not listed in\n{md}"
        );
    }

    let svg = std::fs::read_to_string(out.path().join("bmt.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    for c in cells {
        assert!(svg.contains(&format!(">{}</text>", c["series"].as_str().unwrap())));
    }
    let png = std::fs::read(out.path().join("bmt.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Nothing left behind.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(!ns.contains("bmtd") && !ns.contains("bmtt"), "{ns}");
}
