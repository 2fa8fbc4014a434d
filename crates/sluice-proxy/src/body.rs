//! Message bodies: the body type both sides of hyper's path use, and the
//! chunked-coding decoder (RFC 9112 section 7.1) shared by the fast path
//! (which relays chunked responses as they are and must know where they
//! end) and the raw head scanner of hyper's path (which follows chunked
//! requests to find the next head).
//!
//! The decoder is strict where parsers are known to differ: every line of
//! the chunk framing ends in CRLF (a bare LF or CR is refused: hyper's
//! decoder refuses a bare LF after a chunk size but reads one in a
//! trailer as part of the next line, which would swallow the next
//! request), no control bytes in extensions or trailers, no folded
//! trailer lines, at most [`MAX_CHUNK_SIZE_DIGITS`] hex digits. What it refuses
//! ends the message as malformed, so a peer that reads the bytes another
//! way never gets them.

use std::ops::Range;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Body type on both sides of hyper's path.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Body errors: hyper's, or the proxy's own (a client body timeout).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A body of `bytes`.
pub(crate) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// Most hex digits of a chunk size: 16 fill a `u64` (hyper has the same
/// limit).
pub(crate) const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Where in a chunked body the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line; `digits` read so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or the line end.
    SizeWs {
        size: u64,
    },
    /// In a chunk extension.
    Ext {
        size: u64,
    },
    /// CR seen at the end of a size line.
    SizeCr {
        size: u64,
    },
    Data(u64),
    /// After chunk data: its CR.
    DataCr,
    /// After chunk data's CR: its LF.
    DataLf,
    /// At the start of a trailer line (or the empty line ending the body).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// CR seen in a trailer line; `empty`: the line had nothing else.
    TrailerCr {
        empty: bool,
    },
    Done,
}

/// Decodes a chunked body fed in pieces: finds where it ends and, on
/// request, where its data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkedDecoder(Chunk);

/// A chunked body that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadChunk;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self(Chunk::Size { size: 0, digits: 0 })
    }

    /// Feed body bytes; `Some(n)` when the body ends after `n` of them.
    /// With `spans`, the ranges of `data` that are chunk data (not framing)
    /// are appended to it.
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        mut spans: Option<&mut Vec<Range<usize>>>,
    ) -> Result<Option<usize>, BadChunk> {
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data(left) = self.0 {
                let n = usize::try_from(left).map_or(data.len() - i, |l| l.min(data.len() - i));
                if let Some(s) = spans.as_deref_mut() {
                    s.push(i..i + n);
                }
                i += n;
                let left = left - n as u64;
                self.0 = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            if self.0 == Chunk::Done {
                return Ok(Some(i));
            }
            let b = data[i];
            i += 1;
            self.0 = self.step(b)?;
            if self.0 == Chunk::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn step(&self, b: u8) -> Result<Chunk, BadChunk> {
        Ok(match self.0 {
            Chunk::Size { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= MAX_CHUNK_SIZE_DIGITS {
                        return Err(BadChunk);
                    }
                    Chunk::Size {
                        size: size << 4 | u64::from(hex(b)),
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(BadChunk),
                b' ' | b'\t' => Chunk::SizeWs { size },
                b';' => Chunk::Ext { size },
                b'\r' => Chunk::SizeCr { size },
                _ => return Err(BadChunk),
            },
            Chunk::SizeWs { size } => match b {
                b' ' | b'\t' => Chunk::SizeWs { size },
                b';' => Chunk::Ext { size },
                b'\r' => Chunk::SizeCr { size },
                _ => return Err(BadChunk),
            },
            Chunk::Ext { size } => match b {
                b'\r' => Chunk::SizeCr { size },
                _ if is_text(b) => Chunk::Ext { size },
                _ => return Err(BadChunk),
            },
            Chunk::SizeCr { size } => match b {
                b'\n' => Self::size_end(size),
                _ => return Err(BadChunk),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return Err(BadChunk),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return Err(BadChunk),
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::TrailerCr { empty: true },
                // A folded trailer line (obs-fold) or a control byte.
                b' ' | b'\t' => return Err(BadChunk),
                _ if is_text(b) => Chunk::Trailer,
                _ => return Err(BadChunk),
            },
            Chunk::Trailer => match b {
                b'\r' => Chunk::TrailerCr { empty: false },
                _ if is_text(b) => Chunk::Trailer,
                _ => return Err(BadChunk),
            },
            Chunk::TrailerCr { empty } => match b {
                b'\n' if empty => Chunk::Done,
                b'\n' => Chunk::TrailerStart,
                _ => return Err(BadChunk),
            },
            Chunk::Data(_) | Chunk::Done => self.0,
        })
    }

    fn size_end(size: u64) -> Chunk {
        if size == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data(size)
        }
    }
}

/// A byte allowed in extensions and trailer lines: visible, space, tab,
/// or obs-text (RFC 9110 section 5.5); no other control byte.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.wrapping_sub(b'A').wrapping_add(10),
    }
}

/// Fuzz oracle (see [`crate::fuzzing::chunked`]): the end the decoder
/// finds and the data it yields must not depend on read boundaries.
pub(crate) fn fuzz_chunked(data: &[u8], step: usize) {
    let mut spans = Vec::new();
    let whole = ChunkedDecoder::new().feed(data, Some(&mut spans));
    let whole_data: Vec<u8> = spans
        .iter()
        .flat_map(|r| data[r.clone()].to_vec())
        .collect();
    let mut c = ChunkedDecoder::new();
    let mut cut_data = Vec::new();
    let mut cut = Ok(None);
    let mut at = 0;
    for piece in data.chunks(step.max(1)) {
        let mut spans = Vec::new();
        let r = c.feed(piece, Some(&mut spans));
        for s in &spans {
            cut_data.extend_from_slice(&piece[s.clone()]);
        }
        match r {
            Ok(None) => at += piece.len(),
            Ok(Some(n)) => {
                cut = Ok(Some(at + n));
                break;
            }
            Err(e) => {
                cut = Err(e);
                break;
            }
        }
    }
    assert_eq!(whole, cut, "read boundaries changed where the body ends");
    if whole.is_ok() {
        assert_eq!(whole_data, cut_data, "read boundaries changed the data");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn end_and_data_are_found_across_reads() {
        let body = b"5;ext=1\r\nhello\r\n10 \r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        assert_eq!(ChunkedDecoder::new().feed(body, None), Ok(Some(end)));
        let mut c = ChunkedDecoder::new();
        let mut found = None;
        for (i, b) in body.iter().enumerate() {
            if let Some(n) = c.feed(std::slice::from_ref(b), None).unwrap() {
                found = Some(i + n);
                break;
            }
        }
        assert_eq!(found, Some(end));
        let mut spans = Vec::new();
        ChunkedDecoder::new().feed(body, Some(&mut spans)).unwrap();
        let data: Vec<u8> = spans
            .iter()
            .flat_map(|r| body[r.clone()].to_vec())
            .collect();
        assert_eq!(data, b"hello0123456789abcdef");
        assert_eq!(ChunkedDecoder::new().feed(b"0\r\n\r\n", None), Ok(Some(5)));
        assert_eq!(ChunkedDecoder::new().feed(b"5\r\nhel", None), Ok(None));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"2\r\nabX",
            b"2\r\nab\r\r\n",
            b"11111111111111111\r\n",
            b"5 5\r\n",
            b"5\rx",
            b"5;a\x00b\r\n",
            b"5;a\rb\r\n",
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\nX: a\x01\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"1\na\r\n0\r\n\r\n",
            b"1\r\na\n0\r\n\r\n",
            b"1\r\na\r\n0\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n\n",
            b"1\na\r\n0\r\n\r\n",
            b"1\r\na\n0\r\n\r\n",
            b"1\r\na\r\n0\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(
                ChunkedDecoder::new().feed(bad, None),
                Err(BadChunk),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
