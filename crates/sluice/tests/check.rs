//! `sluice check` end to end: every example passes, a broken file prints
//! `FILE:LINE:COL: key.path: ...` lines and exits 1.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// A self-signed certificate and its key, as PEM files in `dir`.
fn cert_pair(dir: &std::path::Path, name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![format!("{name}.example.com")]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn every_example_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    // The examples name certificates where an operator keeps them; check
    // reads them, so they are made here and the paths swapped in.
    let pki = tempfile::tempdir().unwrap();
    for name in ["app", "default"] {
        cert_pair(pki.path(), name);
    }
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("/etc/sluice/tls/", &format!("{}/", pki.path().display()));
            let copy = pki.path().join(p.file_name().unwrap());
            std::fs::write(&copy, text).unwrap();
            let out = sluice().args(["check", "-c"]).arg(&copy).output().unwrap();
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

/// A file that parses but that `sluice run` refuses: `check` exits 1 with
/// `FILE:LINE:COL: PATH: ...` at the key at fault, and `run` refuses the
/// same file with the same line, before starting anything.
fn check_and_run_refuse(name: &str, toml: &str, at: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("{name}.toml"));
    std::fs::write(&p, toml).unwrap();
    let want = format!("{}:{at}", p.display());
    let out = sluice().args(["check", "-c"]).arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: check passed: {err}");
    assert!(
        err.contains(&want),
        "{name}: check said:\n{err}\nwanted {want}"
    );
    let out = sluice().args(["run", "-c"]).arg(&p).output().unwrap();
    let run_err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: run started");
    assert!(
        run_err.contains(&want),
        "{name}: run said:\n{run_err}\nwanted {want}"
    );
}

/// An L4 service on `lb0` with `extra` keys, named `name`.
fn l4(name: &str, extra: &str) -> String {
    format!(
        "[[l4_service]]\nname = \"{name}\"\nvip = \"10.99.255.{}\"\nport = 80\nmethod = \"dr\"\ninterface = \"lb0\"\n{extra}\n[[l4_service.real]]\naddress = \"10.99.0.11\"\n\n",
        name.len()
    )
}

#[test]
fn check_refuses_what_run_refuses_with_a_position() {
    let two_interfaces = l4("a", "") + &l4("bb", "").replace("\"lb0\"", "\"lb1\"");
    check_and_run_refuse(
        "interfaces",
        &two_interfaces,
        "16:13: l4_service[1].interface:",
    );
    let modes = l4("a", "") + &l4("bb", "xdp_mode = \"generic\"");
    check_and_run_refuse("xdp-modes", &modes, "17:12: l4_service[1].xdp_mode:");
    let tables = l4("a", "") + &l4("bb", "session_capacity = 4096");
    check_and_run_refuse(
        "session-tables",
        &tables,
        "17:20: l4_service[1].session_capacity:",
    );
    // Two `fullnat` services share a local address (one pool of ports)
    // with different port ranges.
    let fullnat = |name: &str, range: &str| {
        l4(
            name,
            &format!("local_addresses = [\"10.99.0.200\"]\nlocal_port_range = {range}\n"),
        )
        .replace("\"dr\"", "\"fullnat\"")
    };
    let shared = fullnat("a", "[1024, 32767]") + &fullnat("bb", "[2000, 3000]");
    check_and_run_refuse(
        "fullnat-shared-pool",
        &shared,
        "20:20: l4_service[1].local_port_range:",
    );
    // A weighted cycle longer than the ring (65537 entries by default).
    let wrr = "[[l4_service]]\nname = \"w\"\nvip = \"10.99.255.1\"\nport = 80\nmethod = \"dr\"\n\
               scheduler = \"wrr\"\ninterface = \"lb0\"\n\n\
               [[l4_service.real]]\naddress = \"10.99.0.11\"\nweight = 65535\n\n\
               [[l4_service.real]]\naddress = \"10.99.0.12\"\nweight = 65534\n";
    check_and_run_refuse("wrr-cycle", wrr, "9:1: l4_service[0].real:");
    // Sync beside the proxy only: no L4 session to carry.
    let sync = "[sync]\nenabled = true\nlisten = \"10.99.0.1:7946\"\npeers = [\"10.99.0.2:7946\"]\n\n\
                [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_backend = \"app\"\n\n\
                [[backend]]\nname = \"app\"\nmode = \"http\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n";
    check_and_run_refuse("sync-without-l4", sync, "1:1: sync:");
}

#[test]
fn check_reads_the_certificates_as_run_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_pair(dir.path(), "a");
    let (_, other_key) = cert_pair(dir.path(), "b");
    let fe = |cert: &str, key: &str| {
        format!(
            "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_backend = \"app\"\n\n\
             [[frontend.tls]]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
             [[backend]]\nname = \"app\"\nmode = \"http\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n"
        )
    };
    let at = "8:8: frontend[0].tls[0].cert:";
    check_and_run_refuse("missing-cert", &fe("/nonexistent/a.pem", &key), at);
    check_and_run_refuse("missing-key", &fe(&cert, "/nonexistent/a.key"), at);
    check_and_run_refuse("key-of-another-cert", &fe(&cert, &other_key), at);
    check_and_run_refuse("key-as-cert", &fe(&key, &key), at);
    // The matching pair passes.
    let p = dir.path().join("ok.toml");
    std::fs::write(&p, fe(&cert, &key)).unwrap();
    let out = sluice().args(["check", "-c"]).arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

/// Bad `[gslb]` zone data: `sluice check` exits 1 with a positioned line
/// per problem.
#[test]
fn gslb_zone_data_is_checked_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gslb.toml");
    std::fs::write(
        &p,
        r#"[gslb]
listen = ["127.0.0.1:5300"]
zone = "gslb.example.com"
nameservers = ["ns1.example.com"]

[[gslb.site]]
name = "eu"
addresses = ["192.0.2.1"]

[[gslb.name]]
name = "www"
policy = "weighted"
sites = ["eu", "us"]
weights = [1, 2, 3]
"#,
    )
    .unwrap();
    let out = sluice().args(["check", "-c"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:13:16: gslb.name[0].sites[1]: unknown site \"us\", did you mean \"eu\"?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:14:11: gslb.name[0].weights: 3 weight(s) for 2 site(s)"
        )),
        "{err}"
    );
}
