//! `sluice check` end to end: every example passes, a broken file prints
//! `FILE:LINE:COL: key.path: ...` lines and exits 1.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[test]
fn every_example_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = sluice().args(["check", "-c"]).arg(&p).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("ok"), "{stdout}");
            assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} examples");
}

#[test]
fn broken_file_lists_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"[[l4_service]]
name = "web"
vip = "10.99.255.300"
port = 80
method = "dr"
interface = "lb0"
persistence = "30"

[[l4_service.real]]
address = "10.99.0.11"
weight = 70000
"#,
    )
    .unwrap();
    let out = sluice().args(["check", "-c"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    assert!(
        err.contains(&format!("{file}:3:7: l4_service[0].vip:")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:7:15: l4_service[0].persistence:")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:11:10: l4_service[0].real[0].weight:")),
        "{err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = sluice()
        .args(["check", "-c", "/nonexistent/sluice.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/sluice.toml"), "{err}");
}
