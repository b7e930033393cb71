//! Running a client with the tunnel up (`pgtunnel TARGET -- COMMAND [ARGS...]`): what the
//! command is given. Pure: the binary runs it.
//!
//! - The environment: `PGHOST` and `PGPORT` point at the tunnel; `PGHOSTADDR` is removed
//!   (libpq would connect there instead of `PGHOST`). `PGSERVICE` is kept but warned about:
//!   a service file's `host`/`port` take precedence over `PGHOST`/`PGPORT`.
//! - The arguments: `{host}`, `{port}` and `{socket}` replaced, for tools that do not read
//!   libpq's environment (`{socket}` is the `--socket` directory; without one it is refused).
//!   With a socket, `PGHOST` is that directory.
//! - With a verified TLS connection asked for (`--sslmode verify-full`, [`Tls`]), `PGHOST`
//!   is the server's real name (what its certificate and `.pgpass` name), `PGHOSTADDR` the
//!   tunnel, and `PGSSLMODE` the mode; [`conninfo`] gives the same as a libpq keyword string
//!   and a URI, for the ready line and the path report.

use std::net::SocketAddr;
use std::path::Path;

use thiserror::Error;

/// Why the command line cannot be given to the command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// `--` with nothing after it.
    #[error("nothing to run after `--`: give a command, e.g. `-- psql`")]
    Empty,
    /// `--sslmode` with only a Unix socket: libpq uses no TLS there.
    #[error(
        "--sslmode needs a TCP listener (-L): libpq uses no TLS over a Unix socket, so \
         --socket alone would quietly connect without it"
    )]
    TlsWithoutTcp,
    /// `{socket}` without a socket to name.
    #[error(
        "`{{socket}}` in `{arg}`: there is no socket without --socket DIR; use {{host}} and {{port}}"
    )]
    NoSocket {
        /// The argument holding it.
        arg: String,
    },
}

/// The `sslmode` asked for with `--sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `require`: encrypted, certificate not checked.
    Require,
    /// `verify-ca`: the certificate is signed by a trusted CA.
    VerifyCa,
    /// `verify-full`: and it names the server.
    VerifyFull,
}

impl SslMode {
    /// libpq's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// From libpq's name (`require`, `verify-ca`, `verify-full`).
    pub fn parse(s: &str) -> Result<SslMode, String> {
        match s {
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(format!(
                "`{s}`: one of require, verify-ca, verify-full (weaker modes need no option)"
            )),
        }
    }
}

/// TLS to the server through the tunnel: the server's real name and the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls<'a> {
    /// The target's host name as the server's certificate names it.
    pub server_name: &'a str,
    /// `sslmode`.
    pub mode: SslMode,
}

/// How to connect to a tunnel at `local`: a libpq keyword string and the same as a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// `host=... port=...` (with `tls`: `host=NAME hostaddr=IP port=N sslmode=MODE`).
    pub keywords: String,
    /// `postgresql://...`.
    pub uri: String,
}

/// Where the tunnel takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// A TCP address (`--listen`).
    Tcp(SocketAddr),
    /// `DIR/.s.PGSQL.<port>` (`--socket DIR`): libpq's `host=DIR port=<port>`.
    Socket {
        /// DIR.
        dir: &'a Path,
        /// The port in the socket's name.
        port: u16,
    },
}

impl From<SocketAddr> for Endpoint<'_> {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::Tcp(addr)
    }
}

/// The connection parameters for a tunnel at `local` (see [`ConnInfo`]). Over a Unix socket
/// libpq uses no TLS, so `tls` applies to a TCP endpoint only (the binary refuses
/// `--sslmode` without one).
pub fn conninfo(local: Endpoint<'_>, tls: Option<Tls<'_>>) -> ConnInfo {
    let local = match local {
        Endpoint::Tcp(addr) => addr,
        Endpoint::Socket { dir, port } => {
            let dir = dir.display();
            return ConnInfo {
                keywords: format!("host={dir} port={port}"),
                uri: format!("postgresql://?host={dir}&port={port}"),
            };
        }
    };
    let ip = local.ip().to_string();
    let port = local.port();
    let uri_host = |h: &str| {
        if h.contains(':') {
            format!("[{h}]")
        } else {
            h.to_string()
        }
    };
    match tls {
        None => ConnInfo {
            keywords: format!("host={ip} port={port}"),
            uri: format!("postgresql://{}:{port}", uri_host(&ip)),
        },
        Some(Tls { server_name, mode }) => ConnInfo {
            keywords: format!(
                "host={server_name} hostaddr={ip} port={port} sslmode={}",
                mode.as_str()
            ),
            uri: format!(
                "postgresql://{}:{port}?hostaddr={ip}&sslmode={}",
                uri_host(server_name),
                mode.as_str()
            ),
        },
    }
}

/// What the command gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCommand {
    /// The program and its arguments, placeholders replaced.
    pub argv: Vec<String>,
    /// Variables to set.
    pub set: Vec<(String, String)>,
    /// Variables to remove.
    pub remove: Vec<String>,
    /// Warnings for the user (about the inherited environment).
    pub warnings: Vec<String>,
}

/// The command for a tunnel listening on `local`, given `argv` as typed after `--` and the
/// inherited environment's names (for the warnings).
pub fn client_command<'a>(
    argv: &[String],
    local: Endpoint<'_>,
    tls: Option<Tls<'_>>,
    inherited: impl IntoIterator<Item = &'a str>,
) -> Result<ClientCommand, ClientError> {
    if argv.is_empty() {
        return Err(ClientError::Empty);
    }
    let (host, port, socket) = match local {
        Endpoint::Tcp(addr) => (addr.ip().to_string(), addr.port().to_string(), None),
        Endpoint::Socket { dir, port } => {
            let dir = dir.display().to_string();
            (dir.clone(), port.to_string(), Some(dir))
        }
    };
    let argv = argv
        .iter()
        .map(|arg| {
            let arg = match (&socket, arg.contains("{socket}")) {
                (None, true) => return Err(ClientError::NoSocket { arg: arg.clone() }),
                (Some(dir), true) => arg.replace("{socket}", dir),
                (_, false) => arg.clone(),
            };
            Ok(arg.replace("{host}", &host).replace("{port}", &port))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    let mut remove = Vec::new();
    for name in inherited {
        match name {
            // With TLS, pgtunnel sets it itself.
            "PGHOSTADDR" if tls.is_none() => {
                remove.push(name.to_string());
                warnings.push(
                    "PGHOSTADDR is set in the environment: removed for the command, which \
                     would otherwise connect there instead of the tunnel"
                        .to_string(),
                );
            }
            "PGSERVICE" => warnings.push(
                "PGSERVICE is set: the service file's host and port take precedence over \
                 the tunnel's PGHOST/PGPORT; unset it if the command does not reach the tunnel"
                    .to_string(),
            ),
            _ => {}
        }
    }
    let set = match tls {
        None => vec![("PGHOST".into(), host), ("PGPORT".into(), port)],
        Some(tls) => vec![
            ("PGHOST".into(), tls.server_name.to_string()),
            ("PGHOSTADDR".into(), host),
            ("PGPORT".into(), port),
            ("PGSSLMODE".into(), tls.mode.as_str().to_string()),
        ],
    };
    Ok(ClientCommand {
        argv,
        set,
        remove,
        warnings,
    })
}

/// The exit status to pass on: the command's code, or 128 + the signal that ended it.
pub fn exit_status(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn environment_and_placeholders() {
        let local: SocketAddr = "127.0.0.1:63333".parse().unwrap();
        let c = client_command(
            &args(&["pg_dump", "-h", "{host}", "--port={port}", "shop"]),
            local.into(),
            None,
            ["HOME", "PGUSER"],
        )
        .unwrap();
        assert_eq!(
            c.argv,
            args(&["pg_dump", "-h", "127.0.0.1", "--port=63333", "shop"])
        );
        assert_eq!(
            c.set,
            vec![
                ("PGHOST".to_string(), "127.0.0.1".to_string()),
                ("PGPORT".to_string(), "63333".to_string())
            ]
        );
        assert!(c.remove.is_empty() && c.warnings.is_empty());
        let c = client_command(
            &args(&["psql"]),
            local.into(),
            None,
            ["PGHOSTADDR", "PGSERVICE"],
        )
        .unwrap();
        assert_eq!(c.remove, ["PGHOSTADDR"]);
        assert_eq!(c.warnings.len(), 2);
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        let c = client_command(&args(&["x", "{host}:{port}"]), v6.into(), None, []).unwrap();
        assert_eq!(c.argv[1], "::1:5000");
    }

    #[test]
    fn verified_tls_names_the_server() {
        let local: SocketAddr = "127.0.0.1:63333".parse().unwrap();
        let tls = Tls {
            server_name: "db.foo.com",
            mode: SslMode::VerifyFull,
        };
        let c = conninfo(local.into(), Some(tls));
        assert_eq!(
            c.keywords,
            "host=db.foo.com hostaddr=127.0.0.1 port=63333 sslmode=verify-full"
        );
        assert_eq!(
            c.uri,
            "postgresql://db.foo.com:63333?hostaddr=127.0.0.1&sslmode=verify-full"
        );
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        let plain = conninfo(v6.into(), None);
        assert_eq!(
            (plain.keywords.as_str(), plain.uri.as_str()),
            ("host=::1 port=5", "postgresql://[::1]:5")
        );
        let cmd =
            client_command(&args(&["psql"]), local.into(), Some(tls), ["PGHOSTADDR"]).unwrap();
        assert!(cmd.remove.is_empty() && cmd.warnings.is_empty());
        assert!(cmd.set.contains(&("PGHOST".into(), "db.foo.com".into())));
        assert!(cmd.set.contains(&("PGHOSTADDR".into(), "127.0.0.1".into())));
        assert!(
            cmd.set
                .contains(&("PGSSLMODE".into(), "verify-full".into()))
        );
        assert_eq!(SslMode::parse("verify-ca"), Ok(SslMode::VerifyCa));
        assert!(SslMode::parse("prefer").is_err());
    }

    #[test]
    fn a_socket_directory() {
        let socket = Endpoint::Socket {
            dir: Path::new("/run/user/1000/pgt"),
            port: 5432,
        };
        let c = client_command(
            &args(&["psql", "-h", "{socket}", "-p", "{port}"]),
            socket,
            None,
            [],
        )
        .unwrap();
        assert_eq!(
            c.argv,
            args(&["psql", "-h", "/run/user/1000/pgt", "-p", "5432"])
        );
        assert!(
            c.set
                .contains(&("PGHOST".into(), "/run/user/1000/pgt".into()))
        );
        let info = conninfo(socket, None);
        assert_eq!(info.keywords, "host=/run/user/1000/pgt port=5432");
        assert_eq!(info.uri, "postgresql://?host=/run/user/1000/pgt&port=5432");
    }

    #[test]
    fn refusals() {
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            client_command(&[], local.into(), None, []),
            Err(ClientError::Empty)
        );
        assert!(matches!(
            client_command(&args(&["psql", "-h", "{socket}"]), local.into(), None, []),
            Err(ClientError::NoSocket { .. })
        ));
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(Some(0), None), 0);
        assert_eq!(exit_status(Some(3), None), 3);
        assert_eq!(exit_status(None, Some(2)), 130);
        assert_eq!(exit_status(None, Some(15)), 143);
        assert_eq!(exit_status(Some(300), None), 1);
    }
}
