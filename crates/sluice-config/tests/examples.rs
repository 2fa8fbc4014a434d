//! Every shipped example configuration must parse without a diagnostic.

use std::path::Path;

#[test]
fn every_example_parses_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            e.map(|e| e.path())
                .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
        })
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 5,
        "expected at least the five documented examples, found {entries:?}"
    );
    let mut failures = Vec::new();
    for path in &entries {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match sluice_config::parse(&name, &text) {
            Ok(config) => println!("{name}: {}", config.summary()),
            Err(diagnostics) => failures.push(diagnostics.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "examples with diagnostics:\n{}",
        failures.join("\n")
    );
}

#[test]
fn full_example_uses_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/full.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = match sluice_config::parse("full.toml", &text) {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(
        config.summary(),
        "ok: 1 L4 service (3 reals), 2 frontends, 2 backends (5 servers), 5 health checks, 1 VRRP instance"
    );
    assert_eq!(config.frontends[0].tls.len(), 2);
}

/// fullnat, VRRP and sync together (they once parsed without running;
/// the file stays as a parse test of their keys side by side).
#[test]
fn sections_not_run_yet_still_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/not-yet-run.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = match sluice_config::parse("not-yet-run.toml", &text) {
        Ok(c) => c,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(
        config.summary(),
        "ok: 1 L4 service (2 reals), 0 frontends, 0 backends (0 servers), 1 health check, 1 VRRP instance, state sync to 1 peer"
    );
    assert!(config.sync.enabled);
    assert_eq!(config.l4_services[0].local_addresses.len(), 2);
}

#[test]
fn every_toml_block_in_the_config_docs_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let Some(end) = body.find("```") else {
            panic!("unterminated ```toml block in CONFIG.md")
        };
        blocks.push(&body[..end]);
        rest = &body[end + 3..];
    }
    assert!(!blocks.is_empty(), "CONFIG.md has no ```toml example");
    for block in blocks {
        if let Err(d) = sluice_config::parse("CONFIG.md", block) {
            panic!("example in CONFIG.md does not parse:\n{d}\n---\n{block}");
        }
    }
}
