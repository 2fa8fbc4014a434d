//! Walking the spanned TOML tree: typed extraction of values, each failure
//! recorded as a diagnostic at the value's position, never aborting the walk.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, LineIndex};
use crate::duration::parse_duration;
use crate::model::Keyword;

/// A spanned TOML value.
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// Largest edit distance at which an unknown word gets a "did you mean".
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// Collects diagnostics while the tree is walked.
#[derive(Debug)]
pub(crate) struct Ctx<'s> {
    file: &'s str,
    index: LineIndex<'s>,
    /// (byte offset, diagnostic); sorted by offset at the end.
    found: Vec<(usize, Diagnostic)>,
}

/// A table being read, with its key path and the offset its problems of
/// "missing key" kind are reported at (its header).
#[derive(Debug, Clone)]
pub(crate) struct Tbl<'a, 'i> {
    pub(crate) table: &'a DeTable<'i>,
    pub(crate) path: String,
    pub(crate) at: usize,
}

// === impl Ctx ===

impl<'s> Ctx<'s> {
    pub(crate) fn new(file: &'s str, text: &'s str) -> Self {
        Self {
            file,
            index: LineIndex::new(text),
            found: Vec::new(),
        }
    }

    /// Records a problem at byte offset `at`.
    pub(crate) fn error(&mut self, at: usize, key_path: &str, message: impl Into<String>) {
        let (line, col) = self.index.position(at);
        let diagnostic = Diagnostic {
            file: self.file.to_owned(),
            line,
            col,
            key_path: key_path.to_owned(),
            message: message.into(),
        };
        self.found.push((at, diagnostic));
    }

    /// Line number of an offset, for "first defined at line N" messages.
    pub(crate) fn line_of(&self, at: usize) -> usize {
        self.index.position(at).0
    }

    /// Every diagnostic in file order (stable for equal positions).
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|(at, _)| *at);
        self.found.into_iter().map(|(_, d)| d).collect()
    }

    // --- generic field access ---

    /// Reads optional `key` of `t` with `conv`; `None` if absent or invalid
    /// (invalid values are reported by `conv`).
    pub(crate) fn opt<T>(
        &mut self,
        t: &Tbl<'_, '_>,
        key: &str,
        conv: impl FnOnce(&mut Self, &Val<'_>, &str) -> Option<T>,
    ) -> Option<T> {
        let value = t.get(key)?;
        conv(self, value, &t.key_path(key))
    }

    /// Like [`Ctx::opt`], and reports a missing key at the table's header.
    pub(crate) fn req<T>(
        &mut self,
        t: &Tbl<'_, '_>,
        key: &str,
        what: &str,
        conv: impl FnOnce(&mut Self, &Val<'_>, &str) -> Option<T>,
    ) -> Option<T> {
        if t.get(key).is_none() {
            self.error(
                t.at,
                &t.key_path(key),
                format!("missing required key \"{key}\", expected {what}"),
            );
            return None;
        }
        self.opt(t, key, conv)
    }

    /// Reports every key of `t` not in `known`, suggesting a near one.
    pub(crate) fn check_keys(&mut self, t: &Tbl<'_, '_>, known: &[&str]) {
        for (key, _) in t.table.iter() {
            let name: &str = key.get_ref();
            if !known.contains(&name) {
                let message = unknown_message("key", name, known.iter().copied());
                self.error(key.span().start, &t.key_path(name), message);
            }
        }
    }

    /// Reports a type mismatch: `expected a string, found integer`.
    pub(crate) fn wrong_type(&mut self, v: &Val<'_>, path: &str, expected: &str) {
        let found = type_name(v.get_ref());
        self.error(
            v.span().start,
            path,
            format!("expected {expected}, found {found}"),
        );
    }
}

// === Value converters ===
// Each takes (ctx, value, key path) and returns the typed value or reports.

pub(crate) fn string(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        _ => {
            cx.wrong_type(v, path, "a string");
            None
        }
    }
}

/// A string that must not be empty (names, paths).
pub(crate) fn non_empty(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    if s.trim().is_empty() {
        cx.error(
            v.span().start,
            path,
            "empty string, expected a non-empty string",
        );
        return None;
    }
    Some(s)
}

/// A network interface name as Linux accepts it.
pub(crate) fn interface(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    let valid = !s.is_empty()
        && s.len() <= crate::model::MAX_INTERFACE_NAME_LEN
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !valid {
        cx.error(
            v.span().start,
            path,
            format!(
                "\"{s}\" is not a valid interface name, expected 1 to {} characters without '/', ':' or spaces",
                crate::model::MAX_INTERFACE_NAME_LEN
            ),
        );
        return None;
    }
    Some(s)
}

pub(crate) fn boolean(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            cx.wrong_type(v, path, "a boolean (true or false)");
            None
        }
    }
}

/// Any TOML integer as i64.
fn integer(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.error(
                    v.span().start,
                    path,
                    "integer does not fit in 64 bits, expected a smaller number",
                );
                None
            }
        },
        _ => {
            cx.wrong_type(v, path, "an integer");
            None
        }
    }
}

/// An integer within `min..=max`.
pub(crate) fn int_in<T>(min: T, max: T) -> impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<T> + Copy
where
    T: Copy + Into<i64> + TryFrom<i64>,
{
    move |cx, v, path| {
        let n = integer(cx, v, path)?;
        let (lo, hi) = (min.into(), max.into());
        if n < lo || n > hi {
            cx.error(
                v.span().start,
                path,
                format!("{n} is out of range, expected {lo}..={hi}"),
            );
            return None;
        }
        T::try_from(n).ok()
    }
}

/// A duration string with a unit, greater than zero.
pub(crate) fn duration(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<Duration> {
    let text = match v.get_ref() {
        DeValue::String(s) => s,
        DeValue::Integer(_) | DeValue::Float(_) => {
            let found = type_name(v.get_ref());
            let span = v.span();
            cx.error(
                span.start,
                path,
                format!("found a bare {found}, expected a duration with a unit, e.g. \"2s\" or \"150ms\""),
            );
            return None;
        }
        _ => {
            cx.wrong_type(v, path, "a duration string, e.g. \"2s\" or \"150ms\"");
            return None;
        }
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            cx.error(
                v.span().start,
                path,
                format!("\"{text}\" is zero, expected a duration greater than zero"),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            cx.error(v.span().start, path, e.to_string());
            None
        }
    }
}

pub(crate) fn ip(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<IpAddr> {
    let s = string(cx, v, path)?;
    match s.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = if s.parse::<SocketAddr>().is_ok() {
                " (without a port)"
            } else {
                ""
            };
            cx.error(
                v.span().start,
                path,
                format!("\"{s}\" is not an IP address, expected an IPv4 or IPv6 address{hint}, e.g. \"10.99.0.11\" or \"fd00::11\""),
            );
            None
        }
    }
}

/// An ip:port to connect to: port 0 is rejected.
pub(crate) fn peer_socket(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<SocketAddr> {
    let addr = socket(cx, v, path)?;
    if addr.port() == 0 {
        cx.error(
            v.span().start,
            path,
            format!("\"{addr}\" has port 0, expected a port in 1..=65535"),
        );
        return None;
    }
    Some(addr)
}

/// An ip:port to listen on (port 0 lets the kernel choose, useful in tests).
pub(crate) fn socket(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<SocketAddr> {
    let s = string(cx, v, path)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(
                v.span().start,
                path,
                format!("\"{s}\" is not an ip:port address, expected e.g. \"10.99.0.11:80\" or \"[fd00::11]:80\""),
            );
            None
        }
    }
}

/// One of the spellings of keyword enum `K`; `what` names it in messages.
pub(crate) fn keyword<K: Keyword>(
    what: &'static str,
) -> impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<K> + Copy {
    move |cx, v, path| {
        let s = string(cx, v, path)?;
        if let Some((_, k)) = K::ALL.iter().find(|(text, _)| *text == s) {
            return Some(*k);
        }
        let message = unknown_message(what, &s, K::ALL.iter().map(|(text, _)| *text));
        cx.error(v.span().start, path, message);
        None
    }
}

/// Wraps `conv` to also return the value's offset (for later cross checks).
pub(crate) fn at<T>(
    conv: impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<T>,
) -> impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<(T, usize)> {
    move |cx, v, path| conv(cx, v, path).map(|x| (x, v.span().start))
}

/// An array whose elements are each read with `elem` (at `key[i]`).
/// Invalid elements are reported and skipped.
pub(crate) fn list<T>(
    elem: impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<T>,
) -> impl FnOnce(&mut Ctx<'_>, &Val<'_>, &str) -> Option<Vec<T>> {
    move |cx, v, path| {
        let DeValue::Array(items) = v.get_ref() else {
            cx.wrong_type(v, path, "an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(x) = elem(cx, item, &format!("{path}[{i}]")) {
                out.push(x);
            }
        }
        Some(out)
    }
}

/// Like [`list`], and reports an empty array.
pub(crate) fn non_empty_list<T>(
    elem: impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<T>,
    what: &'static str,
) -> impl FnOnce(&mut Ctx<'_>, &Val<'_>, &str) -> Option<Vec<T>> {
    move |cx, v, path| {
        if let DeValue::Array(items) = v.get_ref()
            && items.is_empty()
        {
            cx.error(
                v.span().start,
                path,
                format!("empty array, expected at least one {what}"),
            );
            return None;
        }
        list(elem)(cx, v, path)
    }
}

/// A port range `[lowest, highest]`: two ports (1..=65535), lowest
/// first.
pub(crate) fn port_range(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<(u16, u16)> {
    let ports = list(int_in(1u16, u16::MAX))(cx, v, path)?;
    match ports[..] {
        [lo, hi] if lo <= hi => Some((lo, hi)),
        _ => {
            cx.error(
                v.span().start,
                path,
                format!(
                    "{ports:?} is not a port range, expected [lowest, highest] with lowest ≤ highest"
                ),
            );
            None
        }
    }
}

// === impl Tbl ===

impl<'a, 'i> Tbl<'a, 'i> {
    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Val<'i>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// Offset of `key`'s value, or of the table header when absent.
    pub(crate) fn offset_of(&self, key: &str) -> usize {
        self.get(key).map_or(self.at, |v| v.span().start)
    }

    /// `path.key` (or `key` at the root).
    pub(crate) fn key_path(&self, key: &str) -> String {
        let key = path_key(key);
        if self.path.is_empty() {
            key.into_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// Views `v` as a table at `path`, or reports that it is not one.
pub(crate) fn as_table<'a, 'i>(
    cx: &mut Ctx<'_>,
    v: &'a Val<'i>,
    path: &str,
    expected: &str,
) -> Option<Tbl<'a, 'i>> {
    match v.get_ref() {
        DeValue::Table(table) => Some(Tbl {
            table,
            path: path.to_owned(),
            at: v.span().start,
        }),
        _ => {
            cx.wrong_type(v, path, expected);
            None
        }
    }
}

/// Views `key` of `t` as an array of tables (`[[key]]`), reporting any other
/// shape. Absent means empty.
pub(crate) fn tables<'a, 'i>(cx: &mut Ctx<'_>, t: &Tbl<'a, 'i>, key: &str) -> Vec<Tbl<'a, 'i>> {
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    let path = t.key_path(key);
    let DeValue::Array(items) = v.get_ref() else {
        cx.wrong_type(
            v,
            &path,
            &format!("an array of tables ([[{}]])", strip_indices(&path)),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let elem_path = format!("{path}[{i}]");
        if let Some(tbl) = as_table(cx, item, &elem_path, "a table") {
            out.push(tbl);
        }
    }
    out
}

// === Helpers ===

/// A key as it appears in a key path: as it is, unless it holds what
/// would break a path or a one-line diagnostic (control characters,
/// white space, dots, quotes, brackets); then quoted with escapes, as
/// TOML writes it.
pub(crate) fn path_key(key: &str) -> std::borrow::Cow<'_, str> {
    let bare = !key.is_empty()
        && !key
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '.' | '"' | '[' | ']'));
    if bare {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(format!("{key:?}"))
    }
}

/// Byte offset of the value at `path` (`a.b[2].c`) in `root`, or of the
/// deepest part of the path that exists (0: the start of the file).
pub(crate) fn offset_of_path(root: &DeTable<'_>, path: &str) -> usize {
    let mut table = root;
    let mut at = 0usize;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((_, v)) = table.iter().find(|(k, _)| k.get_ref() == key) else {
            return at;
        };
        let v = match (v.get_ref(), index) {
            (DeValue::Array(items), Some(i)) => match items.get(i) {
                Some(item) => item,
                None => return v.span().start,
            },
            _ => v,
        };
        at = v.span().start;
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return at,
        }
    }
    at
}

/// `l4_service[0].real` -> `l4_service.real`, the name used in a `[[...]]` header.
pub(crate) fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// TOML's name for the type of a value.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    v.type_str()
}

/// `unknown key "wieght", did you mean "weight"?` or the full list of choices.
pub(crate) fn unknown_message<'k>(
    what: &str,
    found: &str,
    choices: impl Iterator<Item = &'k str> + Clone,
) -> String {
    let closest = choices
        .clone()
        .map(|c| (edit_distance(found, c), c))
        .filter(|(d, _)| *d <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|(d, _)| *d);
    // Escaped: a key may hold a newline, and a diagnostic is one line.
    let found = found.escape_debug();
    match closest {
        Some((_, c)) => format!("unknown {what} \"{found}\", did you mean \"{c}\"?"),
        None => {
            let all: Vec<&str> = choices.collect();
            format!(
                "unknown {what} \"{found}\", expected one of: {}",
                all.join(", ")
            )
        }
    }
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("weight", "weight"), 0);
        assert_eq!(edit_distance("wieght", "weight"), 2);
        assert_eq!(edit_distance("weigh", "weight"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_message_suggests_or_lists() {
        let choices = ["tcp", "udp"];
        assert_eq!(
            unknown_message("protocol", "tpc", choices.iter().copied()),
            "unknown protocol \"tpc\", did you mean \"tcp\"?"
        );
        assert_eq!(
            unknown_message("protocol", "sctp-x", choices.iter().copied()),
            "unknown protocol \"sctp-x\", expected one of: tcp, udp"
        );
    }
}
