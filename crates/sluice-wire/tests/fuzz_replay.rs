//! The `wire_checksum` fuzz target's committed seeds and regressions,
//! replayed through the same oracle the fuzzer runs (see `fuzz/` and
//! `benches/fuzz.sh`): an input that once crashed it fails here too.

#[path = "../../../fuzz/oracles/replay.rs"]
mod replay;

#[path = "../../../fuzz/oracles/wire_checksum.rs"]
mod oracle;

#[test]
fn wire_checksum() {
    replay::replay("wire_checksum", oracle::check);
}

/// The oracle's MurmurHash3 is itself checked against published vectors
/// of the reference implementation, so a wrong reference cannot make the
/// fuzzer agree with a wrong hash.
#[test]
fn reference_murmur3_matches_published_vectors() {
    let vectors: [(&[u8], u32, u32); 10] = [
        (b"", 0, 0),
        (b"", 1, 0x514e_28b7),
        (b"", 0xffff_ffff, 0x81f1_6f39),
        (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
        (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
        (b"\x21\x43\x65", 0, 0x7e4a_8634),
        (b"\x21\x43", 0, 0xa0f7_b07a),
        (b"\x21", 0, 0x7266_1cf4),
        (b"\x21\x43\x65\x87", 0x5082_edee, 0x2362_f9de),
        (b"Hello, world!", 1234, 0xfaf6_cdb3),
    ];
    for (key, seed, want) in vectors {
        assert_eq!(
            oracle::murmur3_x86_32(key, seed),
            want,
            "{key:?} seed {seed:#x}"
        );
    }
}
