//! `pgtunnel check`: connect every hop, open one channel to the target, and say what
//! happened at each step (address, time, host key and what vouched for it, authentication,
//! what was negotiated; the target; the path report and what pg_hba.conf will see), as text
//! or JSON. Opens no listener.
//!
//! [`hops_from_events`] (the per-hop facts from the connection's events) and the renderings
//! are pure; [`check`] does the I/O.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{ErrorKind, HopLabel, chain_of};
use crate::event::{Event, Observer};
use crate::forward::probe::{self, Probe, Probed};
use crate::plan::chain::Chain;
use crate::plan::path::{self, Negotiated, PathReport};
use crate::ssh::session::{ConnectOptions, connect_chain};

/// What one hop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopReport {
    /// The hop.
    pub hop: HopLabel,
    /// How it was reached ("TCP", "through hop 1", ...), if it was tried.
    pub via: Option<String>,
    /// From starting to connect to being authenticated.
    pub time: Option<Duration>,
    /// The host key's SHA256 fingerprint.
    pub host_key: Option<String>,
    /// What vouched for it (the known_hosts line, a CA, the policy).
    pub verified_by: Option<String>,
    /// The user and the method (and key) that worked.
    pub authenticated: Option<String>,
    /// What was negotiated.
    pub negotiated: Option<Negotiated>,
}

impl HopReport {
    /// Whether every step of the hop succeeded.
    pub fn ok(&self) -> bool {
        self.authenticated.is_some()
    }
}

/// The whole check.
#[derive(Debug)]
pub struct CheckReport {
    /// Every hop of the chain, tried or not.
    pub hops: Vec<HopReport>,
    /// The target, when the chain came up.
    pub target: Option<Result<Probed, String>>,
    /// The path report (with what was negotiated, when the chain came up).
    pub path: PathReport,
    /// The failing step's error, if any.
    pub failure: Option<(ErrorKind, String)>,
}

impl CheckReport {
    /// The failing step's kind (`None`: everything worked).
    pub fn failed(&self) -> Option<ErrorKind> {
        self.failure.as_ref().map(|(k, _)| *k)
    }

    /// The report as JSON (field by field: `ok`, `hops[]`, `target`, `path`, `error`).
    pub fn to_json(&self) -> Value {
        let hops: Vec<Value> = self
            .hops
            .iter()
            .map(|h| {
                json!({
                    "index": h.hop.index,
                    "name": h.hop.name,
                    "address": h.hop.addr,
                    "via": h.via,
                    "ok": h.ok(),
                    "time_ms": h.time.map(|t| t.as_millis() as u64),
                    "host_key": h.host_key,
                    "verified_by": h.verified_by,
                    "authenticated": h.authenticated,
                    "kex": h.negotiated.as_ref().map(|n| n.kex.clone()),
                    "cipher": h.negotiated.as_ref().map(|n| n.cipher.clone()),
                    "host_key_algorithm": h.negotiated.as_ref().map(|n| n.host_key.clone()),
                    "post_quantum": h.negotiated.as_ref().map(Negotiated::post_quantum),
                })
            })
            .collect();
        let target = match &self.target {
            None => Value::Null,
            Some(Ok(Probed::Postgres { tls })) => {
                json!({"ok": true, "postgres": true, "tls_offered": tls})
            }
            Some(Ok(_)) => json!({"ok": true, "postgres": false}),
            Some(Err(e)) => json!({"ok": false, "error": e}),
        };
        let segments: Vec<Value> = self
            .path
            .segments
            .iter()
            .map(|s| {
                json!({
                    "from": s.from,
                    "to": s.to,
                    "detail": s.detail,
                    "leaves_machine_unencrypted": s.protection.leaves_machine_unencrypted(),
                })
            })
            .collect();
        json!({
            "ok": self.failure.is_none(),
            "hops": hops,
            "target": target,
            "path": {"segments": segments, "notes": self.path.notes},
            "error": self.failure.as_ref().map(|(_, e)| e.clone()),
        })
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.hops {
            let state = match (&h.via, h.ok()) {
                (_, true) => "ok",
                (Some(_), false) => "FAILED",
                (None, false) => "not tried",
            };
            writeln!(f, "{}: {state}", h.hop)?;
            if let Some(via) = &h.via {
                writeln!(f, "  reached      {via}")?;
            }
            if let Some(t) = h.time {
                writeln!(f, "  time         {} ms", t.as_millis())?;
            }
            if let (Some(key), Some(by)) = (&h.host_key, &h.verified_by) {
                writeln!(f, "  host key     {key} ({by})")?;
            }
            if let Some(auth) = &h.authenticated {
                writeln!(f, "  logged in    {auth}")?;
            }
            if let Some(n) = &h.negotiated {
                writeln!(f, "  negotiated   {}", n.summary())?;
            }
        }
        match &self.target {
            Some(Ok(probed)) => writeln!(
                f,
                "target: {}",
                probed.describe().unwrap_or_else(|| "not probed".into())
            )?,
            Some(Err(e)) => writeln!(f, "target: FAILED: {e}")?,
            None => writeln!(f, "target: not tried (the chain did not come up)")?,
        }
        // A chain that did not come up has no path to report (nor pg_hba.conf advice): the
        // failure follows, alone (issue 14). `--json` keeps the planned path.
        if self.target.is_some() {
            writeln!(f)?;
            write!(f, "{}", self.path)?;
        }
        if let Some((_, e)) = &self.failure {
            writeln!(f)?;
            writeln!(f, "check failed: {e}")?;
        }
        Ok(())
    }
}

/// The per-hop facts from the events of connecting `chain` (with the time each came, from
/// the start), and what each hop negotiated (outermost first, as far as the chain came up).
pub fn hops_from_events(
    chain: &Chain,
    events: &[(Duration, Event)],
    negotiated: &[Option<Negotiated>],
) -> Vec<HopReport> {
    chain
        .hops
        .iter()
        .enumerate()
        .map(|(i, hop)| {
            let label = hop.label();
            let mine = |e: &HopLabel| e.index == label.index;
            let mut report = HopReport {
                hop: label.clone(),
                via: None,
                time: None,
                host_key: None,
                verified_by: None,
                authenticated: None,
                negotiated: negotiated.get(i).cloned().flatten(),
            };
            let mut started = None;
            for (at, event) in events {
                match event {
                    Event::Connecting { hop, how } if mine(hop) => {
                        report.via = Some(how.clone());
                        started = Some(*at);
                    }
                    Event::HostKeyVerified {
                        hop,
                        fingerprint,
                        how,
                    } if mine(hop) => {
                        report.host_key = Some(fingerprint.clone());
                        report.verified_by = Some(how.clone());
                    }
                    Event::Authenticated { hop, how } if mine(hop) => {
                        report.authenticated = Some(how.clone());
                        report.time = started.map(|s| at.saturating_sub(s));
                    }
                    _ => {}
                }
            }
            report
        })
        .collect()
}

/// Connects `chain` (events also go to `opts.observer`), probes the target as `probe` says,
/// then disconnects; everything that happened is in the report.
pub async fn check(chain: &Chain, opts: &ConnectOptions, probe: Probe) -> CheckReport {
    let start = Instant::now();
    let events: Arc<Mutex<Vec<(Duration, Event)>>> = Arc::default();
    let sink = events.clone();
    let outer = opts.observer.clone();
    let opts = ConnectOptions {
        observer: Observer::new(move |e: Event| {
            if let Ok(mut list) = sink.lock() {
                list.push((start.elapsed(), e.clone()));
            }
            outer.emit(e);
        }),
        ..opts.clone()
    };
    let listen = crate::spec::DEFAULT_LISTEN;
    let (negotiated, target, failure, path) = match connect_chain(chain, &opts).await {
        Ok(sessions) => {
            let negotiated = sessions.negotiated();
            let path = path::analyze(listen, chain).with_negotiated(&negotiated);
            let probed = probe::probe(&sessions, &chain.target, probe).await;
            sessions.disconnect().await;
            let failure = probed
                .as_ref()
                .err()
                .map(|e| (ErrorKind::Probe, e.to_string()));
            let target = Some(probed.map_err(|e| e.to_string()));
            (negotiated, target, failure, path)
        }
        Err(e) => {
            let failure = Some((e.kind(), chain_of(&e)));
            (Vec::new(), None, failure, path::analyze(listen, chain))
        }
    };
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    CheckReport {
        hops: hops_from_events(chain, &events, &negotiated),
        target,
        path,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chain::fixture;

    #[test]
    fn hops_take_their_events() {
        let hop = fixture::hop("Host h\n  HostName 10.0.0.5\n");
        let chain = Chain {
            hops: vec![hop.clone()],
            target: crate::spec::parse_target("localhost").unwrap(),
            target_alias: None,
            names: Default::default(),
        };
        let label = hop.label();
        let ms = Duration::from_millis;
        let events = vec![
            (
                ms(10),
                Event::Connecting {
                    hop: label.clone(),
                    how: "TCP".into(),
                },
            ),
            (
                ms(30),
                Event::HostKeyVerified {
                    hop: label.clone(),
                    fingerprint: "SHA256:abc".into(),
                    how: "known_hosts /k:1".into(),
                },
            ),
            (
                ms(55),
                Event::Authenticated {
                    hop: label.clone(),
                    how: "me (publickey)".into(),
                },
            ),
        ];
        let hops = hops_from_events(&chain, &events, &[]);
        assert_eq!(hops.len(), 1);
        let h = &hops[0];
        assert!(h.ok());
        assert_eq!(h.time, Some(ms(45)));
        assert_eq!(h.verified_by.as_deref(), Some("known_hosts /k:1"));
        // Nothing happened: not tried.
        let none = hops_from_events(&chain, &[], &[]);
        assert!(!none[0].ok() && none[0].via.is_none());
        let report = CheckReport {
            hops,
            target: Some(Ok(Probed::Postgres { tls: true })),
            path: crate::plan::path::analyze(crate::spec::DEFAULT_LISTEN, &chain),
            failure: None,
        };
        let j = report.to_json();
        assert_eq!(j["ok"], true);
        assert_eq!(j["hops"][0]["time_ms"], 45);
        assert_eq!(j["target"]["tls_offered"], true);
        assert!(report.to_string().contains("logged in    me (publickey)"));
        assert!(report.to_string().contains("pg_hba.conf"));
        // The chain did not come up: no path report, the failure last.
        let failed = CheckReport {
            target: None,
            failure: Some((ErrorKind::Connect, "hop 1 (h): cannot resolve h".into())),
            ..report
        };
        let text = failed.to_string();
        assert!(
            !text.contains("pg_hba") && !text.contains("SSH (encrypted)"),
            "{text}"
        );
        assert!(
            text.ends_with("\ncheck failed: hop 1 (h): cannot resolve h\n"),
            "{text}"
        );
        assert!(failed.to_json()["path"]["segments"].is_array());
    }
}
