//! sluice's TOML configuration model and validation with file:line:col diagnostics.
//!
//! [`parse`] turns the text of a configuration file into a validated
//! [`Config`], or into [`Diagnostics`] listing *every* problem found, each
//! with its position and key path:
//!
//! ```text
//! sluice.toml:12:10: l4_service[0].real[1].weight: 70000 is out of range, expected 0..=65535
//! ```
//!
//! The crate never touches the filesystem: the caller reads the file and
//! passes its text and the name to show in diagnostics. The keys, defaults
//! and ranges are documented in `docs/CONFIG.md`.
//!
//! How it works: the text is parsed by `toml`'s spanned document parser
//! (which keeps byte offsets for every key and value), then walked by hand.
//! Each unknown key, wrong type or bad value is recorded and the walk goes
//! on, so one run reports everything; cross-section checks (names,
//! references, overlapping services) run at the end.
#![forbid(unsafe_code)]

mod build;
mod diag;
mod duration;
mod gslb;
mod model;
mod value;

pub use diag::{Diagnostic, Diagnostics};
pub use duration::{DurationError, format_duration, parse_duration};
pub use gslb::*;
pub use model::*;

use toml::de::DeTable;

/// Parses and validates a configuration.
///
/// `file_name` is only used in diagnostics. On failure every problem found
/// is returned, sorted in file order; TOML syntax errors are reported alone
/// (the document's shape is unknown past them, so checking it would only add
/// noise).
pub fn parse(file_name: &str, text: &str) -> Result<Config, Diagnostics> {
    let mut cx = value::Ctx::new(file_name, text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in &syntax_errors {
            let at = e.span().map_or(0, |s| s.start);
            // One line per diagnostic, whatever the parser's message holds.
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            cx.error(at, "", format!("TOML syntax error: {message}"));
        }
        return Err(Diagnostics(cx.finish()));
    }
    let config = build::build(&mut cx, root.get_ref());
    let found = cx.finish();
    if found.is_empty() {
        Ok(config)
    } else {
        Err(Diagnostics(found))
    }
}

/// A diagnostic for a problem that a check outside this crate found in a
/// configuration this crate accepted (a plane's rule, e.g. "one interface
/// per daemon"), positioned at `key_path` (e.g. `l4_service[1].interface`)
/// in `text` the way [`parse`] positions its own: at the key's value, or
/// at the nearest enclosing table that exists in the file.
pub fn locate(
    file_name: &str,
    text: &str,
    key_path: &str,
    message: impl Into<String>,
) -> Diagnostic {
    let index = diag::LineIndex::new(text);
    let (root, _) = DeTable::parse_recoverable(text);
    let at = value::offset_of_path(root.get_ref(), key_path);
    let (line, col) = index.position(at);
    Diagnostic {
        file: file_name.to_owned(),
        line,
        col,
        key_path: key_path.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
