//! OpenSSH's `match.c`: wildcard patterns and pattern lists, shared by ssh_config (`Host`,
//! `Match host/user/...`) and known_hosts (host fields).
//!
//! Patterns have `*` (any run of bytes) and `?` (any one byte); everything else matches
//! itself, byte for byte. A list is comma-separated, each pattern optionally negated with `!`;
//! a matching negated pattern wins over any positive one. Pure: no I/O.

/// `match_pattern_list()` gives up (no match) on a sub-pattern this long or longer (OpenSSH
/// copies each into a 1024-byte buffer).
pub(crate) const MAX_SUBPATTERN: usize = 1023;

/// The outcome of [`match_pattern_list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListMatch {
    /// A positive pattern matched and no negated one did.
    Yes,
    /// Nothing matched.
    No,
    /// A negated (`!pattern`) pattern matched.
    Negated,
}

/// OpenSSH `match_pattern()`: `*` matches any run of bytes, `?` any one byte, everything
/// else itself (case-sensitively; callers lowercase).
pub(crate) fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    // Where to resume after the last `*`: pattern index after it, and the string index it
    // has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pattern.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, si));
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((p, consumed)) => {
                    pi = p;
                    si = consumed + 1;
                    star = Some((p, consumed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].iter().all(|&c| c == b'*')
}

/// OpenSSH `match_pattern_list(string, pattern, dolower)`: with `lower`, sub-patterns are
/// lowercased (`string` is compared as given).
pub(crate) fn match_pattern_list(string: &[u8], list: &[u8], lower: bool) -> ListMatch {
    let mut got_positive = false;
    let mut i = 0;
    while i < list.len() {
        let negated = list[i] == b'!';
        if negated {
            i += 1;
        }
        let start = i;
        while i < list.len() && list[i] != b',' {
            i += 1;
        }
        if i - start >= MAX_SUBPATTERN {
            return ListMatch::No;
        }
        let sub = if lower {
            list[start..i].to_ascii_lowercase()
        } else {
            list[start..i].to_vec()
        };
        if i < list.len() {
            i += 1; // the comma
        }
        if match_pattern(string, &sub) {
            if negated {
                return ListMatch::Negated;
            }
            got_positive = true;
        }
    }
    if got_positive {
        ListMatch::Yes
    } else {
        ListMatch::No
    }
}

/// OpenSSH `match_hostname()`: [`match_pattern_list`] ignoring ASCII case.
pub(crate) fn match_hostname(host: &str, list: &str) -> ListMatch {
    match_pattern_list(host.to_ascii_lowercase().as_bytes(), list.as_bytes(), true)
}

/// A `Host` line (readconf.c `match_host`): whitespace-separated patterns matched
/// case-sensitively against `host`; a matching `!pattern` disables the block, and only
/// negations never match.
pub(crate) fn host_line_matches(host: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        if match_pattern(host.as_bytes(), pattern.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, p: &str) -> bool {
        match_pattern(s.as_bytes(), p.as_bytes())
    }

    #[test]
    fn patterns() {
        assert!(m("foo.example.com", "*.example.com"));
        assert!(m("foo.example.com", "*"));
        assert!(m("abc", "a?c"));
        assert!(m("abc", "*"));
        assert!(m("", "*"));
        assert!(m("aXbXc", "a*b*c"));
        assert!(m("ab", "a?"));
        assert!(!m("a", "a?"));
        assert!(!m("abc", "a?"));
        assert!(m("abcbd", "a*b*d"));
        assert!(!m("abcbe", "a*b*d"));
        assert!(m("[h]:2222", "[h]:*"));
        assert!(!m("example.com", "*.example.com"));
        assert!(!m("ABC", "abc"));
        assert!(m("a*c", "a*c"));
        assert!(m("ab", "a**b"));
        assert!(!m("ab", "a*?b"));
        // A `*` in the pattern is always a wildcard, even facing a `*` in the string.
        assert!(m("*x", "*"));
    }

    #[test]
    fn pattern_lists() {
        let l =
            |s: &str, list: &str, lower| match_pattern_list(s.as_bytes(), list.as_bytes(), lower);
        assert_eq!(l("x", "y,x", false), ListMatch::Yes);
        assert_eq!(l("x", "*,!x", false), ListMatch::Negated);
        assert_eq!(l("x", "!y", false), ListMatch::No);
        assert_eq!(l("X", "x", false), ListMatch::No);
        assert_eq!(l("a.x", "*.x,!b.x", true), ListMatch::Yes);
        assert_eq!(l("b.x", "*.x,!b.x", true), ListMatch::Negated);
        assert_eq!(l("b.x", "!b.x", true), ListMatch::Negated);
        assert_eq!(l("c.y", "*.x,!b.x", true), ListMatch::No);
        assert_eq!(l("host", "HOST", true), ListMatch::Yes);
        assert_eq!(l("", "a,,b", true), ListMatch::Yes);
        let long = format!("host,{}", "x".repeat(MAX_SUBPATTERN));
        assert_eq!(l("host", &long, true), ListMatch::No);
        assert_eq!(match_hostname("Host.Example", "host.*"), ListMatch::Yes);
        assert_eq!(match_hostname("host.example", "HOST.*"), ListMatch::Yes);
    }

    #[test]
    fn host_lines() {
        let h = |host: &str, line: &str| {
            let patterns: Vec<String> = line.split(' ').map(str::to_string).collect();
            host_line_matches(host, &patterns)
        };
        assert!(h("web.prod", "*.prod !db.prod"));
        assert!(!h("db.prod", "*.prod !db.prod"));
        assert!(!h("db.prod", "!db.prod *.prod"));
        assert!(!h("y", "!x"));
        assert!(!h("upper", "UPPER"));
    }
}
