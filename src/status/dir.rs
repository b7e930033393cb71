//! Where the status sockets live.

use std::path::{Path, PathBuf};

use super::StatusError;
use crate::forward::socket;

/// The status directory: `$XDG_RUNTIME_DIR/pgtunnel` when `XDG_RUNTIME_DIR` is set and
/// absolute, else `pgtunnel-<uid>` in the temp dir (`$TMPDIR` when set and absolute, else
/// `/tmp`). `env` reads an environment variable. Pure.
///
/// ```
/// # use std::path::Path;
/// let env = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".to_string());
/// assert_eq!(pgtunnel::status::runtime_dir(&env, 1000), Path::new("/run/user/1000/pgtunnel"));
/// assert_eq!(pgtunnel::status::runtime_dir(&|_| None, 1000), Path::new("/tmp/pgtunnel-1000"));
/// ```
pub fn runtime_dir(env: &impl Fn(&str) -> Option<String>, uid: u32) -> PathBuf {
    match absolute(env, "XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("pgtunnel"),
        None => temp_dir(env, uid),
    }
}

/// Where `pgtunnel status` looks: [`runtime_dir`], then the temp-dir fallback when that is a
/// different directory (a pgtunnel started without `XDG_RUNTIME_DIR`, e.g. by a system
/// service, is found there). Pure.
pub fn search_dirs(env: &impl Fn(&str) -> Option<String>, uid: u32) -> Vec<PathBuf> {
    let mut dirs = vec![runtime_dir(env, uid)];
    let fallback = temp_dir(env, uid);
    if !dirs.contains(&fallback) {
        dirs.push(fallback);
    }
    dirs
}

/// Creates DIR with mode 0700 (and missing parents), or checks that an existing DIR is a
/// directory owned by the user and not accessible to group or others (the checks of
/// `--socket DIR`). A symbolic link is refused.
pub fn ensure_dir(dir: &Path) -> Result<(), StatusError> {
    socket::prepare_dir(dir).map_err(StatusError::from)
}

/// For a reader: `Ok(false)` when DIR does not exist, `Ok(true)` when it is private, an error
/// when it is not (sockets in a directory others can write to are not trusted).
pub(super) fn check_existing(dir: &Path) -> Result<bool, StatusError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StatusError::Dir {
            dir: dir.to_path_buf(),
            source,
        }),
        Ok(meta) => socket::check_private(dir, &meta)
            .map(|()| true)
            .map_err(StatusError::from),
    }
}

fn temp_dir(env: &impl Fn(&str) -> Option<String>, uid: u32) -> PathBuf {
    absolute(env, "TMPDIR")
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("pgtunnel-{uid}"))
}

fn absolute(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    env(name).map(PathBuf::from).filter(|p| p.is_absolute())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn xdg_runtime_dir_when_absolute_else_the_temp_dir() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("XDG_RUNTIME_DIR", "/run/user/1000")],
                "/run/user/1000/pgtunnel",
            ),
            (&[], "/tmp/pgtunnel-1000"),
            // Relative or empty: ignored, as the XDG spec says.
            (&[("XDG_RUNTIME_DIR", "run/user")], "/tmp/pgtunnel-1000"),
            (&[("XDG_RUNTIME_DIR", "")], "/tmp/pgtunnel-1000"),
            (&[("TMPDIR", "/var/tmp")], "/var/tmp/pgtunnel-1000"),
            (&[("TMPDIR", "tmp")], "/tmp/pgtunnel-1000"),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                runtime_dir(&env_of(pairs), 1000),
                Path::new(want),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn status_searches_the_runtime_dir_then_the_fallback() {
        let env = env_of(&[("XDG_RUNTIME_DIR", "/run/user/7")]);
        assert_eq!(
            search_dirs(&env, 7),
            [
                PathBuf::from("/run/user/7/pgtunnel"),
                PathBuf::from("/tmp/pgtunnel-7")
            ]
        );
        assert_eq!(
            search_dirs(&env_of(&[]), 7),
            [PathBuf::from("/tmp/pgtunnel-7")]
        );
    }
}
