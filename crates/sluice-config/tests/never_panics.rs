//! The parser is fed untrusted text: no input may panic it.

use proptest::prelude::*;

/// Fragments of sluice configs, so random mixes reach deep into the walker
/// rather than stopping at the first syntax error.
const FRAGMENTS: &[&str] = &[
    "[global]\n",
    "[defaults]\n",
    "[[l4_service]]\n",
    "[[l4_service.real]]\n",
    "[[frontend]]\n",
    "[[frontend.tls]]\n",
    "[[backend]]\n",
    "[[backend.server]]\n",
    "[health_check.a]\n",
    "[[vrrp_instance]]\n",
    "[sync]\n",
    "name = \"a\"\n",
    "vip = \"10.0.0.1\"\n",
    "vip = \"::1\"\n",
    "address = \"10.0.0.2\"\n",
    "address = \"10.0.0.2:80\"\n",
    "port = 80\n",
    "port = -1\n",
    "port = 0\n",
    "weight = 70000\n",
    "method = \"fullnat\"\n",
    "method = \"dr\"\n",
    "interface = \"lb0\"\n",
    "mode = \"http\"\n",
    "mode = \"tcp\"\n",
    "type = \"http-content\"\n",
    "type = \"script\"\n",
    "interval = \"1s\"\n",
    "timeout = 5\n",
    "bind = [\"0.0.0.0:80\"]\n",
    "default_backend = \"a\"\n",
    "health_check = \"a\"\n",
    "maglev_table_size = 4\n",
    "virtual_router_id = 300\n",
    "expect_status = [\"200\", 5, \"600-100\"]\n",
    "body_regex = \"(\"\n",
    "x = { y = [1, { z = 2 }] }\n",
    "enabled = true\n",
    "é = \"ü\"\n",
    "\"\" = 1\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = sluice_config::parse("fuzz.toml", &text);
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = sluice_config::parse("fuzz.toml", &text);
    }

    #[test]
    fn config_shaped_text_never_panics(
        parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40),
    ) {
        let text: String = parts.concat();
        if let Err(diagnostics) = sluice_config::parse("fuzz.toml", &text) {
            // Every diagnostic must point inside the text (or at its end).
            let lines = text.split('\n').count();
            for d in &diagnostics {
                prop_assert!(d.line >= 1 && d.line <= lines, "{d} outside {lines} lines");
                prop_assert!(d.col >= 1);
            }
        }
    }
}
