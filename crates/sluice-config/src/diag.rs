//! Diagnostics: what was wrong with a configuration, and where.

use std::fmt;

/// One problem found in a configuration file, with its source position.
///
/// Displays as `FILE:LINE:COL: key.path: message`. When the problem is not
/// tied to a key (a TOML syntax error, an empty file) the key path is empty
/// and the `key.path: ` part is left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {}{}", .file, .line, .col, KeyPrefix(.key_path), .message)]
pub struct Diagnostic {
    /// The display name of the file, as given to [`crate::parse`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (not bytes) from the start of the line.
    pub col: usize,
    /// Where in the model the problem is, e.g. `l4_service[0].real[2].weight`
    /// (array indices are 0-based). Empty for syntax errors.
    pub key_path: String,
    /// What was wrong, then what was expected.
    pub message: String,
}

/// Every problem found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the problems in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Renders `key.path: ` or nothing when the path is empty.
struct KeyPrefix<'a>(&'a str);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

/// Renders one diagnostic per line, without a trailing newline.
struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets in a text to 1-based line and column numbers.
#[derive(Debug)]
pub(crate) struct LineIndex<'s> {
    text: &'s str,
    /// Byte offset at which each line starts; the first is always 0.
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    /// Returns the 1-based (line, column) of a byte offset. Offsets past the
    /// end are clamped, and an offset inside a multi-byte character counts as
    /// that character, so any offset is accepted.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // `line_starts[0] == 0 <= offset`, so the partition point is at least 1.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let index = LineIndex::new("ab\nçd\n\nx");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(1), (1, 2));
        assert_eq!(index.position(2), (1, 3)); // the newline itself
        assert_eq!(index.position(3), (2, 1));
        assert_eq!(index.position(5), (2, 2)); // 'd' after the 2-byte 'ç'
        assert_eq!(index.position(4), (2, 1)); // inside 'ç'
        assert_eq!(index.position(7), (3, 1));
        assert_eq!(index.position(8), (4, 1));
        assert_eq!(index.position(1000), (4, 2));
    }

    #[test]
    fn display_formats() {
        let d = Diagnostic {
            file: "a.toml".into(),
            line: 3,
            col: 7,
            key_path: "global.threads".into(),
            message: "bad".into(),
        };
        assert_eq!(d.to_string(), "a.toml:3:7: global.threads: bad");
        let syntax = Diagnostic {
            key_path: String::new(),
            ..d.clone()
        };
        assert_eq!(syntax.to_string(), "a.toml:3:7: bad");
        let all = Diagnostics(vec![d, syntax]);
        assert_eq!(
            all.to_string(),
            "a.toml:3:7: global.threads: bad\na.toml:3:7: bad"
        );
    }
}
