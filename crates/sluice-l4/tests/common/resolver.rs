//! The neighbour resolver of the control-plane tests (`slot_reuse.rs`,
//! `maglev_agree.rs`, `sync.rs`): every IPv4 real's MAC is its address
//! behind `02:95`, so an output frame names the real it went to; IPv6
//! reals have none. Included by `#[path]`.

use std::net::IpAddr;

use sluice_l4::NeighbourResolver;

/// MAC `02:95:a:b:c:d` for real `a.b.c.d`.
#[derive(Debug)]
pub(crate) struct Fixed;

impl NeighbourResolver for Fixed {
    fn resolve(&mut self, addr: IpAddr) -> Option<[u8; 6]> {
        match addr {
            IpAddr::V4(a) => {
                let o = a.octets();
                Some([0x02, 0x95, o[0], o[1], o[2], o[3]])
            }
            IpAddr::V6(_) => None,
        }
    }
}
