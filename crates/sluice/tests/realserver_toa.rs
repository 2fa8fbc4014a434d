//! `sluice realserver toa` end to end: two network namespaces of the
//! test's own ("lb" and "real") joined by a veth. The reader runs in
//! "real" with `--iface` on its veth end and pins its map on a bpffs
//! mounted for the test. From "lb", a raw socket plays a `fullnat` LB: it
//! opens TCP connections (IPv4 and IPv6) to listeners in "real" whose
//! first ACK (and first data segment) carries a TOA option naming a
//! client (of either family), and
//! `sluice realserver toa --lookup` must name that client for the
//! connection the listener accepted. Needs root; everything (the reader,
//! the namespaces, the mount) goes on drop, also when an assertion fails.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, recv,
    sendto, setsockopt, socket, sockopt,
};
use sluice_testkit::bpffs::Bpffs;
use sluice_testkit::netns::{Netns, create_veth, unique_label};
use sluice_wire::checksum;
use sluice_wire::toa::{Toa, encode};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

const REAL_IP: [u8; 4] = [10, 201, 0, 2];
const LB_IP6: &str = "fd00:201::1";
const REAL_IP6: &str = "fd00:201::2";
const REAL_PORT: u16 = 8080;
/// The connections the LB opens: its local address and port, and the
/// client it announces (IPv4 and IPv6 connections, each with a client of
/// either family).
const CONNECTIONS: [(&str, &str); 4] = [
    ("10.201.0.1:47001", "198.51.100.7:40000"),
    ("10.201.0.1:47002", "[2001:db8::7]:40001"),
    ("[fd00:201::1]:47003", "[2001:db8::8]:40002"),
    ("[fd00:201::1]:47004", "198.51.100.8:40003"),
];
const REAL_IF: &str = "vreal";
const LB_IF: &str = "vlb";

/// How long the reader may take to attach and pin.
const READER_START: Duration = Duration::from_secs(20);
/// How long the reader may take to stop after SIGTERM.
const READER_STOP: Duration = Duration::from_secs(5);
/// How long a handshake step (SYN-ACK, accept) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The raw socket's receive timeout (one read).
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// The running reader: SIGTERM and a bounded wait on drop (then SIGKILL).
struct Reader {
    child: Child,
    log: PathBuf,
}

impl Reader {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + READER_STOP;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn start_reader(real: &Netns, pin_dir: &Path, log: PathBuf) -> Reader {
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = real
        .command(&[
            SLUICE,
            "realserver",
            "toa",
            "--iface",
            REAL_IF,
            "--pin-dir",
            pin_dir.to_str().unwrap(),
        ])
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf);
    let mut reader = Reader {
        child: cmd.spawn().unwrap(),
        log,
    };
    let deadline = Instant::now() + READER_START;
    loop {
        if reader.log().contains("ready") {
            return reader;
        }
        if let Ok(Some(st)) = reader.child.try_wait() {
            panic!("the reader exited with {st}:\n{}", reader.log());
        }
        assert!(
            Instant::now() < deadline,
            "the reader did not come up:\n{}",
            reader.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP header from `lb` to `real` with `options` (whole words) and
/// `payload`, its checksum over the pseudo-header of their family.
fn segment(
    lb: SocketAddr,
    real: SocketAddr,
    (seq, ack, flags): (u32, u32, u8),
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&lb.port().to_be_bytes());
    t[2..4].copy_from_slice(&real.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + options.len()) / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    match (lb.ip(), real.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(t.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("mixed families"),
    }
    let c = checksum::finish(checksum::sum(&t, checksum::sum(&pseudo, 0)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const SYN_ACK: u8 = SYN | ACK;

/// The sequence number of the real's SYN-ACK to `lb`'s port, read from
/// the raw socket (which sees every TCP segment the LB's namespace
/// receives of its family: IPv4 with its header, IPv6 without).
fn syn_ack_seq(fd: &OwnedFd, lb: SocketAddr, real: SocketAddr) -> u32 {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let p = &buf[..n];
        let t = if real.is_ipv4() {
            if n < 40 || p[9] != 6 {
                continue;
            }
            &p[usize::from(p[0] & 0x0f) * 4..]
        } else {
            p
        };
        if t.len() < 20 {
            continue;
        }
        let (src, dst) = (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        );
        if src == real.port() && dst == lb.port() && t[13] & SYN_ACK == SYN_ACK {
            return u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        }
    }
    panic!("no SYN-ACK from {real} to {lb}");
}

/// The LB's side of one `fullnat` connection from `lb` to `real`: SYN,
/// then the first ACK and a first data segment, both with the TOA of
/// `client`.
fn connect_with_toa(lb: SocketAddr, real: SocketAddr, client: SocketAddr) {
    let family = if real.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Raw, SockFlag::empty(), SockProtocol::Tcp).unwrap();
    let timeout = nix::sys::time::TimeVal::new(0, RECV_TIMEOUT.as_micros() as _);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).unwrap();
    // Raw sockets take no port; the kernel builds the IP header.
    let send = |seg: &[u8]| match real {
        SocketAddr::V4(r) => {
            let dst = SockaddrIn::from(SocketAddrV4::new(*r.ip(), 0));
            sendto(fd.as_raw_fd(), seg, &dst, MsgFlags::empty()).unwrap();
        }
        SocketAddr::V6(r) => {
            let dst = SockaddrIn6::from(SocketAddrV6::new(*r.ip(), 0, 0, 0));
            sendto(fd.as_raw_fd(), seg, &dst, MsgFlags::empty()).unwrap();
        }
    };
    let isn = 0x1000_0000u32 + u32::from(lb.port());
    send(&segment(lb, real, (isn, 0, SYN), &[], &[]));
    let their = syn_ack_seq(&fd, lb, real);
    let toa = encode(&Toa::from_socket_addr(client)).unwrap();
    let next = (isn + 1, their + 1);
    send(&segment(
        lb,
        real,
        (next.0, next.1, ACK),
        toa.as_bytes(),
        &[],
    ));
    send(&segment(
        lb,
        real,
        (next.0, next.1, PSH_ACK),
        toa.as_bytes(),
        b"hello",
    ));
}

/// Accepts one connection (bounded) and returns its (peer, local, the
/// first bytes it carried).
fn accept_one(listener: &TcpListener) -> (SocketAddr, SocketAddr, Vec<u8>) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                return (peer, s.local_addr().unwrap(), buf.to_vec());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nothing to accept");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn sluice_in(ns: &Netns, args: &[&str]) -> Output {
    let mut argv = vec![SLUICE];
    argv.extend_from_slice(args);
    ns.exec(&argv).unwrap()
}

#[test]
fn lookup_names_the_client_the_lb_announced() {
    let label = unique_label("toa");
    let lb = Netns::create(&format!("sl-{label}-lb"))
        .unwrap_or_else(|e| panic!("creating a namespace failed (this test needs root): {e}"));
    let real = Netns::create(&format!("sl-{label}-real")).unwrap();
    create_veth(&lb, LB_IF, &real, REAL_IF).unwrap();
    lb.ip(&["addr", "add", "10.201.0.1/24", "dev", LB_IF])
        .unwrap();
    real.ip(&["addr", "add", "10.201.0.2/24", "dev", REAL_IF])
        .unwrap();
    // No duplicate address detection: a tentative address can be neither
    // a source nor a destination for a while.
    lb.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{LB_IP6}/64"),
        "dev",
        LB_IF,
        "nodad",
    ])
    .unwrap();
    real.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{REAL_IP6}/64"),
        "dev",
        REAL_IF,
        "nodad",
    ])
    .unwrap();
    // The LB's kernel knows nothing of the raw socket's connections and
    // would reset them on the real's SYN-ACK: drop its resets (in the
    // test's own namespace only).
    for cmd in [
        vec!["nft", "add", "table", "inet", "toatest"],
        vec![
            "nft", "add", "chain", "inet", "toatest", "out", "{", "type", "filter", "hook",
            "output", "priority", "0", ";", "}",
        ],
        vec![
            "nft", "add", "rule", "inet", "toatest", "out", "tcp", "flags", "rst", "drop",
        ],
    ] {
        let out = lb.exec(&cmd).unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fs = Bpffs::mount(&label).unwrap();
    let pin_dir = fs.path().join("sluice");
    let pin_dir_s = pin_dir.to_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let mut reader = start_reader(&real, &pin_dir, work.path().join("reader.log"));
    let pin = pin_dir.join(format!("toa-{REAL_IF}"));
    assert!(
        reader
            .log()
            .contains(&format!("map pinned at {}", pin.display())),
        "{}",
        reader.log()
    );

    let listeners = real
        .in_netns(|| {
            let bind = |ip: IpAddr| {
                let l = TcpListener::bind(SocketAddr::new(ip, REAL_PORT)).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            };
            (bind(IpAddr::from(REAL_IP)), bind(REAL_IP6.parse().unwrap()))
        })
        .unwrap();
    for (lb_end, client) in CONNECTIONS {
        let lb_end: SocketAddr = lb_end.parse().unwrap();
        let client: SocketAddr = client.parse().unwrap();
        let (listener, real_ip) = if lb_end.is_ipv4() {
            (&listeners.0, IpAddr::from(REAL_IP))
        } else {
            (&listeners.1, REAL_IP6.parse().unwrap())
        };
        let real_end = SocketAddr::new(real_ip, REAL_PORT);
        lb.in_netns(move || connect_with_toa(lb_end, real_end, client))
            .unwrap();
        let (peer, local, data) = accept_one(listener);
        assert_eq!((peer, local), (lb_end, real_end));
        assert_eq!(data, b"hello");

        // Who is this connection really from? With and without --local,
        // with and without --iface.
        let (peer_s, local_s) = (peer.to_string(), local.to_string());
        for extra in [
            vec!["--local", local_s.as_str()],
            vec![],
            vec!["--iface", REAL_IF],
        ] {
            let mut args = vec![
                "realserver",
                "toa",
                "--lookup",
                peer_s.as_str(),
                "--pin-dir",
                pin_dir_s.as_str(),
            ];
            args.extend(extra.iter().copied());
            let out = sluice_in(&real, &args);
            assert!(
                out.status.success(),
                "{args:?}: {}\nreader:\n{}",
                String::from_utf8_lossy(&out.stderr),
                reader.log()
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                client.to_string(),
                "{args:?}"
            );
        }
    }

    // A connection the LB never announced: exit 1, a clear message.
    let out = sluice_in(
        &real,
        &[
            "realserver",
            "toa",
            "--lookup",
            "10.201.0.1:47999",
            "--pin-dir",
            &pin_dir_s,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no TOA recorded"));

    // SIGTERM: the reader detaches and unpins.
    let st = reader.stop().expect("the reader did not stop on SIGTERM");
    assert!(
        st.success(),
        "the reader exited with {st}:\n{}",
        reader.log()
    );
    assert!(!pin.exists(), "the pin outlived the reader");
    let link = real.ip(&["-d", "link", "show", REAL_IF]).unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "sluice_toa still attached after the reader stopped"
    );
    // Nothing pinned any more: a lookup says so (exit 2, the error).
    let out = sluice_in(
        &real,
        &[
            "realserver",
            "toa",
            "--lookup",
            "10.201.0.1:47001",
            "--pin-dir",
            &pin_dir_s,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no TOA map is pinned"));
    drop(listeners);
    drop(fs);
}
