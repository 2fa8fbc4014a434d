//! The answers of docs/GSLB.md, from query bytes to response bytes.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;
use crate::policy::AllUp;
use crate::spec::{NameSpec, SitePolicy, SiteSpec, TopologyRule};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn zone() -> Zone {
    let sites = vec![
        SiteSpec {
            name: "eu".into(),
            addresses: vec![ip("192.0.2.1"), ip("2001:db8::1")],
        },
        SiteSpec {
            name: "us".into(),
            addresses: vec![ip("198.51.100.1")],
        },
    ];
    let failover = |kind, topology| {
        AnswerSpec::Sites(SitePolicy {
            kind,
            sites: vec![0, 1],
            weights: vec![1, 1],
            max_addresses: 1,
            topology,
        })
    };
    let big: Vec<IpAddr> = (0..16).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    let mut sites = sites;
    sites.push(SiteSpec {
        name: "big".into(),
        addresses: big,
    });
    Zone::new(ZoneSpec {
        apex: "gslb.example.com".into(),
        nameservers: vec!["ns1.example.com".into(), "ns2.example.com".into()],
        hostmaster: "hostmaster.example.com".into(),
        serial: 7,
        zone_ttl: 300,
        negative_ttl: 60,
        sites,
        names: vec![
            NameSpec {
                name: "www".into(),
                ttl: 30,
                answer: failover(PolicyKind::Failover, vec![]),
            },
            NameSpec {
                name: "api.eu".into(),
                ttl: 30,
                answer: failover(
                    PolicyKind::Topology,
                    vec![TopologyRule {
                        prefixes: vec![(ip("10.0.0.0"), 8)],
                        sites: vec![1],
                    }],
                ),
            },
            NameSpec {
                name: "alias".into(),
                ttl: 60,
                answer: AnswerSpec::Cname("www.gslb.example.com".into()),
            },
            NameSpec {
                name: "many".into(),
                ttl: 30,
                answer: AnswerSpec::Sites(SitePolicy {
                    kind: PolicyKind::Failover,
                    sites: vec![2],
                    weights: vec![1],
                    max_addresses: 16,
                    topology: vec![],
                }),
            },
        ],
    })
    .expect("test zone")
}

fn query(name: &str, t: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

fn ask(z: &Zone, q: &[u8], t: Transport) -> Message {
    let out = z.respond(&AllUp, q, ip("192.0.2.99"), t, false, 1);
    Message::from_vec(&out.response.expect("a response")).expect("decodes")
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_and_aaaa_with_aa_and_no_recursion() {
    let z = zone();
    let r = ask(
        &z,
        &query("www.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(!r.metadata.recursion_available);
    assert!(r.metadata.recursion_desired, "RD is copied");
    assert_eq!(addrs(&r), vec!["192.0.2.1"]);
    assert_eq!(r.answers[0].ttl, 30);
    // Case-insensitive, case preserved.
    let r = ask(
        &z,
        &query("WwW.GSLB.example.COM.", RecordType::AAAA, None),
        Transport::Udp,
    );
    assert_eq!(addrs(&r), vec!["2001:db8::1"]);
    assert_eq!(r.answers[0].name.to_ascii(), "WwW.GSLB.example.COM.");
}

#[test]
fn nxdomain_nodata_and_empty_non_terminals() {
    let z = zone();
    let r = ask(
        &z,
        &query("nope.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].ttl, 60);
    // NODATA: an existing name, another type.
    let r = ask(
        &z,
        &query("www.gslb.example.com.", RecordType::MX, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // The apex has no A record here: NODATA.
    let r = ask(
        &z,
        &query("gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // eu exists as the parent of api.eu: NODATA, not NXDOMAIN.
    let r = ask(
        &z,
        &query("eu.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // Below a configured name: NXDOMAIN.
    let r = ask(
        &z,
        &query("x.www.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn soa_and_ns_at_the_apex() {
    let z = zone();
    let r = ask(
        &z,
        &query("gslb.example.com.", RecordType::SOA, None),
        Transport::Udp,
    );
    assert_eq!(r.answers.len(), 1);
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("not a SOA: {r:?}");
    };
    assert_eq!(soa.serial, 7);
    assert_eq!(soa.minimum, 60);
    let r = ask(
        &z,
        &query("gslb.example.com.", RecordType::NS, None),
        Transport::Udp,
    );
    assert_eq!(r.answers.len(), 2);
    assert!(r.answers.iter().all(|a| a.record_type() == RecordType::NS));
}

#[test]
fn refused_outside_the_zone_and_for_transfers_and_chaos() {
    let z = zone();
    for (name, t) in [
        ("example.com.", RecordType::A),
        ("www.example.org.", RecordType::A),
        ("xgslb.example.com.", RecordType::A),
        ("gslb.example.com.", RecordType::AXFR),
    ] {
        let r = ask(&z, &query(name, t, None), Transport::Tcp);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative);
    }
    let mut m = Message::query();
    let mut q = Query::query(
        Name::from_ascii("version.bind.").expect("name"),
        RecordType::TXT,
    );
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    let r = ask(&z, &m.to_vec().expect("encode"), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn cname_and_its_target_in_the_zone() {
    let z = zone();
    let r = ask(
        &z,
        &query("alias.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(r.answers[0].ttl, 60);
    assert_eq!(addrs(&r), vec!["192.0.2.1"]);
    assert_eq!(r.answers[1].name.to_ascii(), "www.gslb.example.com.");
    let r = ask(
        &z,
        &query("alias.gslb.example.com.", RecordType::CNAME, None),
        Transport::Udp,
    );
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn edns_payload_and_truncation() {
    let z = zone();
    // 16 A records fit 512 bytes (about 300).
    let r = ask(
        &z,
        &query("many.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(addrs(&r).len(), 16);
    assert!(!r.metadata.truncation);
    assert!(r.edns.is_none(), "no OPT without one in the query");
    let mut e = Edns::new();
    e.set_max_payload(4096);
    let r = ask(
        &z,
        &query("many.gslb.example.com.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    let opt = r.edns.expect("OPT answered");
    assert_eq!(opt.max_payload(), EDNS_UDP_PAYLOAD);
    // Forced small: the slip.
    let out = z.respond(
        &AllUp,
        &query("many.gslb.example.com.", RecordType::A, None),
        ip("192.0.2.9"),
        Transport::Udp,
        true,
        1,
    );
    assert!(out.truncated);
    let r = Message::from_vec(&out.response.expect("response")).expect("decodes");
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    assert_eq!(r.queries.len(), 1);
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    // 60 IPv6 addresses: 60 * 28 bytes (compressed owner) > 1232.
    let many: Vec<IpAddr> = (0..60).map(|i| ip(&format!("2001:db8::{i:x}"))).collect();
    let z = Zone::new(ZoneSpec {
        apex: "z.test".into(),
        nameservers: vec!["ns.z.test".into()],
        hostmaster: "h.z.test".into(),
        serial: 1,
        zone_ttl: 60,
        negative_ttl: 60,
        sites: vec![SiteSpec {
            name: "a".into(),
            addresses: many,
        }],
        names: vec![NameSpec {
            name: "x".into(),
            ttl: 5,
            answer: AnswerSpec::Sites(SitePolicy {
                kind: PolicyKind::Failover,
                sites: vec![0],
                weights: vec![1],
                max_addresses: 60,
                topology: vec![],
            }),
        }],
    })
    .expect("zone");
    let mut e = Edns::new();
    e.set_max_payload(1232);
    let q = query("x.z.test.", RecordType::AAAA, Some(e));
    let r = ask(&z, &q, Transport::Udp);
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    let r = ask(&z, &q, Transport::Tcp);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
}

#[test]
fn badvers_for_edns_above_0() {
    let z = zone();
    let mut e = Edns::new();
    e.set_version(1);
    let r = ask(
        &z,
        &query("www.gslb.example.com.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    // 16 is BADVERS here (BADSIG shares the value in TSIG).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.answers.is_empty());
}

fn ecs(addr: &str, source: u8) -> Edns {
    let mut e = Edns::new();
    e.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(ip(addr), source, 0)));
    e
}

#[test]
fn client_subnet_drives_topology_and_is_echoed_with_a_scope() {
    let z = zone();
    // No ECS, resolver outside 10/8: fallback eu.
    let r = ask(
        &z,
        &query("api.eu.gslb.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(addrs(&r), vec!["192.0.2.1"]);
    // ECS in 10/8: us, scope 8.
    let q = query(
        "api.eu.gslb.example.com.",
        RecordType::A,
        Some(ecs("10.1.2.0", 24)),
    );
    let r = ask(&z, &q, Transport::Udp);
    assert_eq!(addrs(&r), vec!["198.51.100.1"]);
    let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
    else {
        panic!("no ECS echoed: {r:?}");
    };
    assert_eq!((cs.source_prefix(), cs.scope_prefix()), (24, 8));
    // ECS outside every rule: fallback, scope = source.
    let q = query(
        "api.eu.gslb.example.com.",
        RecordType::A,
        Some(ecs("172.16.0.0", 24)),
    );
    let r = ask(&z, &q, Transport::Udp);
    assert_eq!(addrs(&r), vec!["192.0.2.1"]);
    // A name that does not depend on the client: scope 0.
    let q = query(
        "www.gslb.example.com.",
        RecordType::A,
        Some(ecs("10.1.2.0", 24)),
    );
    let r = ask(&z, &q, Transport::Udp);
    let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
    else {
        panic!("no ECS echoed");
    };
    assert_eq!(cs.scope_prefix(), 0);
    // Source 0: the resolver's own address is used, scope 0.
    let q = query(
        "api.eu.gslb.example.com.",
        RecordType::A,
        Some(ecs("0.0.0.0", 0)),
    );
    let r = ask(&z, &q, Transport::Udp);
    assert_eq!(addrs(&r), vec!["192.0.2.1"]);
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    let z = zone();
    let good = query("www.gslb.example.com.", RecordType::A, None);
    // Too short, or a response: dropped.
    assert!(
        z.respond(
            &AllUp,
            &good[..5],
            ip("192.0.2.9"),
            Transport::Udp,
            false,
            1
        )
        .response
        .is_none()
    );
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert!(
        z.respond(&AllUp, &resp, ip("192.0.2.9"), Transport::Udp, false, 1)
            .response
            .is_none()
    );
    // Truncated question: FORMERR with the id.
    let out = z.respond(
        &AllUp,
        &good[..good.len() - 3],
        ip("192.0.2.9"),
        Transport::Udp,
        false,
        1,
    );
    let r = out.response.expect("FORMERR");
    assert_eq!(&r[..2], &good[..2]);
    assert_eq!(r[3] & 0x0f, 1);
    // Two questions: FORMERR.
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii("a.gslb.example.com.").expect("n"),
        RecordType::A,
    ));
    m.add_query(Query::query(
        Name::from_ascii("b.gslb.example.com.").expect("n"),
        RecordType::A,
    ));
    let r = ask(&z, &m.to_vec().expect("encode"), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // An ECS source prefix past 32: FORMERR.
    let q = query(
        "www.gslb.example.com.",
        RecordType::A,
        Some(ecs("10.0.0.0", 24)),
    );
    let pos = q.len() - 1 - 4; // the last option bytes: family(2) source(1) scope(1) addr(3)
    let mut bad = q.clone();
    bad[pos - 2] = 40;
    let out = z.respond(&AllUp, &bad, ip("192.0.2.9"), Transport::Udp, false, 1);
    assert_eq!(out.rcode, Some(ResponseCode::FormErr));
    // Header counts claiming 65535 questions: FORMERR, no panic.
    let mut lie = good.clone();
    lie[4] = 0xff;
    lie[5] = 0xff;
    let out = z.respond(&AllUp, &lie, ip("192.0.2.9"), Transport::Udp, false, 1);
    assert_eq!(out.rcode, Some(ResponseCode::FormErr));
}

#[test]
fn notimp_for_other_opcodes() {
    let z = zone();
    let mut q = query("www.gslb.example.com.", RecordType::A, None);
    q[2] = (q[2] & !0x78) | (4 << 3); // NOTIFY
    let out = z.respond(&AllUp, &q, ip("192.0.2.9"), Transport::Udp, false, 1);
    assert_eq!(out.rcode, Some(ResponseCode::NotImp));
}

proptest::proptest! {
    /// Any bytes: no panic, and a response is a well-formed DNS message
    /// with QR set.
    #[test]
    fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let z = zone();
        let out = z.respond(&AllUp, &bytes, ip("192.0.2.9"), Transport::Udp, false, 1);
        if let Some(r) = out.response {
            proptest::prop_assert!(r.len() >= HEADER_LEN);
            proptest::prop_assert!(r[2] & 0x80 != 0);
        }
    }

    /// A query with random bytes past a valid header and question.
    #[test]
    fn mutated_queries_never_panic(pos in 0usize..40, val in proptest::num::u8::ANY) {
        let z = zone();
        let mut q = query("api.eu.gslb.example.com.", RecordType::A, Some(ecs("10.1.2.0", 24)));
        let i = pos % q.len();
        q[i] = val;
        let _ = z.respond(&AllUp, &q, ip("192.0.2.9"), Transport::Udp, false, 1);
    }
}

/// The fast path and the general path give the same bytes, for every
/// query the fast path takes (and it does take them).
#[test]
fn the_fast_path_matches_the_general_path() {
    let z = zone();
    let mut taken = 0;
    for name in [
        "www.gslb.example.com.",
        "WWW.Gslb.Example.com.",
        "api.eu.gslb.example.com.",
        "many.gslb.example.com.",
        "alias.gslb.example.com.",
        "nope.gslb.example.com.",
        "gslb.example.com.",
    ] {
        for t in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            for edns in [None, Some(Edns::new()), Some(ecs("10.1.2.0", 24))] {
                let mut e = edns.clone();
                if let Some(e) = e.as_mut() {
                    e.set_max_payload(1400);
                }
                for rd in [false, true] {
                    let mut m = Message::query();
                    m.metadata.recursion_desired = rd;
                    m.metadata.checking_disabled = rd;
                    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
                    if let Some(e) = e.clone() {
                        m.set_edns(e);
                    }
                    let q = m.to_vec().expect("encode");
                    for tr in [Transport::Udp, Transport::Tcp] {
                        let src = ip("10.1.1.1");
                        let general = z.respond_general(&AllUp, &q, src, tr, false, 5);
                        if let Some(fast) = z.fast(&AllUp, &q, src, tr, 5) {
                            taken += 1;
                            assert_eq!(fast, general, "{name} {t} {e:?} rd={rd} {tr:?}");
                        }
                    }
                }
            }
        }
    }
    // www and WWW (A and AAAA), api.eu (A; its AAAA has eu's), many (A):
    // without ECS, both transports, both RD values.
    assert!(taken >= 40, "the fast path took {taken} queries");
}
