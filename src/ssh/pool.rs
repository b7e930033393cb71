//! Hop sessions shared between chains: tunnels whose chains begin with the same hops use one
//! session per hop (one login to the bastion for three databases behind it), and a chain
//! re-established after losing an inner hop keeps its outer sessions.
//!
//! A hop is the same as another when its identity is ([`HopIdentity`]: address, port, user,
//! host key name, ProxyCommand) and so are all the hops before it. The pool holds sessions
//! weakly: the chains using a session keep it alive, and the last one to let go disconnects
//! it ([`super::session::Sessions::disconnect`]). Bringing a hop up is single-flight: while
//! one chain connects it, the others wanting it wait and then share the result (so a
//! passphrase is asked once, and a bastion is not logged in to twice at start-up).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use crate::error::HopError;
use crate::plan::chain::Hop;

use super::session::HopSession;

/// What makes two hops the same session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HopIdentity {
    host_name: String,
    port: u16,
    user: String,
    host_key_name: String,
    proxy_command: Option<String>,
}

impl HopIdentity {
    pub(crate) fn of(hop: &Hop) -> Self {
        HopIdentity {
            host_name: hop.config.host_name.clone(),
            port: hop.config.port,
            user: hop.config.user.clone(),
            host_key_name: hop.config.known_hosts_name(),
            proxy_command: hop.config.proxy_command.clone(),
        }
    }
}

/// A session in the pool, and the session it runs over (hop 1: none).
#[derive(Default)]
struct Entry {
    session: Weak<HopSession>,
    over: Option<Weak<HopSession>>,
}

impl Entry {
    /// The session, if it is up and runs over `prev` (a session over a previous generation of
    /// the hop before is about to end with it, even if it has not noticed yet).
    fn live(&self, prev: Option<&Arc<HopSession>>) -> Option<Arc<HopSession>> {
        let session = self.session.upgrade().filter(|s| !s.is_closed())?;
        let same_prev = match (&self.over, prev) {
            (None, None) => true,
            (Some(over), Some(prev)) => std::ptr::eq(over.as_ptr(), Arc::as_ptr(prev)),
            _ => false,
        };
        same_prev.then_some(session)
    }
}

type Slot = Arc<tokio::sync::Mutex<Entry>>;

/// Sessions shared by the chains of one process. Cheap to clone (clones share the pool).
#[derive(Clone, Default)]
pub struct HopPool(Arc<Mutex<HashMap<Vec<HopIdentity>, Slot>>>);

impl std::fmt::Debug for HopPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("HopPool").field("hops", &n).finish()
    }
}

impl HopPool {
    /// The session for the hop at the end of `path` over `prev`: the pool's, if it is up
    /// (`true`: shared), else a new one from `connect` (`false`). Callers wanting the same
    /// hop meanwhile wait for this one's result.
    pub(crate) async fn get_or_connect<F, Fut>(
        &self,
        path: &[HopIdentity],
        prev: Option<Arc<HopSession>>,
        connect: F,
    ) -> Result<(Arc<HopSession>, bool), HopError>
    where
        F: FnOnce(Option<Arc<HopSession>>) -> Fut,
        Fut: Future<Output = Result<HopSession, HopError>>,
    {
        let slot = self.slot(path);
        let mut entry = slot.lock().await;
        if let Some(session) = entry.live(prev.as_ref()) {
            return Ok((session, true));
        }
        let session = Arc::new(connect(prev.clone()).await?);
        *entry = Entry {
            session: Arc::downgrade(&session),
            over: prev.as_ref().map(Arc::downgrade),
        };
        Ok((session, false))
    }

    fn slot(&self, path: &[HopIdentity]) -> Slot {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Entries whose sessions are gone are dropped as the map is used (bounded by the
        // chains configured, but a long-running process reconnects many times).
        map.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .map(|e| e.session.strong_count() > 0)
                    .unwrap_or(true)
        });
        map.entry(path.to_vec()).or_default().clone()
    }
}
