//! `glob(3)` for `Include`: `*`, `?` and `[...]` in any path component, `~` expansion
//! (`GLOB_TILDE`), results sorted bytewise, names starting with `.` only matched by a
//! pattern that starts with `.`. A pattern without wildcards yields the path if it exists.

use std::path::{Path, PathBuf};

use super::tokens::user_home;

/// Expands `~` and `~user` at the start of `pattern` like `GLOB_TILDE` (an unknown user
/// leaves the pattern as written).
pub(crate) fn glob_tilde(pattern: &str, home: &Path) -> String {
    let Some(after) = pattern.strip_prefix('~') else {
        return pattern.to_string();
    };
    let (user, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let dir = if user.is_empty() {
        home.to_string_lossy().into_owned()
    } else {
        match user_home(user) {
            Some(dir) => dir,
            None => return pattern.to_string(),
        }
    };
    format!("{dir}{rest}")
}

/// The paths matching `pattern` (already tilde-expanded), sorted.
pub(crate) fn glob(pattern: &str) -> Vec<PathBuf> {
    if !has_magic(pattern) {
        let path = PathBuf::from(unescape(pattern));
        return if path.symlink_metadata().is_ok() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let absolute = pattern.starts_with('/');
    let mut found: Vec<String> = vec![if absolute { "/".into() } else { String::new() }];
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for base in &found {
            let join = |name: &str| -> String {
                if base.is_empty() || base.ends_with('/') {
                    format!("{base}{name}")
                } else {
                    format!("{base}/{name}")
                }
            };
            if !has_magic(part) {
                let candidate = join(&unescape(part));
                let path = Path::new(&candidate);
                let ok = if last {
                    path.symlink_metadata().is_ok()
                } else {
                    path.is_dir()
                };
                if ok {
                    next.push(candidate);
                }
                continue;
            }
            let dir = if base.is_empty() { "." } else { base.as_str() };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if !fnmatch(part.as_bytes(), name.as_bytes()) {
                    continue;
                }
                let candidate = join(name);
                if last || Path::new(&candidate).is_dir() {
                    next.push(candidate);
                }
            }
        }
        found = next;
        if found.is_empty() {
            break;
        }
    }
    found.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    found.into_iter().map(PathBuf::from).collect()
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(n) = chars.next()
        {
            out.push(n);
            continue;
        }
        out.push(c);
    }
    out
}

/// `fnmatch(3)` on one path component: `*`, `?`, `[...]` (with `!`/`^` and ranges), `\`.
fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' if si < s.len() => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' if si < s.len() => {
                    if let Some((matched, len)) = bracket(&p[pi..], s[si]) {
                        if matched {
                            pi += len;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        // An unterminated `[` matches itself.
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && si < s.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c != b'?' && c != b'[' && c != b'\\' && si < s.len() && c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return true;
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the bracket expression at the start of `p`; returns whether it
/// matched and the expression's length, or `None` if the `[` is not closed.
fn bracket(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&h| h != b']') {
            let mut hi = p[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *p.get(i)?;
                i += 1;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        } else if lo == c {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_forms() {
        let m = |p: &str, s: &str| fnmatch(p.as_bytes(), s.as_bytes());
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", "a.conf~"));
        assert!(m("?.conf", "a.conf"));
        assert!(m("[ab].conf", "b.conf"));
        assert!(!m("[!ab].conf", "b.conf"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("[x", "[x"));
        assert!(m("*", ""));
    }

    #[test]
    fn globbing_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for f in [
            "b.conf",
            "a.conf",
            ".hidden.conf",
            "sub/x.conf",
            "other.txt",
        ] {
            let p = base.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let b = base.to_str().unwrap();
        let names = |pat: &str| -> Vec<String> {
            glob(&format!("{b}/{pat}"))
                .iter()
                .map(|p| p.strip_prefix(base).unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.conf"), ["a.conf", "b.conf"]);
        assert_eq!(names(".*.conf"), [".hidden.conf"]);
        assert_eq!(names("*/*.conf"), ["sub/x.conf"]);
        assert_eq!(names("*"), ["a.conf", "b.conf", "other.txt", "sub"]);
        assert_eq!(names("a.conf"), ["a.conf"]);
        assert!(names("missing.conf").is_empty());
        assert!(names("nodir/*.conf").is_empty());
    }

    #[test]
    fn tilde_for_globs() {
        assert_eq!(glob_tilde("~/x/*", Path::new("/h")), "/h/x/*");
        assert_eq!(glob_tilde("~", Path::new("/h")), "/h");
        assert_eq!(
            glob_tilde("~no-such-user-pgtunnel/x", Path::new("/h")),
            "~no-such-user-pgtunnel/x"
        );
        assert_eq!(glob_tilde("/abs", Path::new("/h")), "/abs");
    }
}
