//! `sluice lab bmt` end to end with a tiny matrix: the outputs exist, the
//! measured modes have real rows, and every mode that could not run is
//! listed as unavailable with a reason and has no row. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// Requests per repetition: tiny, the debug build is slow.
const REQUESTS: u64 = 300;
/// Modes asked for, and all must be measured: the baseline, `dr`, both
/// NAT modes and their peers, the kernel's NAT (`nft-dnat`, `nft-fullnat`).
const MODES: &[&str] = &["direct", "dr", "nat", "nft-dnat", "fullnat", "nft-fullnat"];

/// What one `sluice lab bmt` run left: its output and its two result files.
struct Bmt {
    /// The output directory (removed on drop).
    out: tempfile::TempDir,
    stdout: String,
    stderr: String,
    json: serde_json::Value,
    md: String,
}

/// Runs `sluice lab bmt ARGS --backend sluice` (with `--reps 1` unless ARGS
/// say otherwise) into a temporary directory; the run must succeed.
fn run_bmt(args: &[&str]) -> Bmt {
    let out = tempfile::tempdir().unwrap();
    let reps: &[&str] = if args.contains(&"--reps") {
        &[]
    } else {
        &["--reps", "1"]
    };
    let result = Command::new(SLUICE)
        .args(["lab", "bmt"])
        .args(args)
        .args(reps)
        .args(["--backend", "sluice", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(
        result.status.success(),
        "bmt failed ({}):\n{stdout}\n{stderr}",
        result.status
    );
    let json = serde_json::from_str(&std::fs::read_to_string(out.path().join("bmt.json")).unwrap())
        .unwrap();
    let md = std::fs::read_to_string(out.path().join("bmt.md")).unwrap();
    Bmt {
        out,
        stdout,
        stderr,
        json,
        md,
    }
}

#[test]
fn tiny_matrix_writes_table_json_and_charts_without_fake_rows() {
    let Bmt {
        out,
        stdout,
        stderr,
        json,
        md,
    } = run_bmt(&[
        "--modes",
        &MODES.join(","),
        "--concurrency",
        "10",
        "--requests",
        &REQUESTS.to_string(),
    ]);
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
    // The baseline, L4 dr and the NAT modes exist and must be measured for
    // real (nat with the reals routing the client via the LB, fullnat
    // from a local address added to the LB; both put back afterwards).
    // The lab is a DSR lab, whose reals could answer the client directly:
    // a fullnat row whose connections were not from the local address
    // would have no 2xx (the client refuses answers from a real's address).
    assert!(MODES.iter().all(|m| measured.contains(m)), "{json}");
    for c in cells {
        let s = &c["samples"][0];
        assert_eq!(s["ok"].as_u64().unwrap(), REQUESTS, "{c}");
        assert!(c["requests_per_sec"].as_f64().unwrap() > 0.0, "{c}");
        assert_eq!(c["file_size_bytes"], 5120);
        let mode = c["mode"].as_str().unwrap();
        let row = format!("| {mode} | – | 10 | {REQUESTS} | 5KiB | ");
        assert!(md.contains(&row), "no row {row:?} in\n{md}");
    }
    // An L4 mode's CPU figure is the XDP program's run time, and it is not
    // zero.
    for l4 in ["dr", "nat", "fullnat"] {
        let c = cells.iter().find(|c| c["mode"] == l4).unwrap();
        assert_eq!(c["cpu_source"], "bpf");
        assert!(c["lb_cpu_us_per_req"].as_f64().unwrap() > 0.0, "{c}");
    }
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
    assert_labs_gone(&stderr);
}

/// Asserts that the labs a bmt run reported ("... lab LABEL up in ...") have
/// no namespace left. By label, not by prefix: the tests run in parallel.
fn assert_labs_gone(stderr: &str) {
    let labels: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once(" up in ")?.0.split_whitespace().last())
        .collect();
    assert!(
        !labels.is_empty() && labels.iter().all(|l| l.starts_with("bmt")),
        "no lab reported: {labels:?}\n{stderr}"
    );
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    for label in labels {
        assert!(!ns.contains(label), "lab {label} left behind: {ns}");
    }
}

/// Whether `program` is an executable file in `PATH`.
fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The `mode tcp` pair under keep-alive load, with the wrk cross-check:
/// sluice's byte relay is measured for real, compared with HAProxy `mode
/// tcp` (not `mode http`) at equal threads, and p50 is reported. The two
/// run side by side on their own ports and their repetitions alternate
/// (round 2 starts with the LB that went second in round 1), and each
/// round's req/s ratio is reported.
#[test]
fn tcp_modes_under_keepalive_compare_with_haproxy_tcp() {
    /// Requests per repetition: one connection per worker carries them all.
    const KA_REQUESTS: u64 = 500;
    let Bmt {
        stderr, json, md, ..
    } = run_bmt(&[
        "--modes",
        "proxy-tcp,haproxy-tcp",
        "--threads",
        "1",
        "--concurrency",
        "10",
        "--keepalive",
        "--requests",
        &KA_REQUESTS.to_string(),
        "--wrk",
        "1s",
        "--reps",
        "2",
    ]);
    assert_eq!(json["version"], 4);
    assert_eq!(json["plan"]["keep_alive"], true);
    assert!(md.contains("keep-alive mode"), "{md}");
    assert!(md.contains("| p50 (ms) | p99 (ms) |"), "{md}");

    let cells = json["cells"].as_array().unwrap();
    let find = |mode: &str| cells.iter().find(|c| c["mode"] == mode);
    // sluice's mode tcp relay must work.
    let tcp = find("proxy-tcp").unwrap_or_else(|| panic!("no proxy-tcp row: {json}"));
    let s = &tcp["samples"][0];
    assert_eq!(s["ok"].as_u64().unwrap(), KA_REQUESTS, "{tcp}");
    assert_eq!(tcp["cpu_source"], "process");
    assert!(tcp["lb_cpu_us_per_req"].as_f64().unwrap() > 0.0, "{tcp}");
    // The whole machine (client, reals, LB) costs more per request than the
    // LB alone, and its busy share is a share.
    let machine = tcp["machine_cpu_us_per_req"].as_f64().unwrap();
    assert!(
        machine > tcp["lb_cpu_us_per_req"].as_f64().unwrap(),
        "{tcp}"
    );
    let busy = tcp["machine_busy_pct"].as_f64().unwrap();
    // 10 ms accounting ticks on a short run: allow some overshoot.
    assert!(busy > 0.0 && busy <= 110.0, "{tcp}");
    let p50 = tcp["latency_p50_ms"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && p50 <= tcp["latency_p99_ms"].as_f64().unwrap(),
        "{tcp}"
    );
    assert!(md.contains("| proxy-tcp | 1 | 10 | "), "{md}");

    if in_path("haproxy") {
        let h = find("haproxy-tcp").unwrap_or_else(|| panic!("no haproxy-tcp row: {json}"));
        assert_eq!(h["samples"][0]["ok"].as_u64().unwrap(), KA_REQUESTS);
        // The relay is compared with HAProxy mode tcp at equal threads.
        assert_eq!(tcp["haproxy_peer"], "haproxy-tcp t1");
        let ratio = tcp["rps_vs_haproxy"].as_f64().unwrap();
        let expect =
            tcp["requests_per_sec"].as_f64().unwrap() / h["requests_per_sec"].as_f64().unwrap();
        assert!((ratio - expect).abs() < 1e-9, "{ratio} vs {expect}");

        // Side by side: two listeners, and the repetitions interleaved.
        let serving: BTreeSet<&str> = stderr
            .lines()
            .filter_map(|l| l.split_once(": serving at ").map(|(_, a)| a))
            .collect();
        assert_eq!(serving.len(), 2, "{stderr}");
        let at = |series: &str, rep: u32| {
            stderr
                .find(&format!("{series} c10 rep {rep}/2:"))
                .unwrap_or_else(|| panic!("no {series} rep {rep}: {stderr}"))
        };
        assert!(at("proxy-tcp t1", 1) < at("haproxy-tcp t1", 1), "{stderr}");
        assert!(
            at("haproxy-tcp t1", 1) < at("haproxy-tcp t1", 2),
            "{stderr}"
        );
        assert!(at("haproxy-tcp t1", 2) < at("proxy-tcp t1", 2), "{stderr}");
        // One ratio per round, of that round's two repetitions.
        let per_rep = tcp["rps_vs_haproxy_per_rep"].as_array().unwrap();
        assert_eq!(per_rep.len(), 2, "{tcp}");
        for (i, r) in per_rep.iter().enumerate() {
            let expect = tcp["samples"][i]["requests_per_sec"].as_f64().unwrap()
                / h["samples"][i]["requests_per_sec"].as_f64().unwrap();
            assert!((r.as_f64().unwrap() - expect).abs() < 1e-9, "{tcp}");
        }
        assert!(md.contains("| per round | ceiling |"), "{md}");
        // The ceiling, where the run was CPU-bound, follows from HAProxy's
        // figures and is above 1 (a free LB can only gain).
        if let Some(c) = tcp["rps_ceiling_vs_haproxy"].as_f64() {
            let t = h["machine_cpu_us_per_req"].as_f64().unwrap();
            let l = h["lb_cpu_us_per_req"].as_f64().unwrap();
            assert!((c - t / (t - l)).abs() < 1e-9 && c > 1.0, "{tcp}");
        }
        assert!(
            md.contains("## sluice vs HAProxy (issue 4 targets)"),
            "{md}"
        );
        assert!(
            md.contains("| proxy-tcp t1 | haproxy-tcp t1 | 10 | "),
            "{md}"
        );
    } else {
        let u = json["unavailable"].as_array().unwrap();
        assert!(u.iter().any(|u| u["mode"] == "haproxy-tcp"), "{json}");
    }

    let wrk = json["wrk"].as_array().unwrap();
    if in_path("wrk") {
        let w = wrk
            .iter()
            .find(|w| w["mode"] == "proxy-tcp")
            .unwrap_or_else(|| panic!("no wrk run for proxy-tcp: {json}"));
        assert!(w["requests"].as_u64().unwrap() > 0, "{w}");
        assert!(w["requests_per_sec"].as_f64().unwrap() > 0.0, "{w}");
        assert!(md.contains("## wrk cross-check"), "{md}");
    } else {
        assert!(wrk.is_empty());
        assert!(!json["wrk_skipped"].as_array().unwrap().is_empty());
    }

    assert_labs_gone(&stderr);
}

/// `--lb-cpu-pct`: the proxy runs in a CPU cgroup and its measured CPU use
/// stays within the budget (uncapped, the debug-build proxy under this load
/// takes several times more), the table says the run is LB-bound, and the
/// cgroup is gone afterwards.
#[test]
fn lb_cpu_cap_holds_the_proxy_to_its_budget() {
    /// The budget, in percent of one CPU.
    const PCT: f64 = 10.0;
    /// Throttling is enforced per 10 ms period; allow for the start and end
    /// of the measurement window.
    const SLACK: f64 = 1.3;
    const KA_REQUESTS: u64 = 1500;
    let Bmt {
        stderr, json, md, ..
    } = run_bmt(&[
        "--modes",
        "proxy",
        "--threads",
        "1",
        "--concurrency",
        "20",
        "--keepalive",
        "--requests",
        &KA_REQUESTS.to_string(),
        "--lb-cpu-pct",
        &format!("{PCT}"),
    ]);
    assert_eq!(json["plan"]["lb_cpu_pct"], 10, "{json}");
    assert!(
        md.contains("**LB-bound run**") && md.contains("10% of one CPU"),
        "{md}"
    );
    let cell = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["mode"] == "proxy")
        .unwrap_or_else(|| panic!("no proxy row: {json}"));
    assert_eq!(cell["samples"][0]["ok"].as_u64().unwrap(), KA_REQUESTS);
    // CPU seconds per wall-clock second = µs/req × req/s / 1e6.
    let s = &cell["samples"][0];
    let used =
        s["lb_cpu_us_per_req"].as_f64().unwrap() * s["requests_per_sec"].as_f64().unwrap() / 1e6;
    assert!(
        used > 0.0 && used <= PCT / 100.0 * SLACK,
        "the proxy used {:.1}% of a CPU under a {PCT}% cap: {cell}",
        used * 100.0
    );
    for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"] {
        if let Ok(dir) = std::fs::read_dir(root) {
            for e in dir.flatten() {
                let name = e.file_name();
                assert!(
                    !name.to_string_lossy().starts_with("sluice-bmt-"),
                    "cgroup {name:?} left in {root}"
                );
            }
        }
    }
    assert_labs_gone(&stderr);
}
