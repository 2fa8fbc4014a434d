//! The fast path of the query that dominates a GSLB server's load: one
//! A or AAAA question of class IN for a configured name, no EDNS or EDNS
//! version 0 without options, answered with at least one address that
//! fits the client's limit. It reads the query's bytes in place and writes
//! the response directly, without hickory-proto's message model; anything
//! else (ECS, CNAME, NODATA, NXDOMAIN, truncation, errors) returns `None`
//! and takes the general path. The two paths give byte-identical
//! responses (a differential test in `answer/tests.rs`).

use std::net::IpAddr;

use super::HEADER_LEN;

/// RR type A.
pub(super) const TYPE_A: u16 = 1;
/// RR type AAAA.
pub(super) const TYPE_AAAA: u16 = 28;
/// RR type OPT (EDNS).
const TYPE_OPT: u16 = 41;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Longest name on the wire, in bytes (RFC 1035).
const MAX_NAME_WIRE: usize = 255;

/// What the fast path needs from a query.
#[derive(Debug)]
pub(super) struct FastQuery {
    /// The name, lower case, labels joined by dots, no final dot.
    pub(super) key: String,
    /// A or AAAA.
    pub(super) qtype: u16,
    /// End of the question section (the question is `query[12..qend]`).
    qend: usize,
    /// The client's EDNS payload size, if it sent an OPT.
    pub(super) edns_payload: Option<u16>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// The query, if it is one the fast path answers.
pub(super) fn parse(q: &[u8]) -> Option<FastQuery> {
    if q.len() < HEADER_LEN {
        return None;
    }
    // QR 0, opcode QUERY (0); AA/TC ignored like the general path does.
    if q[2] & 0xf8 != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (u16_at(q, 4)?, u16_at(q, 6)?, u16_at(q, 8)?, u16_at(q, 10)?);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut key = String::with_capacity(64);
    let mut i = HEADER_LEN;
    loop {
        let len = usize::from(*q.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 || i - HEADER_LEN + len + 1 >= MAX_NAME_WIRE {
            return None; // pointers, extended labels, overlong names
        }
        let label = q.get(i + 1..i + 1 + len)?;
        if !label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None; // let the general path escape and compare it
        }
        if !key.is_empty() {
            key.push('.');
        }
        for c in label {
            key.push(char::from(c.to_ascii_lowercase()));
        }
        i += 1 + len;
    }
    let qtype = u16_at(q, i)?;
    let qclass = u16_at(q, i + 2)?;
    if !(qtype == TYPE_A || qtype == TYPE_AAAA) || qclass != CLASS_IN {
        return None;
    }
    let qend = i + 4;
    let edns_payload = if ar == 1 {
        // Exactly one OPT, root owner, version 0, no options, ending the message.
        let o = qend;
        if q.get(o) != Some(&0) || u16_at(q, o + 1)? != TYPE_OPT {
            return None;
        }
        let payload = u16_at(q, o + 3)?;
        let version = *q.get(o + 6)?;
        let rdlen = u16_at(q, o + 9)?;
        if version != 0 || rdlen != 0 || q.len() != o + 11 {
            return None;
        }
        Some(payload)
    } else {
        if q.len() != qend {
            return None;
        }
        None
    };
    Some(FastQuery {
        key,
        qtype,
        qend,
        edns_payload,
    })
}

/// The response: the query's header and question (case preserved), the
/// address records with the owner compressed to the question's name,
/// and our OPT if the client sent one. `None` past `limit` bytes.
pub(super) fn encode(
    q: &[u8],
    fq: &FastQuery,
    ttl: u32,
    addresses: &[(usize, IpAddr)],
    limit: usize,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(fq.qend + addresses.len() * 28 + 11);
    out.extend_from_slice(&q[..2]); // id
    // QR, opcode 0, AA, RD copied; RA 0, AD 0, CD copied (as
    // `Metadata::response_from_request`), rcode NOERROR.
    out.push(0x80 | 0x04 | (q[2] & 0x01));
    out.push(q[3] & 0x10);
    let an = u16::try_from(addresses.len()).ok()?;
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(fq.edns_payload.is_some()).to_be_bytes());
    out.extend_from_slice(&q[HEADER_LEN..fq.qend]);
    for (_, a) in addresses {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        match a {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&TYPE_A.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&TYPE_AAAA.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    if fq.edns_payload.is_some() {
        out.push(0); // root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&super::EDNS_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // ext rcode, version 0, flags
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    (out.len() <= limit).then_some(out)
}
