//! `--socket DIR`: a private Unix socket, `DIR/.s.PGSQL.<port>` as the PostgreSQL server
//! names its own, so `psql -h DIR` works and no other local user can use the tunnel.
//!
//! DIR is created with mode 0700; an existing DIR must be a directory owned by the user and
//! not accessible to group or others. A socket file left by a pgtunnel that was killed is
//! detected (nothing accepts on it) and replaced; one that a running process still serves is
//! refused. The socket is removed when the [`SocketListener`] is dropped.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::net::UnixListener;

/// Why `--socket DIR` cannot be used.
#[derive(Debug, Error)]
pub enum SocketError {
    /// DIR could not be created or inspected.
    #[error("--socket {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// DIR is not private to the user.
    #[error(
        "--socket {}: {why}; it must be a directory owned by you and not accessible to others \
         (chmod 700), or a new path pgtunnel creates",
        dir.display()
    )]
    NotPrivate {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another process serves the socket.
    #[error("{} is in use by another process (a pgtunnel still running?)", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way, or binding failed.
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The socket's file name for `port`, as PostgreSQL names it.
pub fn socket_name(port: u16) -> String {
    format!(".s.PGSQL.{port}")
}

/// Why a directory with this owner and mode is not private to `uid` (`None`: it is).
pub fn not_private(owner: u32, mode: u32, uid: u32) -> Option<String> {
    if owner != uid {
        Some(format!("it is owned by uid {owner}, not by you ({uid})"))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "its mode is {:04o}: group or others may use it",
            mode & 0o7777
        ))
    } else {
        None
    }
}

/// A bound `DIR/.s.PGSQL.<port>`, removed on drop.
#[derive(Debug)]
pub struct SocketListener {
    listener: Option<UnixListener>,
    dir: PathBuf,
    path: PathBuf,
}

impl SocketListener {
    /// Prepares DIR and binds the socket for `port` in it (see the module docs).
    pub fn bind(dir: &Path, port: u16) -> Result<SocketListener, SocketError> {
        prepare_dir(dir)?;
        let path = dir.join(socket_name(port));
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| SocketError::Bind {
            path: path.clone(),
            source,
        })?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
        Ok(SocketListener {
            listener: Some(listener),
            dir: dir.to_path_buf(),
            path,
        })
    }

    /// The listener (once: the tunnel takes it).
    pub fn take(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }

    /// DIR (what `psql -h` takes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates DIR with mode 0700 (and its missing parents), or checks an existing DIR with
/// [`check_private`]. Errors are [`SocketError::Dir`] or [`SocketError::NotPrivate`].
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), SocketError> {
    let dir_err = |source| SocketError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err),
        Err(e) => Err(dir_err(e)),
        Ok(meta) => check_private(dir, &meta),
    }
}

/// [`SocketError::NotPrivate`] unless DIR (whose `symlink_metadata` is `meta`) is a directory
/// owned by the user and not accessible to group or others.
pub(crate) fn check_private(dir: &Path, meta: &std::fs::Metadata) -> Result<(), SocketError> {
    let why = if meta.is_dir() {
        not_private(meta.uid(), meta.mode(), nix::unistd::getuid().as_raw())
    } else {
        Some("it is not a directory".into())
    };
    match why {
        Some(why) => Err(SocketError::NotPrivate {
            dir: dir.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Removes a socket left behind by a process that no longer serves it: errors are
/// [`SocketError::InUse`] (something accepts on it) or [`SocketError::Bind`] (not a socket, or
/// it cannot be removed).
pub(crate) fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(SocketError::Bind {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(_) => std::fs::remove_file(path).map_err(|source| SocketError::Bind {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_and_names() {
        assert_eq!(socket_name(5432), ".s.PGSQL.5432");
        assert_eq!(not_private(1000, 0o40700, 1000), None);
        assert!(not_private(1000, 0o40750, 1000).unwrap().contains("0750"));
        assert!(not_private(0, 0o40700, 1000).unwrap().contains("uid 0"));
    }

    #[tokio::test]
    async fn binds_replaces_stale_refuses_in_use_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new/sock");
        let mut first = SocketListener::bind(&dir, 5432).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let path = first.path().to_path_buf();
        assert!(path.ends_with(".s.PGSQL.5432"));
        // Served: refused.
        assert!(matches!(
            SocketListener::bind(&dir, 5432),
            Err(SocketError::InUse { .. })
        ));
        // Left behind (nothing accepts any more): replaced.
        drop(first.take());
        std::mem::forget(first);
        assert!(path.exists());
        let second = SocketListener::bind(&dir, 5432).unwrap();
        drop(second);
        assert!(!path.exists(), "removed on drop");
        // A directory others may use is refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            SocketListener::bind(&dir, 5432),
            Err(SocketError::NotPrivate { .. })
        ));
    }
}
