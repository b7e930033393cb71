//! Splitting ssh_config lines and reading values exactly as OpenSSH 9.x does.
//!
//! Each function here mirrors one helper of OpenSSH (`strdelim`, `argv_split`, `convtime`,
//! `a2port`), including its corner cases: `key=value` with one optional `=`, quotes that may
//! start mid-word, a `#` that only starts a comment at the beginning of a word. Patterns are
//! in [`super::pattern`]. Nothing here does I/O except
//! [`service_port`], which reads `/etc/services` like `getservbyname(3)`.

use std::sync::OnceLock;

/// OpenSSH's `WHITESPACE`.
const WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

/// A line that is not blank: its lowercased keyword and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive<'a> {
    /// The keyword, lowercased.
    pub keyword: String,
    /// The rest of the line after the keyword and its separator (leading blanks removed);
    /// empty when the keyword has no argument.
    pub rest: &'a str,
}

/// Splits one config line into keyword and rest, like `process_config_line_depth`.
///
/// Returns `None` for blank lines, comments, and lines OpenSSH silently skips (a keyword
/// with an unterminated quote).
pub(crate) fn directive(line: &str) -> Option<Directive<'_>> {
    // Strip trailing whitespace; a form feed is allowed at the end of a line only.
    let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    if line.is_empty() {
        return None;
    }
    let (mut keyword, mut rest) = strdelim(line).ok()?;
    if keyword.is_empty() {
        (keyword, rest) = strdelim(rest?).ok()?;
    }
    if keyword.is_empty() || keyword.starts_with('#') || keyword.starts_with('\n') {
        return None;
    }
    let rest = rest.map(|r| r.trim_start_matches(WHITESPACE)).unwrap_or("");
    Some(Directive {
        keyword: keyword.to_ascii_lowercase(),
        rest,
    })
}

/// OpenSSH `strdelim()`: the next word of `s`, ending at a blank, a `"` or one `=`.
///
/// A `"` starts a quoted section that runs to the next `"` and ends the word. Returns the word
/// and the remainder (`None` when the input is used up), or `Err` for an unterminated quote
/// (OpenSSH returns NULL).
pub(crate) fn strdelim(s: &str) -> Result<(String, Option<&str>), ()> {
    let Some(i) = s.find([' ', '\t', '\r', '\n', '"', '=']) else {
        return Ok((s.to_string(), None));
    };
    let delim = s.as_bytes()[i];
    if delim == b'"' {
        let after = &s[i + 1..];
        let j = after.find('"').ok_or(())?;
        let word = format!("{}{}", &s[..i], &after[..j]);
        let rest = after[j + 1..].trim_start_matches(WHITESPACE);
        return Ok((word, Some(rest)));
    }
    let word = s[..i].to_string();
    let mut rest = s[i + 1..].trim_start_matches(WHITESPACE);
    // Allow only one '=' to be skipped.
    if delim != b'='
        && let Some(after) = rest.strip_prefix('=')
    {
        rest = after.trim_start_matches(WHITESPACE);
    }
    Ok((word, Some(rest)))
}

/// OpenSSH `argv_split(s, terminate_on_comment = 1)`: words separated by blanks, `'` and `"`
/// quotes (which may start mid-word), `\` escaping a quote, a backslash, or (outside quotes)
/// a space; `#` at the start of a word ends the line. `Err` means unbalanced quotes.
pub(crate) fn argv_split(s: &str) -> Result<Vec<String>, ()> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let mut quote: Option<char> = None;
        let mut arg = String::new();
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                let next = chars.get(i + 1).copied();
                if matches!(next, Some('\'' | '"' | '\\')) || (quote.is_none() && next == Some(' '))
                {
                    i += 1;
                    arg.push(chars[i]);
                } else {
                    arg.push(c);
                }
            } else if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            } else if quote == Some(c) {
                quote = None;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if i >= chars.len() && quote.is_some() {
            return Err(());
        }
        out.push(arg);
        i += 1;
    }
    Ok(out)
}

/// The rest of a line the way `ProxyCommand` and `ProxyJump` take it: raw text after any
/// blanks and `=` signs (quotes and `#` are kept).
pub(crate) fn raw_value(rest: &str) -> &str {
    rest.trim_start_matches([' ', '\t', '\r', '\n', '='])
}

/// OpenSSH `convtime()`: `90`, `1m30s`, `2h`, `1w` (units s, m, h, d, w in either case).
/// Returns seconds, or `None` for a malformed or too large value.
pub(crate) fn convtime(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < bytes.len() {
        // strtol: optional leading blanks and sign, then digits.
        let mut j = i;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            j += 1;
        }
        let mut negative = false;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            negative = bytes[j] == b'-';
            j += 1;
        }
        let start = j;
        let mut secs: i64 = 0;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            secs = secs
                .saturating_mul(10)
                .saturating_add(i64::from(bytes[j] - b'0'));
            j += 1;
        }
        if j == start || (negative && secs != 0) {
            return None;
        }
        let multiplier: i64 = match bytes.get(j) {
            None => 1,
            Some(unit) => {
                j += 1;
                match unit {
                    b's' | b'S' => 1,
                    b'm' | b'M' => 60,
                    b'h' | b'H' => 3600,
                    b'd' | b'D' => 86400,
                    b'w' | b'W' => 604800,
                    _ => return None,
                }
            }
        };
        if secs > i64::from(i32::MAX) / multiplier {
            return None;
        }
        total += secs * multiplier;
        if total > i64::from(i32::MAX) {
            return None;
        }
        i = j;
    }
    u32::try_from(total).ok()
}

/// OpenSSH `a2port()`: a number from 1 to 65535 or a TCP service name from `/etc/services`.
pub(crate) fn a2port(s: &str) -> Option<u16> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = digits.trim_start_matches('0').parse().unwrap_or(0);
        return u16::try_from(n).ok().filter(|&p| p != 0);
    }
    service_port(s).filter(|&p| p != 0)
}

/// The TCP port of a service name (or alias) in `/etc/services`, like `getservbyname(3)`.
fn service_port(name: &str) -> Option<u16> {
    static SERVICES: OnceLock<Vec<(Vec<String>, u16)>> = OnceLock::new();
    let services = SERVICES.get_or_init(|| {
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let line = line.split('#').next().unwrap_or("");
                let mut words = line.split_whitespace();
                let name = words.next()?;
                let (port, proto) = words.next()?.split_once('/')?;
                if proto != "tcp" {
                    return None;
                }
                let port: u16 = port.parse().ok()?;
                let mut names = vec![name.to_string()];
                names.extend(words.map(str::to_string));
                Some((names, port))
            })
            .collect()
    });
    services
        .iter()
        .find(|(names, _)| names.iter().any(|n| n == name))
        .map(|(_, port)| *port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(line: &str) -> Option<(String, String)> {
        directive(line).map(|d| (d.keyword, d.rest.to_string()))
    }

    #[test]
    fn keyword_separators() {
        let kv = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        assert_eq!(d("Host foo"), kv("host", "foo"));
        assert_eq!(d("  HOST\tfoo bar  \r\n"), kv("host", "foo bar"));
        assert_eq!(d("Host=foo"), kv("host", "foo"));
        assert_eq!(d("Host = foo"), kv("host", "foo"));
        assert_eq!(d("Host =foo"), kv("host", "foo"));
        assert_eq!(d("Host==foo"), kv("host", "=foo"));
        assert_eq!(d("\"Host\" foo"), kv("host", "foo"));
        assert_eq!(d("Host"), kv("host", ""));
        assert_eq!(d(""), None);
        assert_eq!(d("   "), None);
        assert_eq!(d("# Host foo"), None);
        assert_eq!(d("  #Host foo"), None);
        assert_eq!(d("\"Host foo"), None);
    }

    #[test]
    fn argv_quotes_escapes_comments() {
        let v = |s: &str| argv_split(s).unwrap();
        assert_eq!(v("a b\tc"), ["a", "b", "c"]);
        assert_eq!(v("\"a b\" 'c d'"), ["a b", "c d"]);
        assert_eq!(v("x\"a b\"y"), ["xa by"]);
        assert_eq!(v("a\\ b"), ["a b"]);
        assert_eq!(v("\"a\\\"b\""), ["a\"b"]);
        assert_eq!(v("a\\x"), ["a\\x"]);
        assert_eq!(v("a # comment"), ["a"]);
        assert_eq!(v("a#b"), ["a#b"]);
        assert_eq!(v("\"#a\""), ["#a"]);
        assert_eq!(v("''"), [""]);
        assert!(v("# only").is_empty());
        assert!(argv_split("\"open").is_err());
        assert!(argv_split("a 'open").is_err());
    }

    #[test]
    fn strdelim_for_match() {
        assert_eq!(strdelim("host=x"), Ok(("host".into(), Some("x"))));
        assert_eq!(strdelim("\"x y\" z"), Ok(("x y".into(), Some("z"))));
        assert_eq!(strdelim("last"), Ok(("last".into(), None)));
        assert!(strdelim("\"open").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(convtime("90"), Some(90));
        assert_eq!(convtime("1m30s"), Some(90));
        assert_eq!(convtime("1H"), Some(3600));
        assert_eq!(convtime("1w1d"), Some(691200));
        assert_eq!(convtime("0"), Some(0));
        assert_eq!(convtime("+5"), Some(5));
        for bad in ["", "x", "5x", "-5", "1m-", "99999999999"] {
            assert_eq!(convtime(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(a2port("22"), Some(22));
        assert_eq!(a2port("022"), Some(22));
        assert_eq!(a2port("65535"), Some(65535));
        for bad in ["0", "65536", "", "x22", "-1", "99999999999999999999"] {
            assert_eq!(a2port(bad), None, "{bad}");
        }
    }
}
