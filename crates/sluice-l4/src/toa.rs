//! The real server's side of TOA ("TCP Option Address", `fullnat`): who is
//! a connection really from?
//!
//! Under `fullnat` a real server sees the LB's local address and port as
//! the peer of every connection; the LB announces the client in a TCP
//! option on the connection's first ACK (`sluice_wire::toa`). Without a
//! kernel module that reads it, [`ToaReader`] attaches the XDP program
//! `sluice_toa` to the real's interface, which records
//! `(own address:port, LB address:port) → client address:port` in its map
//! `SLUICE_TOA`, and pins that map in bpffs ([`pin_path`]). [`lookup`]
//! opens the pinned map from any process and answers the question for
//! one connection; `sluice realserver toa` wraps both.
//!
//! ```no_run
//! # fn main() -> Result<(), sluice_l4::toa::ToaError> {
//! use std::path::Path;
//! // In the application, for an accepted connection:
//! let peer = "10.0.0.5:40001".parse().unwrap();   // stream.peer_addr()
//! let local = "10.0.0.9:80".parse().unwrap();     // stream.local_addr()
//! let pin = sluice_l4::toa::pin_path(Path::new(sluice_l4::toa::DEFAULT_PIN_DIR), "eth0")?;
//! for e in sluice_l4::toa::lookup(&pin, peer, Some(local))? {
//!     println!("really from {}", e.client);
//! }
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, Map, MapData, MapError},
    pin::PinError,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use sluice_wire::maps::{
    Addr, MAP_NAT_REVERSE, MAP_PERSIST, MAP_RING, MAP_SESSIONS, addr_from_bytes, addr_to_bytes,
    addr_v4, family,
};
pub use sluice_wire::toa::{MAP_TOA, TOA_CAPACITY, ToaKey, ToaVal};

use crate::loader::{AttachMode, MIN_SESSION_CAPACITY, TestRunOutput, object_bytes};

/// Name of the XDP program inside the object.
pub const PROGRAM_NAME: &str = "sluice_toa";
/// Where [`ToaReader::start`] pins the map by default: a directory of
/// sluice's own on the usual bpffs mount point.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sluice";
/// Prefix of a pinned map's file name (`toa-IFACE`).
pub const PIN_PREFIX: &str = "toa-";
/// Longest interface name the kernel accepts (IFNAMSIZ − 1), in bytes.
const MAX_IFNAME_LEN: usize = 15;

/// Errors of the TOA reader and its lookups.
#[derive(Debug, thiserror::Error)]
pub enum ToaError {
    /// The pin directory is not on a BPF file system, so the map cannot be
    /// pinned there (or nothing was ever pinned there).
    #[error(
        "{path} is not on a BPF file system (bpffs): mount one (`mount -t bpf bpf /sys/fs/bpf`) \
         or choose a pin directory on one"
    )]
    NotBpffs {
        /// The directory (or its nearest existing ancestor) that was checked.
        path: PathBuf,
    },
    /// Something already exists at the pin path: another reader on the same
    /// interface, or a pin left by one that was killed.
    #[error(
        "{path} already exists: is `sluice realserver toa` already running for this interface? \
         If not, it is a stale pin; remove it (`rm {path}`)"
    )]
    AlreadyPinned {
        /// The pin path.
        path: PathBuf,
    },
    /// No map is pinned at the path.
    #[error("no TOA map pinned at {path}: is `sluice realserver toa --iface ...` running?")]
    NotPinned {
        /// The pin path.
        path: PathBuf,
    },
    /// An interface name that cannot be part of a pin path.
    #[error("bad interface name {0:?}")]
    BadInterface(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel rejected the object or a map could not be created.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// The program is missing from the object, or is not XDP (a build
    /// problem).
    #[error("program {PROGRAM_NAME} not found in the eBPF object")]
    MissingProgram,
    /// The map is missing from the object (a build problem).
    #[error("map {MAP_TOA} not found in the eBPF object")]
    MissingMap,
    /// Verifier, attach or test-run failure.
    #[error("{context}: {source}")]
    Program {
        /// What was being done, naming the interface where there is one.
        context: String,
        /// The aya error.
        #[source]
        source: ProgramError,
    },
    /// Reading or opening the map failed.
    #[error("{context}: {source}")]
    Map {
        /// What was being done.
        context: String,
        /// The aya error.
        #[source]
        source: MapError,
    },
    /// Pinning the map failed.
    #[error("pinning {MAP_TOA} at {path}: {source}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// The aya error.
        #[source]
        source: PinError,
    },
}

/// One recorded connection: who it is really from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToaEntry {
    /// The real server's own end of the connection.
    pub local: SocketAddr,
    /// The peer the real sees (under `fullnat`, the LB's local address).
    pub peer: SocketAddr,
    /// The client, as the TOA announced it.
    pub client: SocketAddr,
    /// `CLOCK_MONOTONIC` time (ns) when a segment last carried the TOA.
    pub last_seen_ns: u64,
}

/// The pin path of the map of the reader on `iface`: `DIR/toa-IFACE`.
///
/// # Errors
/// [`ToaError::BadInterface`] for a name the kernel would not accept or
/// that would leave the directory.
pub fn pin_path(dir: &Path, iface: &str) -> Result<PathBuf, ToaError> {
    let ok = !iface.is_empty()
        && iface.len() <= MAX_IFNAME_LEN
        && iface != "."
        && iface != ".."
        && !iface.contains(['/', ' ', '\0']);
    if !ok {
        return Err(ToaError::BadInterface(iface.to_owned()));
    }
    Ok(dir.join(format!("{PIN_PREFIX}{iface}")))
}

/// Every TOA map pinned in `dir` (files named `toa-*`), sorted.
///
/// # Errors
/// [`ToaError::Io`] if `dir` cannot be read (a missing directory is an
/// empty list).
pub fn pins_in(dir: &Path) -> Result<Vec<PathBuf>, ToaError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ToaError::Io {
                context: format!("reading {}", dir.display()),
                source,
            });
        }
    };
    let mut pins: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(PIN_PREFIX))
        .map(|e| e.path())
        .collect();
    pins.sort();
    Ok(pins)
}

/// Who is the connection from `peer` (as the real sees it) really from:
/// the entries of the map pinned at `pin` whose peer is `peer` and, when
/// given, whose local end is `local`; most recently seen first. Empty
/// when the map knows no such connection. IPv4-mapped IPv6 addresses (a
/// dual-stack socket's view of IPv4 peers) are taken as IPv4.
///
/// The map is opened with aya's `BPF_OBJ_GET` (aya 0.14 asks for no
/// read-only access), and only read.
///
/// # Errors
/// [`ToaError::NotPinned`] when nothing is pinned at `pin`,
/// [`ToaError::Map`] when it is not the TOA map or cannot be read.
pub fn lookup(
    pin: &Path,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<Vec<ToaEntry>, ToaError> {
    let map = open_pinned(pin)?;
    let context = || format!("reading {MAP_TOA} at {}", pin.display());
    let peer = unmapped(peer);
    if let Some(local) = local.map(unmapped) {
        let Some(key) = key_of(local, peer) else {
            return Ok(Vec::new());
        };
        return match map.get(&key, 0) {
            Ok(val) => Ok(entry(&key, &val).into_iter().collect()),
            Err(MapError::KeyNotFound) => Ok(Vec::new()),
            Err(source) => Err(ToaError::Map {
                context: context(),
                source,
            }),
        };
    }
    let mut all = Vec::new();
    // Entries evicted while the map is walked are skipped.
    for (k, v) in map.iter().filter_map(Result::ok) {
        if let Some(e) = entry(&k, &v) {
            all.push(e);
        }
    }
    Ok(matching(all, peer, None))
}

/// Every entry of the map pinned at `pin`, most recently seen first.
///
/// # Errors
/// As [`lookup`].
pub fn dump(pin: &Path) -> Result<Vec<ToaEntry>, ToaError> {
    let map = open_pinned(pin)?;
    let mut all: Vec<ToaEntry> = map
        .iter()
        .filter_map(Result::ok)
        .filter_map(|(k, v)| entry(&k, &v))
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ns));
    Ok(all)
}

/// The entries of `all` for `peer` (and `local`, if given), most
/// recently seen first.
fn matching(mut all: Vec<ToaEntry>, peer: SocketAddr, local: Option<SocketAddr>) -> Vec<ToaEntry> {
    all.retain(|e| e.peer == peer && local.is_none_or(|l| e.local == l));
    all.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ns));
    all
}

fn open_pinned(pin: &Path) -> Result<HashMap<MapData, ToaKey, ToaVal>, ToaError> {
    if !pin.exists() {
        return Err(ToaError::NotPinned {
            path: pin.to_owned(),
        });
    }
    let context = || format!("opening the map pinned at {}", pin.display());
    let data = MapData::from_pin(pin).map_err(|source| ToaError::Map {
        context: context(),
        source,
    })?;
    let map = Map::from_map_data(data).map_err(|source| ToaError::Map {
        context: context(),
        source,
    })?;
    // Refuses a map of another type or with other key/value sizes.
    HashMap::try_from(map).map_err(|source| ToaError::Map {
        context: context(),
        source,
    })
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address as it is.
fn unmapped(sa: SocketAddr) -> SocketAddr {
    match sa.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), sa.port()),
            None => sa,
        },
        IpAddr::V4(_) => sa,
    }
}

fn wire_addr(ip: IpAddr) -> (u8, Addr) {
    match ip {
        IpAddr::V4(v) => (family::V4, addr_v4(v.octets())),
        IpAddr::V6(v) => (family::V6, addr_from_bytes(v.octets())),
    }
}

fn ip_of(fam: u8, a: Addr) -> Option<IpAddr> {
    let b = addr_to_bytes(a);
    match fam {
        family::V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        family::V6 => Some(IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// The map key of the connection `local` ↔ `peer`; `None` when the two
/// are of different families (no such connection).
pub fn key_of(local: SocketAddr, peer: SocketAddr) -> Option<ToaKey> {
    let (lf, la) = wire_addr(local.ip());
    let (pf, pa) = wire_addr(peer.ip());
    (lf == pf).then_some(ToaKey {
        local: la,
        peer: pa,
        local_port: local.port(),
        peer_port: peer.port(),
        family: lf,
        _pad: [0; 3],
    })
}

/// A map entry as socket addresses; `None` for an unknown family.
pub fn entry(k: &ToaKey, v: &ToaVal) -> Option<ToaEntry> {
    Some(ToaEntry {
        local: SocketAddr::new(ip_of(k.family, k.local)?, k.local_port),
        peer: SocketAddr::new(ip_of(k.family, k.peer)?, k.peer_port),
        client: v.client().socket_addr()?,
        last_seen_ns: v.last_seen_ns,
    })
}

// === impl ToaReader ===

/// The loaded `sluice_toa` program, its map, and once attached and pinned
/// its link and pin. Dropping it detaches the program and removes the pin
/// (and the pin directory, if it made it and it is empty).
#[derive(Debug)]
pub struct ToaReader {
    ebpf: Ebpf,
    attached: Option<(String, XdpLinkId)>,
    pinned: Option<PathBuf>,
    /// The pin directory, when this reader created it.
    made_dir: Option<PathBuf>,
}

impl ToaReader {
    /// Loads the object and verifies `sluice_toa` (root / CAP_BPF); not yet
    /// attached or pinned.
    ///
    /// # Errors
    /// [`ToaError::Load`], or [`ToaError::Program`] when the verifier
    /// refuses the program.
    pub fn load() -> Result<Self, ToaError> {
        // The object's other maps are created with it: the large ones get
        // small sizes, since only SLUICE_TOA is used. SLUICE_TOA itself is
        // declared with one entry (so that other loads of the object do
        // not pay for it) and gets its real size here.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_TOA, TOA_CAPACITY)
            .map_max_entries(MAP_RING, 1)
            .map_max_entries(MAP_SESSIONS, MIN_SESSION_CAPACITY)
            .map_max_entries(MAP_NAT_REVERSE, MIN_SESSION_CAPACITY)
            .map_max_entries(MAP_PERSIST, MIN_SESSION_CAPACITY)
            .load(object_bytes())?;
        let prog = program_mut(&mut ebpf)?;
        prog.load().map_err(|source| ToaError::Program {
            context: format!("verifying {PROGRAM_NAME}"),
            source,
        })?;
        Ok(Self {
            ebpf,
            attached: None,
            pinned: None,
            made_dir: None,
        })
    }

    /// Loads, pins the map at [`pin_path`]`(pin_dir, iface)` and attaches
    /// to `iface` (resolved in the calling thread's network namespace):
    /// what `sluice realserver toa --iface` does.
    ///
    /// # Errors
    /// As [`ToaReader::load`], [`ToaReader::pin`] and
    /// [`ToaReader::attach`]; nothing is left pinned or attached on error.
    pub fn start(iface: &str, mode: AttachMode, pin_dir: &Path) -> Result<Self, ToaError> {
        let path = pin_path(pin_dir, iface)?;
        let mut reader = Self::load()?;
        reader.pin(&path)?;
        reader.attach(iface, mode)?;
        Ok(reader)
    }

    /// Pins the map at `path`, whose directory must be on bpffs (it is
    /// created if missing). The pin is removed on drop.
    ///
    /// # Errors
    /// [`ToaError::NotBpffs`], [`ToaError::AlreadyPinned`],
    /// [`ToaError::Io`] (the directory), [`ToaError::Pin`].
    pub fn pin(&mut self, path: &Path) -> Result<(), ToaError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        check_bpffs(dir)?;
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| ToaError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
            self.made_dir = Some(dir.to_owned());
        }
        if path.exists() {
            return Err(ToaError::AlreadyPinned {
                path: path.to_owned(),
            });
        }
        let map = self.ebpf.map(MAP_TOA).ok_or(ToaError::MissingMap)?;
        map.pin(path).map_err(|source| ToaError::Pin {
            path: path.to_owned(),
            source,
        })?;
        self.pinned = Some(path.to_owned());
        Ok(())
    }

    /// Attaches to `iface` (resolved in the calling thread's network
    /// namespace); detached on drop.
    ///
    /// # Errors
    /// [`ToaError::Program`] naming the interface.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), ToaError> {
        let link = program_mut(&mut self.ebpf)?
            .attach(iface, xdp_mode(mode))
            .map_err(|source| ToaError::Program {
                context: format!(
                    "attaching {PROGRAM_NAME} to interface {iface:?} in {mode:?} mode \
                     (does the interface exist in this network namespace?)"
                ),
                source,
            })?;
        self.attached = Some((iface.to_owned(), link));
        Ok(())
    }

    /// Where the map is pinned, if it is.
    pub fn pinned_at(&self) -> Option<&Path> {
        self.pinned.as_deref()
    }

    /// Every entry of the loaded map (entries raced by an eviction are
    /// skipped), most recently seen first.
    ///
    /// # Errors
    /// [`ToaError::Map`].
    pub fn entries(&self) -> Result<Vec<ToaEntry>, ToaError> {
        let map = self.ebpf.map(MAP_TOA).ok_or(ToaError::MissingMap)?;
        let h: HashMap<_, ToaKey, ToaVal> =
            HashMap::try_from(map).map_err(|source| ToaError::Map {
                context: format!("reading {MAP_TOA}"),
                source,
            })?;
        let mut all: Vec<ToaEntry> = h
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| entry(&k, &v))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ns));
        Ok(all)
    }

    /// Instructions the verifier processed to accept `sluice_toa` (its
    /// budget is 1,000,000); `None` when the kernel does not say.
    ///
    /// # Errors
    /// [`ToaError::Program`].
    pub fn verified_instructions(&self) -> Result<Option<u32>, ToaError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(ToaError::MissingProgram)?
            .try_into()
            .map_err(|_| ToaError::MissingProgram)?;
        let info = prog.info().map_err(|source| ToaError::Program {
            context: format!("reading the information of {PROGRAM_NAME}"),
            source,
        })?;
        Ok(info.verified_instruction_count())
    }

    /// Runs `sluice_toa` once on `frame` with `BPF_PROG_TEST_RUN` (no
    /// interface needed; the map is the live one).
    ///
    /// # Errors
    /// [`ToaError::Program`].
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutput, ToaError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or(ToaError::MissingProgram)?
            .try_into()
            .map_err(|_| ToaError::MissingProgram)?;
        crate::loader::xdp_test_run(prog, frame, 1).map_err(|source| ToaError::Program {
            context: "BPF_PROG_TEST_RUN".to_owned(),
            source,
        })
    }
}

impl Drop for ToaReader {
    fn drop(&mut self) {
        if let Some((iface, link)) = self.attached.take()
            && let Ok(prog) = program_mut(&mut self.ebpf)
            && let Err(e) = prog.detach(link)
        {
            tracing::warn!(error = %e, %iface, "detaching {PROGRAM_NAME}");
        }
        if let Some(path) = self.pinned.take()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(error = %e, path = %path.display(), "removing the TOA map's pin");
        }
        if let Some(dir) = self.made_dir.take() {
            // Only if empty: another interface's reader may pin there too.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn xdp_mode(mode: AttachMode) -> XdpMode {
    match mode {
        AttachMode::Native => XdpMode::Driver,
        AttachMode::Generic => XdpMode::Skb,
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, ToaError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(ToaError::MissingProgram)?
        .try_into()
        .map_err(|_| ToaError::MissingProgram)
}

/// Fails unless `dir`, or its nearest existing ancestor, is on bpffs.
fn check_bpffs(dir: &Path) -> Result<(), ToaError> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let st = nix::sys::statfs::statfs(existing).map_err(|e| ToaError::Io {
        context: format!("statfs {}", existing.display()),
        source: e.into(),
    })?;
    if st.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
        return Err(ToaError::NotBpffs {
            path: existing.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pin_paths_refuse_names_that_leave_the_directory() {
        let d = Path::new("/sys/fs/bpf/sluice");
        assert_eq!(
            pin_path(d, "eth0").unwrap(),
            Path::new("/sys/fs/bpf/sluice/toa-eth0")
        );
        for bad in ["", ".", "..", "a/b", "a b", "sixteen-chars-xx"] {
            assert!(pin_path(d, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_and_entries_round_trip() {
        for (local, peer, client) in [
            ("10.0.0.9:80", "10.0.0.5:40001", "198.51.100.7:5555"),
            ("[fd00::9]:443", "[fd00::5]:40001", "[2001:db8::7]:6666"),
            // An IPv6 client announced on an IPv4 connection.
            ("10.0.0.9:80", "10.0.0.5:40002", "[2001:db8::8]:7777"),
        ] {
            let k = key_of(sa(local), sa(peer)).unwrap();
            let t = sluice_wire::toa::Toa::from_socket_addr(sa(client));
            let v = ToaVal {
                client: t.addr,
                client_port: t.port,
                family: t.family,
                last_seen_ns: 7,
                ..Default::default()
            };
            let e = entry(&k, &v).unwrap();
            assert_eq!(
                (e.local, e.peer, e.client, e.last_seen_ns),
                (sa(local), sa(peer), sa(client), 7)
            );
        }
        assert_eq!(key_of(sa("10.0.0.9:80"), sa("[fd00::5]:1")), None);
        let bad = ToaKey {
            family: 5,
            ..Default::default()
        };
        assert_eq!(entry(&bad, &ToaVal::default()), None);
    }

    #[test]
    fn matching_filters_by_peer_and_local_newest_first() {
        let e = |local: &str, peer: &str, client: &str, t| ToaEntry {
            local: sa(local),
            peer: sa(peer),
            client: sa(client),
            last_seen_ns: t,
        };
        let all = vec![
            e("10.0.0.9:80", "10.0.0.5:40001", "1.1.1.1:1", 10),
            e("10.0.0.9:81", "10.0.0.5:40001", "2.2.2.2:2", 20),
            e("10.0.0.9:80", "10.0.0.5:40002", "3.3.3.3:3", 30),
        ];
        let got = matching(all.clone(), sa("10.0.0.5:40001"), None);
        assert_eq!(
            got.iter().map(|e| e.client).collect::<Vec<_>>(),
            [sa("2.2.2.2:2"), sa("1.1.1.1:1")]
        );
        let got = matching(all.clone(), sa("10.0.0.5:40001"), Some(sa("10.0.0.9:80")));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].client, sa("1.1.1.1:1"));
        assert!(matching(all, sa("10.0.0.5:1"), None).is_empty());
    }

    #[test]
    fn mapped_addresses_are_unmapped() {
        assert_eq!(unmapped(sa("[::ffff:10.0.0.5]:7")), sa("10.0.0.5:7"));
        assert_eq!(unmapped(sa("[fd00::5]:7")), sa("[fd00::5]:7"));
    }

    #[test]
    fn a_missing_pin_is_a_clear_error() {
        let err = lookup(Path::new("/nonexistent/toa-eth0"), sa("10.0.0.5:1"), None).unwrap_err();
        assert!(matches!(err, ToaError::NotPinned { .. }), "{err}");
        assert!(pins_in(Path::new("/nonexistent")).unwrap().is_empty());
    }

    #[test]
    fn a_directory_off_bpffs_is_refused() {
        let err = check_bpffs(Path::new("/proc/self/nonexistent/dir")).unwrap_err();
        assert!(matches!(err, ToaError::NotBpffs { .. }), "{err}");
    }
}
