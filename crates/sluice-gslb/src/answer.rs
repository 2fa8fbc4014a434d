//! One query in, one response out (no I/O): the authoritative answers of
//! docs/GSLB.md, decided from the zone, the sites' health, the client and
//! a random value.
//!
//! - Not a query (QR set), or too short for a header: dropped.
//! - Unparseable, or not exactly one question, or a bad Client Subnet
//!   option: FORMERR (header only, the query's id).
//! - An opcode other than QUERY: NOTIMP. A class other than IN, a name
//!   outside the zone, or a zone transfer: REFUSED (sluice does no
//!   recursion, whatever RD says; RA is never set).
//! - EDNS version above 0: BADVERS.
//! - In the zone (AA set): a configured name answers its records (A and
//!   AAAA from its policy, or its CNAME); another type at an existing name
//!   is NODATA (NOERROR, no answer, the SOA in authority); a name that
//!   does not exist is NXDOMAIN with the SOA; an empty non-terminal
//!   (`eu` when only `api.eu` is configured) is NODATA.
//! - A response larger than the client's UDP limit (512 bytes without
//!   EDNS, else its advertised size capped at [`EDNS_UDP_PAYLOAD`]) goes
//!   out truncated (TC, question and OPT only); the client retries over TCP.
//! - EDNS Client Subnet (RFC 7871): the option's address drives the
//!   topology policy and is echoed with a scope: the matched rule's
//!   prefix length, the source length when no rule matched, 0 for names
//!   whose answer does not depend on the client.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::policy::{self, Choice, Family, HealthView};
use crate::spec::{AnswerSpec, PolicyKind, ZoneSpec};

/// The UDP payload size sluice advertises and the most it sends over UDP,
/// in bytes (the DNS Flag Day 2020 value: no IP fragmentation).
pub const EDNS_UDP_PAYLOAD: u16 = 1232;
/// Largest UDP response to a client without EDNS, in bytes (RFC 1035).
pub const PLAIN_UDP_PAYLOAD: usize = 512;
/// Largest DNS message over TCP, in bytes (the two-byte length prefix).
pub const MAX_TCP_MESSAGE: usize = 65_535;
/// Length of the DNS header, in bytes.
pub const HEADER_LEN: usize = 12;
/// SOA refresh, in seconds (only secondaries use it; sluice has none).
pub const SOA_REFRESH: i32 = 3600;
/// SOA retry, in seconds.
pub const SOA_RETRY: i32 = 600;
/// SOA expire, in seconds.
pub const SOA_EXPIRE: i32 = 86_400;

/// How the query came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: responses are bounded by the client's payload size.
    Udp,
    /// TCP: up to [`MAX_TCP_MESSAGE`].
    Tcp,
}

/// What happened to one query (for the counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The response to send; `None`: drop the query.
    pub response: Option<Vec<u8>>,
    /// The response code sent (`None` when dropped).
    pub rcode: Option<ResponseCode>,
    /// The sites whose addresses were answered.
    pub sites: Vec<usize>,
    /// True if the response was truncated (TC).
    pub truncated: bool,
}

impl Outcome {
    fn drop() -> Self {
        Self {
            response: None,
            rcode: None,
            sites: Vec::new(),
            truncated: false,
        }
    }
}

/// A zone name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// Not a DNS name.
    #[error("{what} {name:?} is not a DNS name: {reason}")]
    Name {
        /// Which name (`"apex"`, `"name server"`, ...).
        what: &'static str,
        /// The text.
        name: String,
        /// The parser's reason.
        reason: String,
    },
    /// A site index out of range.
    #[error("name {0:?} refers to a site that does not exist")]
    Site(String),
}

/// A zone ready to answer: the spec with its names parsed and indexed.
#[derive(Debug)]
pub struct Zone {
    spec: ZoneSpec,
    apex_key: String,
    /// Lower-case absolute name without the final dot → index in spec.names.
    names: HashMap<String, usize>,
    /// Empty non-terminals (lower case, no final dot).
    ents: HashSet<String>,
    /// Absolute name of each spec name.
    fqdns: Vec<Name>,
    /// Parsed CNAME targets, per spec name.
    cnames: Vec<Option<Name>>,
    soa: Record,
    ns: Vec<Record>,
}

fn parse_name(what: &'static str, s: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).map_err(|e| ZoneError::Name {
        what,
        name: s.to_owned(),
        reason: e.to_string(),
    })
}

impl Zone {
    /// Indexes `spec`.
    pub fn new(spec: ZoneSpec) -> Result<Self, ZoneError> {
        let apex_key = spec.apex.trim_end_matches('.').to_ascii_lowercase();
        let apex = parse_name("apex", &apex_key)?;
        let mut names = HashMap::new();
        let mut ents = HashSet::new();
        let mut fqdns = Vec::with_capacity(spec.names.len());
        let mut cnames = Vec::with_capacity(spec.names.len());
        for (i, n) in spec.names.iter().enumerate() {
            let rel = n.name.to_ascii_lowercase();
            let key = if rel.is_empty() {
                apex_key.clone()
            } else {
                format!("{rel}.{apex_key}")
            };
            fqdns.push(parse_name("name", &key)?);
            // Every proper suffix of the relative name is an empty
            // non-terminal (unless configured itself; checked at lookup).
            let mut rest = rel.as_str();
            while let Some((_, tail)) = rest.split_once('.') {
                ents.insert(format!("{tail}.{apex_key}"));
                rest = tail;
            }
            names.insert(key, i);
            cnames.push(match &n.answer {
                AnswerSpec::Cname(t) => Some(parse_name("cname", t)?),
                AnswerSpec::Sites(p) => {
                    let bad = p
                        .sites
                        .iter()
                        .chain(p.topology.iter().flat_map(|r| r.sites.iter()))
                        .any(|&s| s >= spec.sites.len());
                    if bad {
                        return Err(ZoneError::Site(n.name.clone()));
                    }
                    None
                }
            });
        }
        let mname = match spec.nameservers.first() {
            Some(ns) => parse_name("name server", ns)?,
            None => apex.clone(),
        };
        let rname = parse_name("hostmaster", &spec.hostmaster)?;
        let soa = Record::from_rdata(
            apex.clone(),
            spec.zone_ttl,
            RData::SOA(SOA::new(
                mname,
                rname,
                spec.serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                spec.negative_ttl,
            )),
        );
        let mut ns = Vec::new();
        for n in &spec.nameservers {
            ns.push(Record::from_rdata(
                apex.clone(),
                spec.zone_ttl,
                RData::NS(NS(parse_name("name server", n)?)),
            ));
        }
        Ok(Self {
            spec,
            apex_key,
            names,
            ents,
            fqdns,
            cnames,
            soa,
            ns,
        })
    }

    /// The zone's spec.
    pub fn spec(&self) -> &ZoneSpec {
        &self.spec
    }

    /// The absolute name of spec name `i` (for display).
    pub fn fqdn(&self, i: usize) -> Option<&Name> {
        self.fqdns.get(i)
    }

    /// The addresses name `i` answers for a client at `client`, for one
    /// family (what `sluice ctl gslb --client` shows).
    pub fn choose(
        &self,
        i: usize,
        health: &impl HealthView,
        family: Family,
        client: IpAddr,
        random: u64,
    ) -> Option<Choice> {
        match &self.spec.names.get(i)?.answer {
            AnswerSpec::Sites(p) => Some(policy::choose(
                p,
                &self.spec.sites,
                health,
                family,
                client,
                random,
            )),
            AnswerSpec::Cname(_) => None,
        }
    }

    /// The response to one query from `src` (see the module docs). `slip`
    /// forces a truncated response (the rate limiter's slip).
    pub fn respond(
        &self,
        health: &impl HealthView,
        query: &[u8],
        src: IpAddr,
        transport: Transport,
        slip: bool,
        random: u64,
    ) -> Outcome {
        if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
            return Outcome::drop();
        }
        if !slip && let Some(out) = self.fast(health, query, src, transport, random) {
            return out;
        }
        self.respond_general(health, query, src, transport, slip, random)
    }

    /// The fast path of the common query (module `fast`), or `None` for
    /// anything else.
    fn fast(
        &self,
        health: &impl HealthView,
        query: &[u8],
        src: IpAddr,
        transport: Transport,
        random: u64,
    ) -> Option<Outcome> {
        let q = fast::parse(query)?;
        let &i = self.names.get(q.key.as_str())?;
        let AnswerSpec::Sites(p) = &self.spec.names[i].answer else {
            return None;
        };
        let family = if q.qtype == fast::TYPE_A {
            Family::V4
        } else {
            Family::V6
        };
        let choice = policy::choose(p, &self.spec.sites, health, family, src, random);
        if choice.addresses.is_empty() {
            return None; // NODATA: the general path adds the SOA
        }
        let limit = match (transport, q.edns_payload) {
            (Transport::Tcp, _) => MAX_TCP_MESSAGE,
            (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
            (Transport::Udp, Some(n)) => usize::from(n.clamp(512, EDNS_UDP_PAYLOAD)),
        };
        let bytes = fast::encode(query, &q, self.spec.names[i].ttl, &choice.addresses, limit)?;
        let mut sites: Vec<usize> = Vec::new();
        for (s, _) in &choice.addresses {
            if !sites.contains(s) {
                sites.push(*s);
            }
        }
        Some(Outcome {
            response: Some(bytes),
            rcode: Some(ResponseCode::NoError),
            sites,
            truncated: false,
        })
    }

    /// Every query, through hickory-proto's message model.
    fn respond_general(
        &self,
        health: &impl HealthView,
        query: &[u8],
        src: IpAddr,
        transport: Transport,
        slip: bool,
        random: u64,
    ) -> Outcome {
        let req = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => return header_only(query, ResponseCode::FormErr),
        };
        let mut out = Outcome {
            response: None,
            rcode: None,
            sites: Vec::new(),
            truncated: false,
        };
        let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        resp.metadata = Metadata::response_from_request(&req.metadata);
        resp.metadata.recursion_available = false;
        resp.metadata.authentic_data = false;
        if req.metadata.op_code != OpCode::Query {
            return finish(resp, ResponseCode::NotImp, None, transport, slip, out);
        }
        // EDNS: our OPT in the response, the client's size limit.
        let mut limit = PLAIN_UDP_PAYLOAD;
        let mut ecs: Option<ClientSubnet> = None;
        let mut edns_out = None;
        if let Some(e) = &req.edns {
            let mut mine = Edns::new();
            mine.set_max_payload(EDNS_UDP_PAYLOAD);
            mine.set_version(0);
            limit = usize::from(e.max_payload().clamp(512, EDNS_UDP_PAYLOAD));
            if e.version() > 0 {
                resp.queries = req.queries.clone();
                return finish(
                    resp,
                    ResponseCode::BADVERS,
                    Some(mine),
                    transport,
                    slip,
                    out,
                );
            }
            if let Some(EdnsOption::Subnet(cs)) = e.option(EdnsCode::Subnet) {
                let max = if cs.addr().is_ipv4() { 32 } else { 128 };
                if cs.source_prefix() > max || cs.scope_prefix() != 0 {
                    return header_only(query, ResponseCode::FormErr);
                }
                ecs = Some(*cs);
            }
            edns_out = Some(mine);
        }
        if transport == Transport::Tcp {
            limit = MAX_TCP_MESSAGE;
        }
        if req.queries.len() != 1 {
            return finish(resp, ResponseCode::FormErr, edns_out, transport, slip, out);
        }
        let q = req.queries[0].clone();
        resp.queries.push(q.clone());
        let qtype = q.query_type();
        if q.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return finish_limit(resp, ResponseCode::Refused, edns_out, limit, slip, out);
        }
        let mut key = q.name().to_ascii();
        key.make_ascii_lowercase();
        let key = key.trim_end_matches('.');
        let apex = self.apex_key.as_str();
        let in_zone = key == apex
            || (key.len() > apex.len()
                && key.ends_with(apex)
                && key.as_bytes()[key.len() - apex.len() - 1] == b'.');
        if !in_zone {
            return finish_limit(resp, ResponseCode::Refused, edns_out, limit, slip, out);
        }
        resp.metadata.authoritative = true;
        // The client for topology: the ECS address, else the resolver.
        let client = match ecs {
            Some(cs) if cs.source_prefix() > 0 => cs.addr(),
            _ => src,
        };
        let mut scope = 0u8;
        let owner = q.name().clone();
        let is_apex = key == apex;
        if is_apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            resp.answers.push(self.soa.clone());
        }
        if is_apex && matches!(qtype, RecordType::NS | RecordType::ANY) {
            resp.answers.extend(self.ns.iter().cloned());
        }
        let rcode = match self.names.get(key) {
            Some(&i) => {
                let n = &self.spec.names[i];
                match (&n.answer, &self.cnames[i]) {
                    (AnswerSpec::Cname(_), Some(target)) => {
                        resp.answers.push(Record::from_rdata(
                            owner.clone(),
                            n.ttl,
                            RData::CNAME(CNAME(target.clone())),
                        ));
                        // Follow a target in this zone, one step.
                        let mut t = target.to_ascii();
                        t.make_ascii_lowercase();
                        if qtype != RecordType::CNAME
                            && let Some(&j) = self.names.get(t.trim_end_matches('.'))
                        {
                            scope = scope.max(self.addresses(
                                j, target, qtype, health, client, ecs, random, &mut resp, &mut out,
                            ));
                        }
                    }
                    _ => {
                        scope = self.addresses(
                            i, &owner, qtype, health, client, ecs, random, &mut resp, &mut out,
                        );
                    }
                }
                ResponseCode::NoError
            }
            None if is_apex || self.ents.contains(key) => ResponseCode::NoError,
            None => ResponseCode::NXDomain,
        };
        if resp.answers.is_empty() {
            // NODATA or NXDOMAIN: the SOA tells resolvers how long to
            // cache it (RFC 2308: the lesser of its TTL and minimum).
            let mut soa = self.soa.clone();
            soa.ttl = self.spec.zone_ttl.min(self.spec.negative_ttl);
            resp.authorities.push(soa);
        }
        if let (Some(e), Some(cs)) = (edns_out.as_mut(), ecs) {
            let scope = if cs.source_prefix() == 0 { 0 } else { scope };
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                cs.addr(),
                cs.source_prefix(),
                scope,
            )));
        }
        finish_limit(resp, rcode, edns_out, limit, slip, out)
    }

    /// Adds name `i`'s address records for `qtype` under `owner`;
    /// returns the ECS scope of the answer.
    #[allow(clippy::too_many_arguments)]
    fn addresses(
        &self,
        i: usize,
        owner: &Name,
        qtype: RecordType,
        health: &impl HealthView,
        client: IpAddr,
        ecs: Option<ClientSubnet>,
        random: u64,
        resp: &mut Message,
        out: &mut Outcome,
    ) -> u8 {
        let Some(n) = self.spec.names.get(i) else {
            return 0;
        };
        let AnswerSpec::Sites(p) = &n.answer else {
            return 0;
        };
        let families: &[Family] = match qtype {
            RecordType::A => &[Family::V4],
            RecordType::AAAA => &[Family::V6],
            RecordType::ANY => &[Family::V4, Family::V6],
            _ => &[],
        };
        let mut scope = 0;
        for &f in families {
            let c = policy::choose(p, &self.spec.sites, health, f, client, random);
            if p.kind == PolicyKind::Topology {
                let s = match (c.matched_prefix, ecs) {
                    (Some(len), _) => len,
                    (None, Some(cs)) => cs.source_prefix(),
                    (None, None) => 0,
                };
                scope = scope.max(s);
            }
            for (site, a) in c.addresses {
                if !out.sites.contains(&site) {
                    out.sites.push(site);
                }
                let rdata = match a {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                resp.answers
                    .push(Record::from_rdata(owner.clone(), n.ttl, rdata));
            }
        }
        scope
    }
}

/// A header-only response (FORMERR for what does not parse): the query's
/// id, opcode and RD; no sections.
fn header_only(query: &[u8], rcode: ResponseCode) -> Outcome {
    let mut h = [0u8; HEADER_LEN];
    h[0] = query[0];
    h[1] = query[1];
    // QR, the query's opcode, RD.
    h[2] = 0x80 | (query[2] & 0x79);
    h[3] = (u16::from(rcode) & 0x0f) as u8;
    Outcome {
        response: Some(h.to_vec()),
        rcode: Some(rcode),
        sites: Vec::new(),
        truncated: false,
    }
}

fn finish(
    resp: Message,
    rcode: ResponseCode,
    edns: Option<Edns>,
    transport: Transport,
    slip: bool,
    out: Outcome,
) -> Outcome {
    let limit = match transport {
        Transport::Udp => PLAIN_UDP_PAYLOAD,
        Transport::Tcp => MAX_TCP_MESSAGE,
    };
    finish_limit(resp, rcode, edns, limit, slip, out)
}

/// Sets the code and OPT, encodes, truncates past `limit`.
fn finish_limit(
    mut resp: Message,
    rcode: ResponseCode,
    edns: Option<Edns>,
    limit: usize,
    slip: bool,
    mut out: Outcome,
) -> Outcome {
    resp.metadata.response_code = rcode;
    if let Some(e) = edns {
        resp.set_edns(e);
    }
    out.rcode = Some(rcode);
    let bytes = match resp.to_vec() {
        Ok(b) if b.len() <= limit && !slip => b,
        _ => {
            out.truncated = true;
            out.sites.clear();
            match resp.truncate().to_vec() {
                Ok(b) => b,
                Err(_) => {
                    out.response = None;
                    out.rcode = None;
                    return out;
                }
            }
        }
    };
    out.response = Some(bytes);
    out
}

mod fast;

#[cfg(test)]
mod tests;
