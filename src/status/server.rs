//! The status socket's server: one JSON line per connection, then close.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::{ProcessStatus, StatusError, ensure_dir};
use crate::forward::socket;

/// What the server answers with: called once per client, it should be cheap (read counters
/// and the chain's state, no I/O).
pub type Provider = Arc<dyn Fn() -> ProcessStatus + Send + Sync>;

/// How many clients are served at once, and how long one may take to read its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Clients answered at once; more wait in the listen backlog. At least 1.
    pub max_clients: usize,
    /// A client that has not read its whole answer after this long is dropped.
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    /// 8 clients, 2 seconds.
    fn default() -> Self {
        ServerLimits {
            max_clients: 8,
            write_timeout: Duration::from_secs(2),
        }
    }
}

/// A process's status socket, `DIR/<pid>.sock` (mode 0600), answered by a background task.
/// Dropping it (or [`StatusServer::stop`]) stops the task and removes the socket file.
#[derive(Debug)]
pub struct StatusServer {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// [`StatusServer::start_with`] with the default [`ServerLimits`].
    pub fn start(dir: &Path, provider: Provider) -> Result<StatusServer, StatusError> {
        Self::start_with(dir, provider, ServerLimits::default())
    }

    /// Prepares DIR ([`ensure_dir`]), binds `DIR/<pid>.sock` (replacing a stale one left by
    /// an earlier process with this pid; one that something still accepts on is
    /// [`StatusError::InUse`]) and spawns the task answering it. Must be called inside a tokio
    /// runtime (else [`StatusError::Bind`]).
    pub fn start_with(
        dir: &Path,
        provider: Provider,
        limits: ServerLimits,
    ) -> Result<StatusServer, StatusError> {
        let path = dir.join(format!("{}.sock", std::process::id()));
        let bind_err = |source| StatusError::Bind {
            path: path.clone(),
            source,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| bind_err(std::io::Error::other(e)))?;
        ensure_dir(dir)?;
        socket::remove_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        // The directory is private already; the socket's own mode says so too.
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            let _ = std::fs::remove_file(&path);
            return Err(bind_err(e));
        }
        let task = runtime.spawn(serve(listener, provider, limits));
        Ok(StatusServer {
            path,
            task: Some(task),
        })
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops answering (clients being answered are dropped), waits for the task to end and
    /// removes the socket file.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
        // The directory too when no other pgtunnel has a socket there (`remove_dir` only
        // removes an empty one); one starting just now finds it gone and says so.
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The accept loop: a permit per client, taken before accepting, so at most
/// `max_clients` are answered at once. The clients' tasks live in a `JoinSet` owned by this
/// task: aborting it drops them all.
async fn serve(listener: UnixListener, provider: Provider, limits: ServerLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_clients.max(1)));
    let mut clients = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        while clients.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: do not spin.
                tracing::debug!("status socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let provider = provider.clone();
        clients.spawn(async move {
            answer(stream, provider.as_ref(), limits.write_timeout).await;
            drop(permit);
        });
    }
}

/// Writes the snapshot as one line and closes, or gives up after `timeout`.
async fn answer(
    mut stream: UnixStream,
    provider: &(dyn Fn() -> ProcessStatus + Send + Sync),
    timeout: Duration,
) {
    let mut line = match serde_json::to_vec(&provider()) {
        Ok(line) => line,
        Err(e) => {
            tracing::debug!("status socket: cannot serialize the status: {e}");
            return;
        }
    };
    line.push(b'\n');
    let write = async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("status socket: client went away: {e}"),
        Err(_) => tracing::debug!("status socket: client did not read within {timeout:?}"),
    }
}
