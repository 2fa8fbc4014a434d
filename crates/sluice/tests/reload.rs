//! `sluice reload` and SIGHUP under load: wrk through a `dr` VIP while the
//! configuration is reloaded 20 times (reals added and removed, weights
//! changed, a second service added and removed): no failed request, no
//! reset, the sessions of the unchanged real kept. An invalid file and a
//! change reload cannot apply change nothing. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_lab::Node;

/// Reloads under load.
const RELOADS: usize = 20;
/// wrk's run, long enough to span every reload (seconds).
const WRK_SECS: u32 = 15;

/// The file of reload number `i`: real .11 always, .12 and .13 in turn,
/// weights changing, and every third time a UDP service besides.
fn config(i: usize) -> String {
    let mut c = format!(
        "[global]\nadmin = \"{ADMIN}\"\n\n[[l4_service]]\nname = \"web\"\nvip = \"10.99.255.1\"\n\
         port = 80\nmethod = \"dr\"\nscheduler = \"wrr\"\ninterface = \"lb0\"\n\n\
         [[l4_service.real]]\naddress = \"10.99.0.11\"\nweight = {}\n",
        1 + i % 3
    );
    let other = if i.is_multiple_of(2) {
        "10.99.0.12"
    } else {
        "10.99.0.13"
    };
    c.push_str(&format!(
        "\n[[l4_service.real]]\naddress = \"{other}\"\nweight = {}\n",
        1 + i % 2
    ));
    if i % 3 == 1 {
        c.push_str(
            "\n[[l4_service]]\nname = \"dns\"\nvip = \"10.99.255.2\"\nport = 53\nprotocol = \"udp\"\n\
             method = \"dr\"\ninterface = \"lb0\"\n\n[[l4_service.real]]\naddress = \"10.99.0.13\"\n",
        );
    }
    c
}

fn generation(lab: &sluice_lab::Lab) -> u64 {
    let out = sluice_in_lb(lab, &["ctl", "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["generation"].as_u64().unwrap()
}

fn sessions_of(list: &serde_json::Value, real: &str) -> u64 {
    list.as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["reals"].as_array().unwrap().iter())
        .filter(|r| r["address"] == real)
        .map(|r| r["sessions"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn reloads_under_load_lose_nothing_and_bad_files_change_nothing() {
    let lab = l4_lab("reload", 3);
    let d = start_daemon(&lab, &config(0));
    assert_eq!(generation(&lab), 1);
    let load = {
        let ns = lab.netns(Node::Client).unwrap().to_owned();
        std::thread::spawn(move || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "wrk", "-t", "2", "-c", "20", "-d"])
                .arg(format!("{WRK_SECS}s"))
                .args(["--timeout", "2s", "http://10.99.255.1/"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = sessions_of(&ctl_list(&lab), "10.99.0.11");
    assert!(before > 0, "no sessions on the unchanged real under load");
    for i in 1..=RELOADS {
        std::fs::write(&d.config, config(i)).unwrap();
        if i.is_multiple_of(2) {
            let out = sluice_in_lb(&lab, &["reload"]);
            assert!(
                out.status.success(),
                "reload {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.pid() as i32),
                nix::sys::signal::Signal::SIGHUP,
            )
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while generation(&lab) != (i + 1) as u64 {
            assert!(Instant::now() < deadline, "reload {i} not applied");
            std::thread::sleep(Duration::from_millis(20));
        }
        let list = ctl_list(&lab);
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.contains(&"dns"), i % 3 == 1, "reload {i}: {names:?}");
        // The unchanged real's sessions stay across every reload.
        assert!(
            sessions_of(&list, "10.99.0.11") > 0,
            "reload {i} dropped the sessions"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let report = load.join().unwrap();
    assert!(wrk_requests(&report) > 0, "{report}");
    assert_eq!(
        wrk_errors(&report),
        0,
        "failed requests during reloads:\n{report}"
    );

    // An invalid file: refused with its position, nothing changes.
    let loaded = generation(&lab);
    std::fs::write(&d.config, "[[l4_service]]\nname = \"web\"\nport = 99999\n").unwrap();
    let out = sluice_in_lb(&lab, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sluice.toml:3:8:"), "{err}");
    assert_eq!(generation(&lab), loaded);
    // SIGHUP with it: logged, nothing changes.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(generation(&lab), loaded);
    assert!(read_all(&d.log).contains("SIGHUP: invalid configuration, nothing changed"));
    // A change reload cannot apply yet (the admin address): refused whole.
    std::fs::write(
        &d.config,
        config(RELOADS + 1).replace("127.0.0.1:9900", "127.0.0.1:9901"),
    )
    .unwrap();
    let out = sluice_in_lb(&lab, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("[global]") && err.contains("restart"), "{err}");
    assert_eq!(generation(&lab), loaded);
    let (status, _, _) = get(&lab, "10.99.255.1:80".parse().unwrap(), "/").unwrap();
    assert_eq!(status, 200);
}
