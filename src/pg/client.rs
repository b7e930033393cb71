//! Running a client with the tunnel up (`pgtunnel TARGET -- COMMAND [ARGS...]`): what the
//! command is given. Pure: the binary runs it.
//!
//! - The environment: `PGHOST` and `PGPORT` point at the tunnel; `PGHOSTADDR` is removed
//!   (libpq would connect there instead of `PGHOST`). `PGSERVICE` is kept but warned about:
//!   a service file's `host`/`port` take precedence over `PGHOST`/`PGPORT`.
//! - The arguments: `{host}` and `{port}` replaced, for tools that do not read libpq's
//!   environment (`{socket}` needs `--socket`, which pgtunnel does not have yet: refused).

use std::net::SocketAddr;

use thiserror::Error;

/// Why the command line cannot be given to the command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// `--` with nothing after it.
    #[error("nothing to run after `--`: give a command, e.g. `-- psql`")]
    Empty,
    /// `{socket}` without a socket to name.
    #[error(
        "`{{socket}}` in `{arg}`: pgtunnel listens on TCP only (no --socket yet); use {{host}} \
         and {{port}}"
    )]
    NoSocket {
        /// The argument holding it.
        arg: String,
    },
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
    local: SocketAddr,
    inherited: impl IntoIterator<Item = &'a str>,
) -> Result<ClientCommand, ClientError> {
    if argv.is_empty() {
        return Err(ClientError::Empty);
    }
    let host = local.ip().to_string();
    let port = local.port().to_string();
    let argv = argv
        .iter()
        .map(|arg| {
            if arg.contains("{socket}") {
                return Err(ClientError::NoSocket { arg: arg.clone() });
            }
            Ok(arg.replace("{host}", &host).replace("{port}", &port))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    let mut remove = Vec::new();
    for name in inherited {
        match name {
            "PGHOSTADDR" => {
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
    Ok(ClientCommand {
        argv,
        set: vec![("PGHOST".into(), host), ("PGPORT".into(), port)],
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
            local,
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
        let c = client_command(&args(&["psql"]), local, ["PGHOSTADDR", "PGSERVICE"]).unwrap();
        assert_eq!(c.remove, ["PGHOSTADDR"]);
        assert_eq!(c.warnings.len(), 2);
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        let c = client_command(&args(&["x", "{host}:{port}"]), v6, []).unwrap();
        assert_eq!(c.argv[1], "::1:5000");
    }

    #[test]
    fn refusals() {
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(client_command(&[], local, []), Err(ClientError::Empty));
        assert!(matches!(
            client_command(&args(&["psql", "-h", "{socket}"]), local, []),
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
