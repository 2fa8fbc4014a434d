//! Loading and attaching `sluice_xdp`.

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use sluice_wire::maps::{Counter, MAP_STATS};

/// The eBPF object built from `sluice-ebpf` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice-xdp"));

/// Name of the XDP program inside the object.
pub const PROGRAM_NAME: &str = "sluice_xdp";

/// Returns the embedded eBPF object (an ELF relocatable file).
pub fn object_bytes() -> &'static [u8] {
    OBJECT
}

/// Errors from loading, attaching and map access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel rejected the object or a map could not be created.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// The program is missing from the object (a build problem).
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(&'static str),
    /// A map is missing from the object (a build problem).
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),
    /// Verifier or attach failure.
    #[error("{context}: {source}")]
    Program {
        /// What was being done, naming the interface where there is one.
        context: String,
        /// The aya error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Map access failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::MapError,
    },
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP). The default: generic mode only when configured.
    Native,
    /// Generic (SKB) mode, works on every interface, slower on real NICs.
    Generic,
}

impl AttachMode {
    fn to_aya(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// A loaded and attached `sluice_xdp`. Dropping it detaches the program and
/// frees the maps.
#[derive(Debug)]
pub struct XdpHandle {
    ebpf: Ebpf,
    iface: String,
    link: Option<XdpLinkId>,
}

impl XdpHandle {
    /// Loads the embedded object and attaches `sluice_xdp` to `iface`.
    ///
    /// # Errors
    /// [`Error::Program`] naming the interface when it does not exist, does
    /// not support the requested mode, or the verifier refuses the program.
    pub fn load_and_attach(iface: &str, mode: AttachMode) -> Result<Self, Error> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(Error::MissingProgram(PROGRAM_NAME))?
            .try_into()
            .map_err(|source| Error::Program {
                context: format!("program {PROGRAM_NAME} is not XDP"),
                source,
            })?;
        prog.load().map_err(|source| Error::Program {
            context: format!("verifying {PROGRAM_NAME}"),
            source,
        })?;
        let link = prog
            .attach(iface, mode.to_aya())
            .map_err(|source| Error::Program {
                context: format!(
                    "attaching {PROGRAM_NAME} to interface {iface:?} in {mode:?} mode \
                     (does the interface exist in this namespace? for drivers without \
                     native XDP configure generic mode)"
                ),
                source,
            })?;
        Ok(Self {
            ebpf,
            iface: iface.to_owned(),
            link: Some(link),
        })
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Reads one counter, summed over all CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64, Error> {
        let map = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(Error::MissingMap(MAP_STATS))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| Error::Map {
                map: MAP_STATS,
                source,
            })?;
        let values = arr.get(&(c as u32), 0).map_err(|source| Error::Map {
            map: MAP_STATS,
            source,
        })?;
        Ok(values.iter().sum())
    }

    /// Detaches the program now (also done on drop).
    pub fn detach(&mut self) -> Result<(), Error> {
        if let Some(link) = self.link.take() {
            let prog: &mut Xdp = self
                .ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or(Error::MissingProgram(PROGRAM_NAME))?
                .try_into()
                .map_err(|source| Error::Program {
                    context: "detach".to_owned(),
                    source,
                })?;
            prog.detach(link).map_err(|source| Error::Program {
                context: format!("detaching from {}", self.iface),
                source,
            })?;
        }
        Ok(())
    }
}
