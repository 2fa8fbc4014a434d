//! Builds the XDP object from `sluice-ebpf` with aya-build, using Debian's
//! rustc-web toolchain (linked into rustup as `debian-web` by
//! scripts/setup.sh) and bpf-linker. The object lands in `OUT_DIR` and is
//! embedded into this crate with `include_bytes_aligned!`.
//!
//! Why `RUSTC_BOOTSTRAP`: the BPF target has no prebuilt `core`, so it is
//! built with `-Z build-std=core`, which a stable compiler only allows with
//! `RUSTC_BOOTSTRAP=1`. aya-build reads the variable from this process's
//! environment, so it is set here, for the eBPF sub-build only, instead of for
//! the whole workspace.

fn main() -> aya_build::Result<()> {
    const TOOLCHAIN_ENV: &str = "SLUICE_EBPF_TOOLCHAIN";
    println!("cargo:rerun-if-env-changed={TOOLCHAIN_ENV}");
    let toolchain = std::env::var(TOOLCHAIN_ENV).unwrap_or_else(|_| "debian-web".to_owned());
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: build scripts are single-threaded at this point (no thread
        // has been spawned yet), so nothing can read the environment
        // concurrently with this write.
        unsafe {
            std::env::set_var("RUSTC_BOOTSTRAP", "1")
        };
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = format!("{manifest_dir}/../sluice-ebpf");
    let package = aya_build::Package {
        name: "sluice-ebpf",
        root_dir: &ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))
}
