//! Failing early: one channel to the target through the chain before the tunnel says it is
//! ready (and again after the chain is re-established, before connections are carried).
//!
//! For a PostgreSQL target the probe sends an `SSLRequest` and reads the one-byte answer
//! (`S`: TLS offered, `N`: not), so a wrong target, a `PermitOpen` refusal, a firewall or a
//! service that is not PostgreSQL fails at start-up, naming the hop, instead of a "ready"
//! tunnel that refuses every connection. Other targets get the channel-open check only.
//! [`judge`] (what an answer means) is pure.

use std::net::SocketAddr;
use std::time::Duration;

use russh::ChannelMsg;
use thiserror::Error;

use crate::error::{ChannelOpenError, HopLabel};
use crate::pg::wire::ssl_request;
use crate::spec::Target;
use crate::ssh::session::Sessions;

/// How long the target gets to answer.
pub const PROBE_TIME: Duration = Duration::from_secs(10);
/// After the one-byte answer, how long to watch for more (a PostgreSQL server sends nothing
/// more; a service that talks first, like an SSH server, does).
const SETTLE: Duration = Duration::from_millis(300);
/// Where the probe's channel says it comes from.
const ORIGINATOR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// What to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing (`--no-probe`).
    Off,
    /// That the last hop opens a channel to the target.
    Channel,
    /// That, and that the target answers an `SSLRequest` as PostgreSQL does.
    Postgres,
}

impl Probe {
    /// The probe for a target: `Off` when `enabled` is false, else PostgreSQL's or the
    /// channel check.
    pub fn for_target(enabled: bool, postgres: bool) -> Probe {
        match (enabled, postgres) {
            (false, _) => Probe::Off,
            (true, true) => Probe::Postgres,
            (true, false) => Probe::Channel,
        }
    }
}

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// Not probed.
    Skipped,
    /// The channel opened.
    ChannelOpened,
    /// PostgreSQL answered the `SSLRequest`.
    Postgres {
        /// It offers TLS (`S`).
        tls: bool,
    },
}

impl Probed {
    /// For the ready output (`None` when skipped).
    pub fn describe(self) -> Option<String> {
        match self {
            Probed::Skipped => None,
            Probed::ChannelOpened => Some("the target accepted a connection".into()),
            Probed::Postgres { tls } => Some(format!(
                "PostgreSQL answered; TLS offered: {}",
                if tls { "yes" } else { "no" }
            )),
        }
    }
}

/// Why the probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The last hop would not open the channel.
    #[error(
        "{hop} {} {target}: {source}{}",
        crate::error::reach_words(source),
        refusal_hint(source, target, hop)
    )]
    Refused {
        /// The last hop.
        hop: HopLabel,
        /// TARGET.
        target: String,
        /// The server's refusal.
        #[source]
        source: ChannelOpenError,
    },
    /// The target did not answer as PostgreSQL does.
    #[error(
        "{target} (reached through {hop}) does not answer as PostgreSQL: {what}. If it is \
         not PostgreSQL, add --no-pg; if it is, check the port"
    )]
    NotPostgres {
        /// The last hop.
        hop: HopLabel,
        /// TARGET.
        target: String,
        /// What it did instead.
        what: String,
    },
    /// No answer in time.
    #[error(
        "{target} (reached through {hop}) did not answer within {}s: a firewall dropping \
         the connection, or a service that waits for the client? (--no-probe skips this check)",
        PROBE_TIME.as_secs()
    )]
    Timeout {
        /// The last hop.
        hop: HopLabel,
        /// TARGET.
        target: String,
    },
    /// The chain has no session (nothing to probe through).
    #[error("no SSH session to probe {target} through")]
    NoSession {
        /// TARGET.
        target: String,
    },
}

/// A hint for a channel refusal, in the hop's terms.
fn refusal_hint(e: &ChannelOpenError, target: &str, hop: &HopLabel) -> String {
    use russh::ChannelOpenFailure as F;
    match e {
        ChannelOpenError::Refused {
            failure: F::AdministrativelyProhibited,
            ..
        } => format!(
            ". The SSH server of {hop} does not allow forwarding to {target} (its PermitOpen, \
             AllowTcpForwarding or a Match block): ask its admin, or check that TARGET is \
             written as that server sees it"
        ),
        ChannelOpenError::Refused {
            failure: F::ConnectFailed,
            ..
        } => format!(
            ". Nothing accepts connections at {target} as seen from {hop} (wrong address or \
             port, the service is down, or a firewall): try `nc -zv` to it from that host"
        ),
        _ => String::new(),
    }
}

/// What an answer to `SSLRequest` means: `Ok(tls)` for PostgreSQL's one byte (`S` or `N`)
/// with nothing after it, else what the service did instead.
pub fn judge(answer: &[u8]) -> Result<bool, String> {
    match answer {
        [] => Err("it closed the connection without answering".into()),
        [b'S'] => Ok(true),
        [b'N'] => Ok(false),
        [b'E', ..] => Err(
            "it answered with an error, as a PostgreSQL older than 7.0 or a \
                          server refusing all connections would"
                .into(),
        ),
        other => {
            let shown: String = other
                .iter()
                .take(24)
                .map(|&b| match b {
                    b' '..=b'~' => char::from(b).to_string(),
                    _ => format!("\\x{b:02x}"),
                })
                .collect();
            Err(format!(
                "it sent {} byte(s) starting \"{shown}\"",
                other.len()
            ))
        }
    }
}

/// Opens one channel to `target` on the last session and checks it as `probe` says.
pub async fn probe(
    sessions: &Sessions,
    target: &Target,
    probe: Probe,
) -> Result<Probed, ProbeError> {
    if probe == Probe::Off {
        return Ok(Probed::Skipped);
    }
    let shown = target.to_string();
    let Some(last) = sessions.last() else {
        return Err(ProbeError::NoSession { target: shown });
    };
    let hop = last.label().clone();
    let mut channel = tokio::time::timeout(PROBE_TIME, last.open_channel_to(target, ORIGINATOR))
        .await
        .map_err(|_| ProbeError::Timeout {
            hop: hop.clone(),
            target: shown.clone(),
        })?
        .map_err(|source| ProbeError::Refused {
            hop: hop.clone(),
            target: shown.clone(),
            source,
        })?;
    if probe == Probe::Channel {
        let _ = channel.close().await;
        return Ok(Probed::ChannelOpened);
    }
    let answer = tokio::time::timeout(PROBE_TIME, ssl_answer(&mut channel))
        .await
        .map_err(|_| ProbeError::Timeout {
            hop: hop.clone(),
            target: shown.clone(),
        })?;
    let _ = channel.close().await;
    judge(&answer)
        .map(|tls| Probed::Postgres { tls })
        .map_err(|what| ProbeError::NotPostgres {
            hop,
            target: shown,
            what,
        })
}

/// Sends `SSLRequest` and collects the answer: the first data, and what follows within
/// [`SETTLE`] (at most 64 bytes are kept).
async fn ssl_answer(channel: &mut russh::Channel<russh::client::Msg>) -> Vec<u8> {
    let mut answer = Vec::new();
    if channel.data(&ssl_request()[..]).await.is_err() {
        return answer;
    }
    // The first data, whenever it comes (bounded by the caller).
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => {
                answer.extend(data.iter().take(64));
                break;
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return answer,
            Some(_) => {}
        }
    }
    // Anything more, shortly after.
    let more = async {
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    let room = 64usize.saturating_sub(answer.len());
                    answer.extend(data.iter().take(room));
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return,
                Some(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(SETTLE, more).await;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(judge(b"S"), Ok(true));
        assert_eq!(judge(b"N"), Ok(false));
        assert!(judge(b"").unwrap_err().contains("without answering"));
        assert!(
            judge(b"SSH-2.0-OpenSSH_9.2\r\n")
                .unwrap_err()
                .contains("\"SSH-2.0-OpenSSH_9.2\\x0d\\x0a\"")
        );
        assert!(judge(b"NO").is_err());
        assert!(judge(b"EXXXX").unwrap_err().contains("error"));
        assert!(judge(b"HTTP/1.1 400").unwrap_err().contains("12 byte(s)"));
    }

    #[test]
    fn which_probe() {
        assert_eq!(Probe::for_target(false, true), Probe::Off);
        assert_eq!(Probe::for_target(true, true), Probe::Postgres);
        assert_eq!(Probe::for_target(true, false), Probe::Channel);
        assert_eq!(
            Probed::Postgres { tls: true }.describe().as_deref(),
            Some("PostgreSQL answered; TLS offered: yes")
        );
        assert_eq!(Probed::Skipped.describe(), None);
    }
}
