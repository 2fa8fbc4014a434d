//! `sluice realserver toa` end to end: two network namespaces of the
//! test's own ("lb" and "real") joined by a veth. The reader runs in
//! "real" with `--iface` on its veth end and pins its map on a bpffs
//! mounted for the test. From "lb", a raw socket plays a `fullnat` LB: it
//! opens a TCP connection to a listener in "real" whose first ACK (and
//! first data segment) carries a TOA option naming a client, and
//! `sluice realserver toa --lookup` must name that client for the
//! connection the listener accepted. Needs root; everything (the reader,
//! the namespaces, the mount) goes on drop, also when an assertion fails.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recv, sendto,
    setsockopt, socket, sockopt,
};
use sluice_testkit::netns::{Netns, create_veth, unique_label};
use sluice_wire::checksum;
use sluice_wire::toa::{Toa, encode};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

const LB_IP: [u8; 4] = [10, 201, 0, 1];
const REAL_IP: [u8; 4] = [10, 201, 0, 2];
const REAL_PORT: u16 = 8080;
/// The LB's local ports of the two connections.
const LB_PORTS: [u16; 2] = [47001, 47002];
/// The clients the LB announces, one per connection (the second an IPv6
/// client on an IPv4 connection).
const CLIENTS: [&str; 2] = ["198.51.100.7:40000", "[2001:db8::7]:40001"];
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

/// A bpffs mounted on a fresh directory; unmounted and removed on drop.
/// Pins under `/sys/fs/bpf` would be invisible to `ip netns exec`, which
/// remounts /sys (docs/platform notes), so the test pins here.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-{label}-bpffs"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Err(e) = nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            panic!("mounting bpffs on {} (needs root): {e}", dir.display());
        }
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

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

/// A TCP header from the LB to the real with `options` (whole words) and
/// `payload`, its checksum over the IPv4 pseudo-header.
fn segment(sport: u16, seq: u32, ack: u32, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&REAL_PORT.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + options.len()) / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&LB_IP);
    pseudo.extend_from_slice(&REAL_IP);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
    let c = checksum::finish(checksum::sum(&t, checksum::sum(&pseudo, 0)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const SYN_ACK: u8 = SYN | ACK;

/// The sequence number of the real's SYN-ACK to `sport`, read from the
/// raw socket (which sees every TCP segment the LB's namespace receives,
/// IPv4 header included).
fn syn_ack_seq(fd: &OwnedFd, sport: u16) -> u32 {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let p = &buf[..n];
        if n < 40 || p[9] != 6 || p[12..16] != REAL_IP {
            continue;
        }
        let t = &p[usize::from(p[0] & 0x0f) * 4..];
        let (src, dst) = (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        );
        if src == REAL_PORT && dst == sport && t[13] & SYN_ACK == SYN_ACK {
            return u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        }
    }
    panic!("no SYN-ACK from the real to port {sport}");
}

/// The LB's side of one `fullnat` connection: SYN, then the first ACK
/// and a first data segment, both with the TOA of `client`.
fn connect_with_toa(sport: u16, client: SocketAddr) {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::Tcp,
    )
    .unwrap();
    let timeout = nix::sys::time::TimeVal::new(0, RECV_TIMEOUT.as_micros() as _);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).unwrap();
    let dst = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::from(REAL_IP), 0));
    let isn = 0x1000_0000u32 + u32::from(sport);
    let send = |seg: &[u8]| {
        sendto(fd.as_raw_fd(), seg, &dst, MsgFlags::empty()).unwrap();
    };
    send(&segment(sport, isn, 0, SYN, &[], &[]));
    let their = syn_ack_seq(&fd, sport);
    let toa = encode(&Toa::from_socket_addr(client)).unwrap();
    send(&segment(
        sport,
        isn + 1,
        their + 1,
        ACK,
        toa.as_bytes(),
        &[],
    ));
    send(&segment(
        sport,
        isn + 1,
        their + 1,
        PSH_ACK,
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
    // The LB's kernel knows nothing of the raw socket's connections and
    // would reset them on the real's SYN-ACK: drop its resets (in the
    // test's own namespace only).
    for cmd in [
        vec!["nft", "add", "table", "ip", "toatest"],
        vec![
            "nft", "add", "chain", "ip", "toatest", "out", "{", "type", "filter", "hook", "output",
            "priority", "0", ";", "}",
        ],
        vec![
            "nft", "add", "rule", "ip", "toatest", "out", "tcp", "flags", "rst", "drop",
        ],
    ] {
        let out = lb.exec(&cmd).unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fs = Bpffs::mount(&label);
    let pin_dir = fs.0.join("sluice");
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

    let listener = real
        .in_netns(|| {
            let l = TcpListener::bind(SocketAddr::from((REAL_IP, REAL_PORT))).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .unwrap();
    for (sport, client) in LB_PORTS.iter().zip(CLIENTS) {
        let client: SocketAddr = client.parse().unwrap();
        let sport = *sport;
        lb.in_netns(move || connect_with_toa(sport, client))
            .unwrap();
        let (peer, local, data) = accept_one(&listener);
        assert_eq!(peer, SocketAddr::from((LB_IP, sport)));
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
    drop(listener);
    drop(fs);
}
