//! Replays a fuzz target's committed inputs in an ordinary `cargo test`
//! (stable, no libFuzzer): every file under `fuzz/corpus/<target>/` (the
//! seeds) and `fuzz/regressions/<target>/` (inputs that once broke an
//! invariant) goes through the target's oracle. Included by path from each
//! crate's `tests/fuzz_replay.rs`, so a regression input fails the plain
//! test suite too, not only `benches/fuzz.sh`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The cargo-fuzz project, from a crate's directory.
const FUZZ_DIR_FROM_CRATE: &str = "../../fuzz";

/// Runs `check` on every committed input of `target`; fails listing each
/// input whose check panicked.
pub(crate) fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join(FUZZ_DIR_FROM_CRATE);
    let seeds = inputs(&fuzz.join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "no seed corpus for {target} under {}",
        fuzz.display()
    );
    // A target may have no regression yet: its directory is then absent.
    let regressions = inputs(&fuzz.join("regressions").join(target));
    let mut failures = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            // Named from the fuzz directory: `regressions/<target>/<name>`.
            let name = path.strip_prefix(&fuzz).unwrap_or(path);
            failures.push(format!("fuzz/{}: {why}", name.display()));
        }
    }
    println!(
        "{target}: {} seeds, {} regressions replayed",
        seeds.len(),
        regressions.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} committed {target} inputs broke an invariant:\n{}",
        failures.len(),
        seeds.len() + regressions.len(),
        failures.join("\n")
    );
}

/// The input files of one directory, sorted; none when it does not exist.
/// Dot-files (`.gitkeep`) and `README*` are not inputs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.map(|e| e.path())
                .unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()))
        })
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.starts_with("README"))
        })
        .collect();
    files.sort();
    files
}
