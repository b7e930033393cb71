//! `pgtunnel status`'s side: ask every socket in the directory.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinSet;

use super::dir::check_existing;
use super::{ProcessStatus, StatusError};

/// How long one process may take to connect and answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest answer read (a process with thousands of tunnels stays well below it).
pub const MAX_ANSWER: usize = 4 << 20;

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// The processes that answered, sorted by pid.
    pub processes: Vec<ProcessStatus>,
    /// Sockets that did not give a usable answer, sorted by path: worth a warning, not fatal.
    pub problems: Vec<Problem>,
    /// Stale sockets (their process is gone) that were removed.
    pub removed: Vec<PathBuf>,
}

/// A socket that did not give a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The socket.
    pub socket: PathBuf,
    /// What went wrong.
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.socket.display(), self.why)
    }
}

/// [`collect_with`] and [`DEFAULT_TIMEOUT`].
pub async fn collect(dir: &Path) -> Result<Collected, StatusError> {
    collect_with(dir, DEFAULT_TIMEOUT).await
}

/// Asks every `*.sock` socket in DIR at once, each within `timeout`. A DIR that does not exist
/// means no pgtunnel is running (an empty result); one that is not private is an error (its
/// sockets are not trusted). A socket nobody accepts on is stale and removed; other failures
/// are [`Collected::problems`].
pub async fn collect_with(dir: &Path, timeout: Duration) -> Result<Collected, StatusError> {
    let mut found = Collected::default();
    if !check_existing(dir)? {
        return Ok(found);
    }
    let mut queries = JoinSet::new();
    for socket in sockets(dir)? {
        queries.spawn(async move {
            let outcome = query(&socket, timeout).await;
            (socket, outcome)
        });
    }
    while let Some(joined) = queries.join_next().await {
        let Ok((socket, outcome)) = joined else {
            continue;
        };
        match outcome {
            Outcome::Status(status) => found.processes.push(status),
            Outcome::Gone => {}
            Outcome::Stale => match std::fs::remove_file(&socket) {
                Ok(()) => found.removed.push(socket),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => found.problems.push(Problem {
                    socket,
                    why: format!("stale, cannot remove it: {e}"),
                }),
            },
            Outcome::Problem(why) => found.problems.push(Problem { socket, why }),
        }
    }
    found.processes.sort_by_key(|p| p.pid);
    found.problems.sort_by(|a, b| a.socket.cmp(&b.socket));
    found.removed.sort();
    Ok(found)
}

/// The `*.sock` sockets in DIR (other files are left alone).
fn sockets(dir: &Path) -> Result<Vec<PathBuf>, StatusError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StatusError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
        if is_socket && path.extension().is_some_and(|e| e == "sock") {
            found.push(path);
        }
    }
    Ok(found)
}

/// What one socket said.
enum Outcome {
    Status(ProcessStatus),
    /// Nothing accepts on it: its process is gone.
    Stale,
    /// Removed meanwhile (its process stopped).
    Gone,
    Problem(String),
}

async fn query(socket: &Path, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, ask(socket)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Problem(format!("no answer within {}s", timeout.as_secs_f32())),
    }
}

async fn ask(socket: &Path) -> Outcome {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Stale,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Gone,
        Err(e) => return Outcome::Problem(format!("cannot connect: {e}")),
    };
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_ANSWER as u64 + 1);
    if let Err(e) = reader.read_until(b'\n', &mut line).await {
        return Outcome::Problem(format!("cannot read the answer: {e}"));
    }
    if line.len() > MAX_ANSWER {
        return Outcome::Problem(format!("answer longer than {} MiB", MAX_ANSWER >> 20));
    }
    if line.last() != Some(&b'\n') {
        return Outcome::Problem(format!("answer cut short after {} bytes", line.len()));
    }
    match serde_json::from_slice(&line) {
        Ok(status) => Outcome::Status(status),
        Err(e) => Outcome::Problem(format!("unreadable answer: {e}")),
    }
}
