//! systemd's readiness protocol (sd_notify(3)) for `Type=notify` units:
//! `sluice run` sends `READY=1` once everything it serves is up and
//! `STOPPING=1` when it begins a graceful shutdown.
//!
//! The protocol is one datagram per message on the unix socket named by
//! `$NOTIFY_SOCKET`: a path, or an abstract name written with a leading
//! `@`. Without the variable (not started by systemd) nothing is sent.
//! A failure to notify is reported and otherwise ignored: the daemon
//! serves either way, and systemd times the start out if `READY=1` never
//! arrives.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub(crate) const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// Sent once the daemon serves.
pub(crate) const READY: &str = "READY=1";
/// Sent when a graceful shutdown begins.
pub(crate) const STOPPING: &str = "STOPPING=1";

/// Sends `state` to `$NOTIFY_SOCKET` if it is set; a failure is printed
/// (with the socket) and otherwise ignored.
pub(crate) fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return;
    };
    if let Err(e) = send(&socket, state) {
        eprintln!(
            "sluice: notifying systemd ({state}) on {}: {e}",
            socket.to_string_lossy()
        );
    }
}

/// Sends `state` as one datagram to `socket`: a path, or `@name` for an
/// abstract socket.
pub(crate) fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let tx = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            tx.send_to_addr(state.as_bytes(), &addr)?
        }
        None => tx.send_to(state.as_bytes(), socket)?,
    };
    if sent != state.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            state.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Largest message the tests receive.
    const BUF: usize = 256;

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; BUF];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), READY).unwrap();
        send(path.as_os_str(), STOPPING).unwrap();
        assert_eq!(recv(&rx), "READY=1");
        assert_eq!(recv(&rx), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("sluice-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), READY).unwrap();
        assert_eq!(recv(&rx), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = send(dir.path().join("absent").as_os_str(), READY).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
