//! systemd's notify protocol (`Type=notify` services), without libsystemd: when
//! `NOTIFY_SOCKET` is set, pgtunnel sends `READY=1` once every tunnel is up, `STATUS=...`
//! when something changes, and `STOPPING=1` when it shuts down. Each message is one datagram
//! on the Unix socket `NOTIFY_SOCKET` names: a path, or `@name` for a socket in the abstract
//! namespace (Linux).
//!
//! Errors are returned; the caller logs them and carries on (a tunnel is not stopped because
//! systemd did not hear about it).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// How long sending one datagram may block (systemd reads them at once; this bounds a
/// receiver that does not).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a notification cannot be sent.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is set to something pgtunnel cannot use; notifications are off.
    #[error("NOTIFY_SOCKET={value:?} ignored: {why}")]
    Unsupported {
        /// The variable's value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// Sending failed.
    #[error("cannot notify systemd on {socket}: {source}")]
    Send {
        /// The socket, as `NOTIFY_SOCKET` names it.
        socket: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket file.
    Path(PathBuf),
    /// A socket in Linux's abstract namespace (`@name`; the name without the `@`).
    Abstract(Vec<u8>),
}

impl NotifyAddr {
    /// Reads `NOTIFY_SOCKET`'s value: an absolute path, or `@name`. Pure.
    ///
    /// ```
    /// use pgtunnel::notify::NotifyAddr;
    /// assert_eq!(NotifyAddr::parse("@sd"), Ok(NotifyAddr::Abstract(b"sd".to_vec())));
    /// assert!(NotifyAddr::parse("vsock:2:1234").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<NotifyAddr, &'static str> {
        if let Some(name) = value.strip_prefix('@') {
            if name.is_empty() {
                return Err("an abstract socket needs a name after '@'");
            }
            if !cfg!(target_os = "linux") {
                return Err("abstract sockets exist on Linux only");
            }
            return Ok(NotifyAddr::Abstract(name.as_bytes().to_vec()));
        }
        if value.starts_with("vsock:") {
            return Err("AF_VSOCK notify sockets are not supported");
        }
        if !value.starts_with('/') {
            return Err("not an absolute path nor @name");
        }
        Ok(NotifyAddr::Path(PathBuf::from(value)))
    }
}

/// Sends notifications to systemd. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    addr: NotifyAddr,
    shown: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (`env` reads an environment variable): `Ok(None)` when it is unset
    /// or empty (not under systemd, or not `Type=notify`), [`NotifyError::Unsupported`] when
    /// it cannot be used (the caller logs it; notifications are then off).
    pub fn from_env(
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(value) = env("NOTIFY_SOCKET").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        Notifier::new(&value).map(Some)
    }

    /// For the socket `value` names (as in `NOTIFY_SOCKET`).
    pub fn new(value: &str) -> Result<Notifier, NotifyError> {
        let addr = NotifyAddr::parse(value).map_err(|why| NotifyError::Unsupported {
            value: value.to_string(),
            why,
        })?;
        Ok(Notifier {
            addr,
            shown: value.to_string(),
        })
    }

    /// Where notifications go.
    pub fn addr(&self) -> &NotifyAddr {
        &self.addr
    }

    /// `READY=1`: every tunnel is up.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send("READY=1")
    }

    /// `STATUS=...`: a one-line status `systemctl status` shows (newlines become spaces).
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        self.send(&status_message(text))
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// Sends `message` (newline-separated `KEY=VALUE` assignments) as one datagram.
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        let send_err = |source| NotifyError::Send {
            socket: self.shown.clone(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(send_err)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(send_err)?;
        let sent = match &self.addr {
            NotifyAddr::Path(path) => socket.send_to(message.as_bytes(), path),
            NotifyAddr::Abstract(name) => send_abstract(&socket, name, message.as_bytes()),
        }
        .map_err(send_err)?;
        if sent != message.len() {
            return Err(send_err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", message.len()),
            )));
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// `STATUS=text` on one line: each run of whitespace or control characters (newlines
/// included) becomes one space, ends trimmed. Pure.
///
/// ```
/// assert_eq!(pgtunnel::notify::status_message("2 tunnels up\nbastion lost"),
///            "STATUS=2 tunnels up bastion lost");
/// ```
pub fn status_message(text: &str) -> String {
    let mut out = String::from("STATUS=");
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_control() || c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_values() {
        assert_eq!(
            NotifyAddr::parse("/run/systemd/notify"),
            Ok(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            NotifyAddr::parse("@/org/freedesktop/systemd1/notify/123"),
            Ok(NotifyAddr::Abstract(
                b"/org/freedesktop/systemd1/notify/123".to_vec()
            ))
        );
        for bad in ["@", "relative/sock", "vsock:2:1234", "vsock-mux:/x"] {
            assert!(NotifyAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_env_unset_empty_usable_and_not() {
        assert_eq!(Notifier::from_env(&|_| None).unwrap(), None);
        assert_eq!(Notifier::from_env(&|_| Some(String::new())).unwrap(), None);
        let n = Notifier::from_env(&|k| (k == "NOTIFY_SOCKET").then(|| "/run/n".to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(n.addr(), &NotifyAddr::Path("/run/n".into()));
        let err = Notifier::from_env(&|_| Some("x".to_string())).unwrap_err();
        assert!(
            err.to_string().starts_with("NOTIFY_SOCKET=\"x\" ignored"),
            "{err}"
        );
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_message("a\n\n b\r\tc \x1b"), "STATUS=a b c");
        assert_eq!(status_message(""), "STATUS=");
        assert_eq!(
            status_message("ready: 3 tunnels"),
            "STATUS=ready: 3 tunnels"
        );
    }
}
