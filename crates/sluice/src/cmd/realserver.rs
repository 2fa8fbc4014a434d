//! `sluice realserver web`: the lab's real-server web server.
//! `sluice realserver setup`: the real-server side of `dr` and `tun` (VIPs on
//! `lo`, ARP and reverse-path sysctls, `sluice_decap` for tunnelled frames).
//! `sluice realserver toa`: the real-server side of `fullnat`'s TOA ([`toa`]).

mod toa;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;

use anyhow::Context as _;
use sluice_l4::{AttachMode, Helper, HelperProgram};
use sluice_lab::webserver::{self, WebStats};

/// Real-server subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RealserverCommand {
    /// Serve the lab's web content: `/` (a fixed-size body), `/health`,
    /// `/whoami`, `/headers`, `/stats`; every response carries
    /// `X-Served-By: NAME`. Runs until SIGINT or SIGTERM.
    Web(WebArgs),
    /// Prepare this host as a real server of a `dr` or `tun` service: put
    /// each VIP on `lo`, set `arp_ignore=1`, `arp_announce=2`, `rp_filter=0`,
    /// and with `--tun-iface` attach the `sluice_decap` XDP program that strips
    /// IPIP/IP6IP6. Runs until SIGINT or SIGTERM, then detaches and removes the
    /// VIPs it added (sysctls are left as set).
    Setup(SetupArgs),
    /// Read the client address a `fullnat` LB announces in each
    /// connection's TOA option: `--iface` attaches the `sluice_toa` XDP
    /// program and pins its map in bpffs until SIGINT or SIGTERM;
    /// `--lookup PEER_ADDR:PORT` prints who that connection is really from.
    Toa(toa::ToaArgs),
}

/// Arguments of `sluice realserver setup`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetupArgs {
    /// A VIP to accept (IPv4 or IPv6); repeat for several.
    #[arg(long, required_unless_present = "print_kernel_equivalent")]
    vip: Vec<IpAddr>,
    /// Interface receiving the load balancer's IPIP/IP6IP6 frames (`tun`):
    /// `sluice_decap` is attached to it.
    #[arg(long)]
    tun_iface: Option<String>,
    /// XDP attach mode of `sluice_decap`.
    #[arg(long, value_enum, default_value_t = XdpMode::Native)]
    xdp_mode: XdpMode,
    /// Print the equivalent commands for a host whose kernel has the `ipip`
    /// and `ip6_tunnel` drivers, and exit without changing anything.
    #[arg(long)]
    print_kernel_equivalent: bool,
}

/// XDP attach mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum XdpMode {
    /// In the driver.
    Native,
    /// Generic (SKB) mode: any interface, slower.
    Generic,
}

/// Arguments of `sluice realserver web`.
#[derive(Debug, clap::Args)]
pub(crate) struct WebArgs {
    /// Address to listen on; repeat for several (e.g. `0.0.0.0:80` and `[::]:80`).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Server name sent in `X-Served-By` (e.g. `rs1`).
    #[arg(long)]
    name: String,
    /// Size of the `/` body in bytes.
    #[arg(long, default_value_t = webserver::DEFAULT_BODY_SIZE)]
    size: usize,
}

pub(crate) fn run(c: RealserverCommand) -> anyhow::Result<ExitCode> {
    match c {
        RealserverCommand::Web(args) => web(args),
        RealserverCommand::Setup(args) => setup(&args),
        RealserverCommand::Toa(args) => toa::run(&args),
    }
}

fn web(args: WebArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let mut listeners = Vec::with_capacity(args.listen.len());
        for addr in &args.listen {
            let std_listener = webserver::bind(*addr).with_context(|| format!("binding {addr}"))?;
            listeners.push(tokio::net::TcpListener::from_std(std_listener)?);
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        eprintln!(
            "sluice realserver web: {} listening on {:?}",
            args.name, args.listen
        );
        webserver::serve_all(
            listeners,
            &args.name,
            args.size,
            Arc::new(WebStats::default()),
            shutdown,
        )
        .await
        .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM and SIGINT, caught from the moment they are installed, for
/// the real-server commands that undo what they did when told to stop.
pub(crate) struct StopSignals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs both handlers (install before announcing "ready": a
    /// signal arriving after it must run the clean-up).
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let (term, int) = rt.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            ))
        })?;
        Ok(Self { rt, term, int })
    }

    /// Blocks until one of them arrives.
    pub(crate) fn wait(mut self) {
        let (term, int) = (&mut self.term, &mut self.int);
        self.rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
    }
}

// === realserver setup ===

/// The `ip` binary (iproute2), as the L4 crate's neighbour code uses.
const IP: &str = "ip";

/// Longest interface name the kernel accepts (IFNAMSIZ − 1), in bytes.
const MAX_IFNAME_LEN: usize = 15;

/// The IPv4 VIP shown by `--print-kernel-equivalent` when none is given.
const EXAMPLE_VIP4: &str = "10.99.255.1";

/// The ARP/reverse-path sysctls written for IPv4 VIPs on `iface`s (besides
/// `all`). The effective value of `arp_ignore`/`arp_announce` is the maximum
/// of `all` and the interface, and `rp_filter` also uses the maximum, so
/// `all` and every named interface must be set.
fn ipv4_sysctls(ifaces: &[&str]) -> Vec<(String, &'static str)> {
    let mut v = Vec::new();
    for scope in std::iter::once("all").chain(ifaces.iter().copied()) {
        // Never answer ARP for a VIP on lo (only the LB may attract it) and
        // never use it as an ARP source.
        v.push((format!("net.ipv4.conf.{scope}.arp_ignore"), "1"));
        v.push((format!("net.ipv4.conf.{scope}.arp_announce"), "2"));
        // Requests arrive with the client's source on an interface the
        // reply does not necessarily leave by (and, for `tun`, on the
        // tunnel interface): strict reverse-path filtering would drop them.
        v.push((format!("net.ipv4.conf.{scope}.rp_filter"), "0"));
    }
    v.push(("net.ipv4.conf.default.rp_filter".to_owned(), "0"));
    v
}

/// The commands that do the same with the kernel's tunnel drivers instead
/// of `sluice_decap`, one per line (comments start with `#`).
fn kernel_equivalent(vips: &[IpAddr]) -> String {
    let example: [IpAddr; 1] = [EXAMPLE_VIP4
        .parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))];
    let vips = if vips.is_empty() { &example[..] } else { vips };
    let has4 = vips.iter().any(IpAddr::is_ipv4);
    let has6 = vips.iter().any(IpAddr::is_ipv6);
    let mut out = String::from(
        "# Real server of a sluice `dr`/`tun` service, with the kernel's own tunnel\n\
         # drivers (CONFIG_NET_IPIP, CONFIG_IPV6_TUNNEL) instead of sluice_decap.\n",
    );
    if has4 {
        out.push_str(
            "# IPIP: loading the ipip module creates the catch-all device tunl0;\n\
             # `ip link add` creates it where the driver is built in (\"File exists\" is fine).\n\
             modprobe ipip 2>/dev/null || true\n\
             ip link add tunl0 type ipip 2>/dev/null || true\n\
             ip link set tunl0 up\n",
        );
    }
    if has6 {
        out.push_str(
            "# IP6IP6: loading ip6_tunnel creates the catch-all device ip6tnl0.\n\
             modprobe ip6_tunnel 2>/dev/null || true\n\
             ip link set ip6tnl0 up\n",
        );
    }
    for vip in vips {
        match vip {
            IpAddr::V4(v) => out.push_str(&format!("ip addr add {v}/32 dev lo\n")),
            IpAddr::V6(v) => out.push_str(&format!("ip -6 addr add {v}/128 dev lo nodad\n")),
        }
    }
    if has4 {
        out.push_str(
            "sysctl -w net.ipv4.conf.all.arp_ignore=1\n\
             sysctl -w net.ipv4.conf.all.arp_announce=2\n\
             sysctl -w net.ipv4.conf.all.rp_filter=0\n\
             sysctl -w net.ipv4.conf.default.rp_filter=0\n\
             # Decapsulated packets arrive on tunl0 with the client's source address.\n\
             sysctl -w net.ipv4.conf.tunl0.rp_filter=0\n",
        );
    }
    out
}

/// Checks a VIP given on the command line.
fn check_vip(vip: IpAddr) -> anyhow::Result<()> {
    if vip.is_unspecified() || vip.is_loopback() || vip.is_multicast() {
        anyhow::bail!("--vip {vip}: not a unicast service address");
    }
    if let IpAddr::V4(v) = vip
        && v.is_broadcast()
    {
        anyhow::bail!("--vip {vip}: not a unicast service address");
    }
    Ok(())
}

/// Checks an interface name before it becomes part of a `/proc/sys` path.
fn check_ifname(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', ' ', '\0']);
    if !ok {
        anyhow::bail!("bad interface name {name:?}");
    }
    Ok(())
}

/// `VIP/32` or `VIP/128`.
fn host_prefix(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(v) => format!("{v}/32"),
        IpAddr::V6(v) => format!("{v}/128"),
    }
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(IP)
        .args(args)
        .output()
        .with_context(|| format!("running {IP} {}", args.join(" ")))?;
    if !out.status.success() {
        anyhow::bail!(
            "{IP} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The addresses on `lo` (any prefix length).
fn lo_addresses() -> anyhow::Result<Vec<IpAddr>> {
    let out = ip(&["-j", "addr", "show", "dev", "lo"])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).context("parsing `ip -j addr show dev lo`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| link.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .collect())
}

/// Writes one sysctl in this process's network namespace.
fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("setting {key}={value}"))
}

/// What `setup` changed and must undo: removes the VIPs it added and
/// detaches the decap program when dropped (also on an error half-way).
#[derive(Debug, Default)]
struct Applied {
    /// VIPs added to `lo` by this process (pre-existing ones are not here).
    added: Vec<IpAddr>,
    /// The attached decap program and its interface.
    decap: Option<(HelperProgram, String)>,
}

impl Drop for Applied {
    fn drop(&mut self) {
        if let Some((prog, iface)) = self.decap.take() {
            drop(prog);
            println!("detached sluice_decap from {iface}");
        }
        for vip in self.added.drain(..).rev() {
            let prefix = host_prefix(vip);
            match ip(&["addr", "del", &prefix, "dev", "lo"]) {
                Ok(_) => println!("removed VIP {prefix} from lo"),
                Err(e) => eprintln!("sluice realserver setup: removing {prefix}: {e:#}"),
            }
        }
    }
}

fn setup(args: &SetupArgs) -> anyhow::Result<ExitCode> {
    let mut vips: Vec<IpAddr> = Vec::with_capacity(args.vip.len());
    for &vip in &args.vip {
        check_vip(vip)?;
        if !vips.contains(&vip) {
            vips.push(vip);
        }
    }
    if args.print_kernel_equivalent {
        print!("{}", kernel_equivalent(&vips));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(iface) = &args.tun_iface {
        check_ifname(iface)?;
    }
    // Handlers first: a signal arriving after "ready" must run the clean-up.
    let stop = StopSignals::install()?;

    let mut applied = Applied::default();
    let present = lo_addresses()?;
    for &vip in &vips {
        let prefix = host_prefix(vip);
        if present.contains(&vip) {
            println!("VIP {vip} is already on lo: leaving it (and leaving it there on exit)");
            continue;
        }
        match vip {
            IpAddr::V4(_) => ip(&["addr", "add", &prefix, "dev", "lo"])?,
            // No duplicate address detection: lo has no neighbours, and a
            // tentative address would refuse connections for a while.
            IpAddr::V6(_) => ip(&["-6", "addr", "add", &prefix, "dev", "lo", "nodad"])?,
        };
        applied.added.push(vip);
        println!("added VIP {prefix} on lo");
    }
    if vips.iter().any(IpAddr::is_ipv4) {
        let ifaces: Vec<&str> = args.tun_iface.as_deref().into_iter().collect();
        for (key, value) in ipv4_sysctls(&ifaces) {
            write_sysctl(&key, value)?;
            println!("sysctl {key}={value}");
        }
    }
    if let Some(iface) = &args.tun_iface {
        let mode = match args.xdp_mode {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        };
        let prog = HelperProgram::attach(Helper::Decap, iface, mode)
            .with_context(|| format!("attaching sluice_decap to {iface}"))?;
        applied.decap = Some((prog, iface.clone()));
        let how = match args.xdp_mode {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        };
        println!(
            "attached sluice_decap to {iface} ({how} XDP): IPIP/IP6IP6 frames are decapsulated"
        );
    }
    println!("ready; undoing on SIGTERM/SIGINT");
    stop.wait();
    drop(applied);
    println!("done");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kernel_equivalent_covers_both_families() {
        let v4: IpAddr = "10.99.255.1".parse().unwrap();
        let v6: IpAddr = "fd99:ffff::1".parse().unwrap();
        let text = kernel_equivalent(&[v4, v6]);
        for line in [
            "ip link add tunl0 type ipip 2>/dev/null || true",
            "ip link set tunl0 up",
            "ip link set ip6tnl0 up",
            "ip addr add 10.99.255.1/32 dev lo",
            "ip -6 addr add fd99:ffff::1/128 dev lo nodad",
            "sysctl -w net.ipv4.conf.all.arp_ignore=1",
            "sysctl -w net.ipv4.conf.all.arp_announce=2",
            "sysctl -w net.ipv4.conf.tunl0.rp_filter=0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let only6 = kernel_equivalent(&[v6]);
        assert!(!only6.contains("tunl0") && !only6.contains("arp_ignore"));
        // Without VIPs, an example VIP is shown.
        assert!(kernel_equivalent(&[]).contains("ip addr add 10.99.255.1/32 dev lo"));
    }

    #[test]
    fn sysctls_cover_all_and_the_interface() {
        let s = ipv4_sysctls(&["eth0"]);
        for key in [
            "net.ipv4.conf.all.arp_ignore",
            "net.ipv4.conf.eth0.arp_ignore",
            "net.ipv4.conf.all.arp_announce",
            "net.ipv4.conf.eth0.arp_announce",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.eth0.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ] {
            assert!(s.iter().any(|(k, _)| k == key), "{key}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
        ] {
            assert!(check_vip(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(check_vip("10.99.255.1".parse().unwrap()).is_ok());
        for bad in ["", "..", "a/b", "x".repeat(16).as_str()] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
        assert!(check_ifname("eth0.100").is_ok());
    }
}
