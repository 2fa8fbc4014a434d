//! `sluice_toa`, the real server's TOA reader, run in the kernel with
//! `BPF_PROG_TEST_RUN`: segments with a TOA (IPv4 and IPv6, after other
//! options, an IPv6 client on an IPv4 connection), without one, with
//! malformed options, truncated frames and garbage. Every frame must come
//! back `XDP_PASS` and byte for byte unchanged, and the map must hold
//! exactly the connections whose segments carried a TOA. The map is then
//! pinned on a bpffs mounted for the test and read back through
//! `sluice_l4::toa::lookup`, as `sluice realserver toa --lookup` does.
//! Needs root (CAP_BPF, mount); without it the test fails saying so.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use sluice_l4::toa::{ToaReader, lookup, pin_path};
use sluice_l4::verdict;
use sluice_testkit::bpffs::Bpffs;
use sluice_testkit::frames::{v4, v6};
use sluice_wire::toa::{Toa, encode};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// The real (this host), the LB's local address (the peer the real sees)
/// and clients.
const REAL: [u8; 4] = [10, 0, 0, 9];
const LB: [u8; 4] = [10, 0, 0, 5];
const REAL6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const LB6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

/// Random garbage frames run through the program.
const GARBAGE_FRAMES: usize = 300;
/// Shortest garbage frame (bytes): an Ethernet header, the least
/// `BPF_PROG_TEST_RUN` runs an XDP program on.
const GARBAGE_MIN_LEN: usize = 14;
/// Longest garbage frame (bytes).
const GARBAGE_MAX_LEN: usize = 160;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn toa(client: &str) -> Vec<u8> {
    encode(&Toa::from_socket_addr(sa(client)))
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// A TCP header with `options` (padded by the caller to whole words; the
/// data offset says `doff_words` if given, else their length) and
/// `payload`; checksum 0 (XDP does not check it).
fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8], doff_words: Option<u8>) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1001u32.to_be_bytes());
    t[8..12].copy_from_slice(&2002u32.to_be_bytes());
    let words = doff_words.unwrap_or(((20 + options.len()) / 4) as u8);
    t[12] = words << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(options);
    t
}

/// Options before a TOA in a first ACK: NOP, NOP, timestamps (10 bytes).
fn timestamps() -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    o
}

struct Case {
    what: &'static str,
    frame: Vec<u8>,
}

/// Deterministic garbage (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn records_toa_and_passes_every_frame_unchanged() {
    let reader = ToaReader::load().unwrap_or_else(|e| {
        panic!("loading sluice_toa failed (this test needs root / CAP_BPF): {e}")
    });
    // The option walk's cost to the verifier (docs/REALSERVER.md records it).
    eprintln!(
        "sluice_toa: {:?} instructions verified",
        reader.verified_instructions().unwrap()
    );

    // (case, the connection it records: local, peer, client)
    let mut cases: Vec<Case> = Vec::new();
    let mut want: BTreeSet<(SocketAddr, SocketAddr, SocketAddr)> = BTreeSet::new();
    let mut recorded = |local: &str, peer: &str, client: &str| {
        want.insert((sa(local), sa(peer), sa(client)));
    };

    // --- segments with a TOA ---
    cases.push(Case {
        what: "IPv4 first ACK, TOA alone",
        frame: v4(
            LB,
            REAL,
            TCP,
            &tcp(50001, 80, ACK, &toa("198.51.100.7:40000"), None),
        ),
    });
    recorded("10.0.0.9:80", "10.0.0.5:50001", "198.51.100.7:40000");
    let mut opts = timestamps();
    opts.extend(toa("198.51.100.8:40001"));
    cases.push(Case {
        what: "IPv4 first ACK, TOA after NOP NOP timestamps",
        frame: v4(LB, REAL, TCP, &tcp(50002, 80, ACK, &opts, None)),
    });
    recorded("10.0.0.9:80", "10.0.0.5:50002", "198.51.100.8:40001");
    let mut seg = tcp(50002, 80, PSH_ACK, &toa("198.51.100.8:40001"), None);
    seg.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    cases.push(Case {
        what: "IPv4 first data segment, the same TOA again (one entry)",
        frame: v4(LB, REAL, TCP, &seg),
    });
    cases.push(Case {
        what: "IPv6 first ACK, IPv6 TOA",
        frame: v6(
            LB6,
            REAL6,
            TCP,
            &tcp(50003, 443, ACK, &toa("[2001:db8::7]:40002"), None),
        ),
    });
    recorded("[fd00::9]:443", "[fd00::5]:50003", "[2001:db8::7]:40002");
    cases.push(Case {
        what: "IPv4 connection, IPv6 client",
        frame: v4(
            LB,
            REAL,
            TCP,
            &tcp(50004, 80, ACK, &toa("[2001:db8::8]:40003"), None),
        ),
    });
    recorded("10.0.0.9:80", "10.0.0.5:50004", "[2001:db8::8]:40003");
    let mut opts = toa("198.51.100.9:40004");
    opts.extend(toa("198.51.100.10:40005"));
    cases.push(Case {
        what: "two TOAs: the first counts",
        frame: v4(LB, REAL, TCP, &tcp(50005, 80, ACK, &opts, None)),
    });
    recorded("10.0.0.9:80", "10.0.0.5:50005", "198.51.100.9:40004");
    let mut opts = vec![1u8; 32];
    opts.extend(toa("198.51.100.11:40006"));
    cases.push(Case {
        what: "TOA ending at byte 40 of the options",
        frame: v4(LB, REAL, TCP, &tcp(50006, 80, ACK, &opts, None)),
    });
    recorded("10.0.0.9:80", "10.0.0.5:50006", "198.51.100.11:40006");

    // --- segments without a (valid) TOA: nothing recorded ---
    cases.push(Case {
        what: "no options",
        frame: v4(LB, REAL, TCP, &tcp(50100, 80, ACK, &[], None)),
    });
    cases.push(Case {
        what: "other options only",
        frame: v4(LB, REAL, TCP, &tcp(50101, 80, ACK, &timestamps(), None)),
    });
    let mut opts = vec![254u8, 4, 0xf9, 0x89];
    opts.extend([1u8; 4]);
    cases.push(Case {
        what: "kind 254 of another length (RFC 6994 experiment)",
        frame: v4(LB, REAL, TCP, &tcp(50102, 80, ACK, &opts, None)),
    });
    let mut opts = vec![3u8, 0, 1, 1];
    opts.extend(toa("198.51.100.12:1"));
    cases.push(Case {
        what: "an option of length 0 before the TOA",
        frame: v4(LB, REAL, TCP, &tcp(50103, 80, ACK, &opts, None)),
    });
    let mut opts = vec![3u8, 1, 1, 1];
    opts.extend(toa("198.51.100.12:2"));
    cases.push(Case {
        what: "an option of length 1 before the TOA",
        frame: v4(LB, REAL, TCP, &tcp(50104, 80, ACK, &opts, None)),
    });
    let mut opts = vec![0u8, 1, 1, 1];
    opts.extend(toa("198.51.100.12:3"));
    cases.push(Case {
        what: "EOL before the TOA",
        frame: v4(LB, REAL, TCP, &tcp(50105, 80, ACK, &opts, None)),
    });
    let mut opts = toa("198.51.100.12:4");
    opts[1] = 12;
    cases.push(Case {
        what: "TOA whose length runs past the options",
        frame: v4(LB, REAL, TCP, &tcp(50106, 80, ACK, &opts, None)),
    });
    let mut frame = v4(
        LB,
        REAL,
        TCP,
        &tcp(50107, 80, ACK, &toa("[2001:db8::9]:5"), None),
    );
    frame.truncate(frame.len() - 6);
    cases.push(Case {
        what: "frame cut inside the TOA (data offset past the end)",
        frame,
    });
    cases.push(Case {
        what: "data offset below 5 words",
        frame: v4(
            LB,
            REAL,
            TCP,
            &tcp(50108, 80, ACK, &toa("198.51.100.12:6"), Some(4)),
        ),
    });
    cases.push(Case {
        what: "data offset of 15 words on a 28-byte header",
        frame: v4(
            LB,
            REAL,
            TCP,
            &tcp(50109, 80, ACK, &toa("198.51.100.12:7"), Some(15)),
        ),
    });
    let mut udp = vec![0u8; 8];
    udp.extend(toa("198.51.100.12:8"));
    cases.push(Case {
        what: "UDP (not TCP)",
        frame: v4(LB, REAL, UDP, &udp),
    });
    let mut later_fragment = v4(LB, REAL, TCP, &tcp(50110, 80, ACK, &toa("1.2.3.4:9"), None));
    later_fragment[14 + 6] = 0x00;
    later_fragment[14 + 7] = 0x10;
    cases.push(Case {
        what: "IPv4 fragment at offset 128 (no TCP header in it)",
        frame: later_fragment,
    });
    let mut ip_options = v4(
        LB,
        REAL,
        TCP,
        &tcp(50111, 80, ACK, &toa("1.2.3.4:10"), None),
    );
    ip_options[14] = 0x46;
    cases.push(Case {
        what: "IPv4 header with options (not read)",
        frame: ip_options,
    });
    let mut arp = vec![0xffu8; 6];
    arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend([0u8; 28]);
    cases.push(Case {
        what: "ARP",
        frame: arp,
    });
    // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet
    // header; the shortest it runs is one with nothing after it.
    let mut eth_only = vec![0u8; 12];
    eth_only.extend([0x08, 0x00]);
    cases.push(Case {
        what: "IPv4 EtherType, no IP header",
        frame: eth_only,
    });

    for c in &cases {
        let out = reader.test_run(&c.frame).unwrap();
        assert_eq!(out.verdict, verdict::PASS, "{}", c.what);
        assert_eq!(out.frame, c.frame, "{}: the frame was changed", c.what);
    }

    let mut rng = Rng(0x0005_eed0_f70a);
    let before = reader.entries().unwrap().len();
    for i in 0..GARBAGE_FRAMES {
        let len =
            GARBAGE_MIN_LEN + (rng.next() % (GARBAGE_MAX_LEN - GARBAGE_MIN_LEN) as u64) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them shaped as IPv4 TCP with garbage headers and
        // options, to reach the option walk.
        if i % 2 == 0 && len >= 54 {
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14] = 0x45;
            frame[14 + 6] &= 0xe0;
            frame[14 + 7] = 0;
            frame[14 + 9] = TCP;
        }
        let out = reader.test_run(&frame).unwrap();
        assert_eq!(
            out.verdict,
            verdict::PASS,
            "garbage frame {i}: {frame:02x?}"
        );
        assert_eq!(out.frame, frame, "garbage frame {i} was changed");
    }
    // Garbage can carry a well-formed TOA by chance; it must not have
    // touched the entries the cases made.
    let got: BTreeSet<_> = reader
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.local, e.peer, e.client))
        .collect();
    assert!(
        got.is_superset(&want),
        "recorded {got:#?}\nwanted {want:#?}"
    );
    assert!(reader.entries().unwrap().len() >= before);

    // A fresh reader, only the cases: exactly the wanted entries.
    let reader = ToaReader::load().unwrap();
    for c in &cases {
        assert_eq!(reader.test_run(&c.frame).unwrap().verdict, verdict::PASS);
    }
    let got: BTreeSet<_> = reader
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.local, e.peer, e.client))
        .collect();
    assert_eq!(got, want);
    let seen = reader.entries().unwrap();
    assert!(seen.iter().all(|e| e.last_seen_ns > 0));

    pinned_lookup(reader);
}

/// The map of `reader` pinned on a test bpffs and read by another handle,
/// as `sluice realserver toa --lookup` reads it; the pin goes with the
/// reader.
fn pinned_lookup(mut reader: ToaReader) {
    let fs = Bpffs::mount(&format!("toa-golden-{}", std::process::id())).unwrap();
    let dir = fs.path().join("sluice");
    let pin = pin_path(&dir, "veth-real").unwrap();
    reader.pin(&pin).unwrap();
    assert_eq!(reader.pinned_at(), Some(pin.as_path()));

    let got = lookup(&pin, sa("10.0.0.5:50001"), None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].client, sa("198.51.100.7:40000"));
    assert_eq!(got[0].local, sa("10.0.0.9:80"));
    let got = lookup(&pin, sa("[fd00::5]:50003"), Some(sa("[fd00::9]:443"))).unwrap();
    assert_eq!(got[0].client, sa("[2001:db8::7]:40002"));
    // A dual-stack socket's view of an IPv4 peer.
    let got = lookup(&pin, sa("[::ffff:10.0.0.5]:50004"), Some(sa("10.0.0.9:80"))).unwrap();
    assert_eq!(got[0].client, sa("[2001:db8::8]:40003"));
    // Unknown connections: empty, not an error.
    assert!(lookup(&pin, sa("10.0.0.5:50100"), None).unwrap().is_empty());
    assert!(
        lookup(&pin, sa("10.0.0.5:50001"), Some(sa("10.0.0.9:81")))
            .unwrap()
            .is_empty()
    );
    // A second reader cannot take the same pin.
    let mut other = ToaReader::load().unwrap();
    let err = other.pin(&pin).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    drop(other);
    assert!(
        pin.exists(),
        "the failed reader removed the first one's pin"
    );

    drop(reader);
    assert!(!pin.exists(), "the pin outlived its reader");
    assert!(!dir.exists(), "the pin directory the reader made is left");
    drop(fs);
}

/// Off bpffs the reader refuses to pin, saying why.
#[test]
fn pinning_off_bpffs_is_refused() {
    let mut reader = ToaReader::load().unwrap_or_else(|e| {
        panic!("loading sluice_toa failed (this test needs root / CAP_BPF): {e}")
    });
    let err = reader
        .pin(Path::new("/proc/sluice-toa-test/toa-eth0"))
        .unwrap_err();
    assert!(
        err.to_string().contains("not on a BPF file system"),
        "{err}"
    );
}
