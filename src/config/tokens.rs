//! `%` tokens, `${VAR}` references and `~` in ssh_config values, expanded as OpenSSH does.
//!
//! OpenSSH expands in one pass (`vdollar_percent_expand`): a value that comes from a token
//! or a variable is never expanded again. An unknown token, a `%` at the end, or a variable
//! that is not set is an error. `~` is expanded first, and only at the start of a value.

use std::collections::BTreeMap;
use std::path::Path;

/// Which expansions a value gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expansion<'a> {
    /// `%x` tokens and their values.
    pub tokens: &'a [(char, &'a str)],
    /// Environment for `${VAR}`, if the keyword allows it.
    pub env: Option<&'a BTreeMap<String, String>>,
}

/// Expands `%` tokens (and `${VAR}` when `expansion.env` is set) in `s`.
pub(crate) fn expand(s: &str, expansion: Expansion<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let (Some(env), Some(after)) = (expansion.env, rest.strip_prefix("${")) {
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{{after}` has no closing `}}`"))?;
            let name = &after[..end];
            if name.is_empty() {
                return Err("empty environment variable reference `${}`".into());
            }
            let value = env.get(name).ok_or_else(|| {
                format!("environment variable `{name}` (in `${{{name}}}`) is not set")
            })?;
            out.push_str(value);
            rest = &after[end + 1..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(t) = rest.chars().next() else {
            return Err(format!("`{s}` ends with a lone `%`"));
        };
        rest = &rest[t.len_utf8()..];
        if t == '%' {
            out.push('%');
            continue;
        }
        match expansion.tokens.iter().find(|(k, _)| *k == t) {
            Some((_, value)) => out.push_str(value),
            None => {
                let valid: Vec<String> = std::iter::once("%%".to_string())
                    .chain(expansion.tokens.iter().map(|(k, _)| format!("%{k}")))
                    .collect();
                return Err(format!(
                    "unknown token `%{t}` (allowed here: {})",
                    valid.join(" ")
                ));
            }
        }
    }
    Ok(out)
}

/// OpenSSH `tilde_expand()`: `~` and `~/path` use `home`; `~user/path` uses that user's home
/// directory (`local_user` maps to `home`). Anything not starting with `~` is unchanged.
pub(crate) fn tilde_expand(s: &str, home: &Path, local_user: &str) -> Result<String, String> {
    let Some(after) = s.strip_prefix('~') else {
        return Ok(s.to_string());
    };
    let (user, path) = match after.find('/') {
        Some(i) => (&after[..i], after[i..].trim_start_matches('/')),
        None => (after, ""),
    };
    let dir = if user.is_empty() || user == local_user {
        home.to_string_lossy().into_owned()
    } else {
        user_home(user).ok_or_else(|| format!("`{s}`: no such user `{user}`"))?
    };
    let slash = if dir.ends_with('/') { "" } else { "/" };
    Ok(format!("{dir}{slash}{path}"))
}

/// Another user's home directory, from the password database.
pub(crate) fn user_home(user: &str) -> Option<String> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("V".to_string(), "%h".to_string())])
    }

    #[test]
    fn percent_tokens() {
        let e = Expansion {
            tokens: &[('h', "host"), ('p', "22")],
            env: None,
        };
        assert_eq!(expand("%h:%p %% x", e).unwrap(), "host:22 % x");
        assert_eq!(expand("${V}", e).unwrap(), "${V}");
        let err = expand("%r", e).unwrap_err();
        assert!(err.contains("`%r`") && err.contains("%h %p"), "{err}");
        assert!(expand("50%", e).is_err());
    }

    #[test]
    fn dollar_variables_expand_once() {
        let env = env();
        let e = Expansion {
            tokens: &[('h', "host")],
            env: Some(&env),
        };
        // A variable's value is not expanded again.
        assert_eq!(expand("${V}/%h", e).unwrap(), "%h/host");
        assert!(expand("${NOPE}", e).unwrap_err().contains("NOPE"));
        assert!(expand("${}", e).is_err());
        assert!(expand("${V", e).is_err());
        assert_eq!(expand("$V", e).unwrap(), "$V");
    }

    #[test]
    fn tildes() {
        let home = Path::new("/home/me");
        let t = |s: &str| tilde_expand(s, home, "me").unwrap();
        assert_eq!(t("~/.ssh/id"), "/home/me/.ssh/id");
        assert_eq!(t("~//x"), "/home/me/x");
        assert_eq!(t("~"), "/home/me/");
        assert_eq!(t("~me/x"), "/home/me/x");
        assert_eq!(t("/abs/~"), "/abs/~");
        assert_eq!(t("rel"), "rel");
        assert_eq!(
            tilde_expand("~/x", Path::new("/"), "me").unwrap(),
            "/x".to_string()
        );
        assert!(tilde_expand("~no-such-user-pgtunnel/x", home, "me").is_err());
        assert_eq!(t("~root/x"), format!("{}/x", user_home("root").unwrap()));
    }
}
