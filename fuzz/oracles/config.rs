//! Oracle of the `config` fuzz target, shared with the replay test
//! `crates/sluice-config/tests/fuzz_replay.rs` (included there by path, so
//! the fuzzer and `cargo test` judge an input by the very same code).
//!
//! The input is read as UTF-8 (invalid sequences replaced, as a caller that
//! reads a file lossily would) and given to [`sluice_config::parse`], which
//! must never panic. When it rejects the text, there is at least one
//! diagnostic, each names the file it was given, points at a line:col that
//! lies inside the text, each is one line, and they come in file order.

/// The file name given to the parser; every diagnostic must echo it.
const FILE_NAME: &str = "fuzz.toml";

/// Runs every invariant on `data`; panics when one breaks.
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Err(diagnostics) = sluice_config::parse(FILE_NAME, &text) else {
        return;
    };
    assert!(!diagnostics.is_empty(), "rejected without a diagnostic");
    // Lines as the parser counts them: split at '\n' only (a '\r' before it
    // is a character of the line).
    let lines: Vec<usize> = text.split('\n').map(|l| l.chars().count()).collect();
    let mut previous = (0, 0);
    for d in diagnostics.iter() {
        assert_eq!(d.file, FILE_NAME, "{d}");
        assert!(
            (1..=lines.len()).contains(&d.line),
            "line {} outside 1..={}: {d}",
            d.line,
            lines.len()
        );
        // Column 1 is the first character; one past the last is where an
        // error at the end of a line (or of the file) points.
        let width = lines[d.line - 1];
        assert!(
            (1..=width + 1).contains(&d.col),
            "column {} outside 1..={} of line {}: {d}",
            d.col,
            width + 1,
            d.line
        );
        assert!(
            (d.line, d.col) >= previous,
            "diagnostics out of file order at {d}"
        );
        // One problem, one line: a key holding a newline is escaped.
        assert!(
            !d.to_string().contains('\n'),
            "a diagnostic spans lines: {d:?}"
        );
        previous = (d.line, d.col);
    }
}
