//! The values of the transport and authentication keywords, parsed as OpenSSH 9.2 parses
//! them: `IPQoS` (`parse_ipqos` and `iptos2str` of `misc.c`), `RekeyLimit` (`readconf.c`
//! with `scan_scaled` of `openbsd-compat/fmt_scaled.c`) and `PreferredAuthentications`
//! (the method names of `authmethods[]` in `sshconnect2.c`).
//!
//! `BindAddress`, `BindInterface` and `ConnectionAttempts` are plain strings and integers
//! (`keyword.rs`); what they do to the TCP connection is in `ssh::transport`.

/// OpenSSH 9.2's `ipqos[]` table (`misc.c`): names and values, in table order (the first name
/// of a value is the one `ssh -G` prints: `reliability` is 0x04, which is also `le`, so it
/// prints as `le`). `none` is not a value: it is [`Tos::None`].
const IPQOS: [(&str, u8); 25] = [
    ("af11", 0x28),
    ("af12", 0x30),
    ("af13", 0x38),
    ("af21", 0x48),
    ("af22", 0x50),
    ("af23", 0x58),
    ("af31", 0x68),
    ("af32", 0x70),
    ("af33", 0x78),
    ("af41", 0x88),
    ("af42", 0x90),
    ("af43", 0x98),
    ("cs0", 0x00),
    ("cs1", 0x20),
    ("cs2", 0x40),
    ("cs3", 0x60),
    ("cs4", 0x80),
    ("cs5", 0xa0),
    ("cs6", 0xc0),
    ("cs7", 0xe0),
    ("ef", 0xb8),
    ("le", 0x04),
    ("lowdelay", 0x10),
    ("throughput", 0x08),
    ("reliability", 0x04),
];

/// One `IPQoS` value: the TOS byte (`IP_TOS`, or `IPV6_TCLASS` for IPv6), or `none`
/// (the socket is left as the system made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tos {
    /// `none`: no marking.
    None,
    /// This byte.
    Value(u8),
}

impl Tos {
    /// As `ssh -G` prints it (`iptos2str`): the first name of the value, else `0x%02x`.
    pub fn name(self) -> String {
        match self {
            Tos::None => "none".into(),
            Tos::Value(v) => IPQOS
                .iter()
                .find(|(_, value)| *value == v)
                .map_or_else(|| format!("0x{v:02x}"), |(name, _)| (*name).to_string()),
        }
    }

    /// The byte to set, if any.
    pub fn value(self) -> Option<u8> {
        match self {
            Tos::None => None,
            Tos::Value(v) => Some(v),
        }
    }
}

/// `IPQoS interactive [bulk]`.
///
/// `ssh -N` marks its connection with the *interactive* value from the socket's creation to
/// the end: `ssh_create_socket` sets it, and for a session without a command
/// (`SessionType none`) `ssh.c` calls `ssh_packet_set_interactive(ssh, options.control_master
/// == SSHCTL_MASTER_NO, ...)`, which is interactive unless `ControlMaster` is on (pgtunnel
/// never is a ControlMaster). pgtunnel does the same: [`IpQos::applied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpQos {
    /// The first value.
    pub interactive: Tos,
    /// The second value (the first when there is only one).
    pub bulk: Tos,
}

impl IpQos {
    /// OpenSSH 9.2's default (`fill_default_options`): `af21 cs1`. (OpenSSH 10.0 changed it
    /// to `ef cs0`; pgtunnel follows 9.2, the `ssh` it is tested against.)
    pub const DEFAULT: IpQos = IpQos {
        interactive: Tos::Value(0x48),
        bulk: Tos::Value(0x20),
    };

    /// The value pgtunnel sets on hop 1's TCP socket: the interactive one, as `ssh -N`.
    pub fn applied(self) -> Tos {
        self.interactive
    }

    /// As `ssh -G` prints it: `af21 cs1`.
    pub fn describe(self) -> String {
        format!("{} {}", self.interactive.name(), self.bulk.name())
    }
}

/// OpenSSH 9.2's `parse_ipqos`: a name of the table (any case), `none`, or an integer 0-255
/// as `strtol(cp, &ep, 0)` reads it (`0x48`, `010` octal, `+5`, `-0`).
pub(crate) fn parse_tos(word: &str) -> Option<Tos> {
    if word.eq_ignore_ascii_case("none") {
        return Some(Tos::None);
    }
    if let Some((_, v)) = IPQOS
        .iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
    {
        return Some(Tos::Value(*v));
    }
    let v = strtol_base0(word)?;
    u8::try_from(v).ok().map(Tos::Value)
}

/// `strtol(s, &ep, 0)` with OpenSSH's checks: the whole string must be read, and at least
/// one digit. `None` when it is not a number (or is out of `i64`).
fn strtol_base0(s: &str) -> Option<i64> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(hex) = s.strip_prefix("0x").or(s.strip_prefix("0X")) {
        // "0x" without a hex digit is read as "0" followed by junk.
        if !hex.starts_with(|c: char| c.is_ascii_hexdigit()) {
            return None;
        }
        (16, hex)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -v } else { v })
}

/// `RekeyLimit` as resolved: what `ssh -G` prints (`rekeylimit 1073741824 3600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RekeyLimit {
    /// Bytes after which to re-key; 0 is `default` (the cipher's own limit in ssh).
    pub data: u64,
    /// Seconds after which to re-key; 0 is none.
    pub time: u32,
}

impl RekeyLimit {
    /// As `ssh -G` prints it.
    pub fn describe(self) -> String {
        format!("{} {}", self.data, self.time)
    }
}

/// One `RekeyLimit` line: the data limit (0 for `default`), and the time limit if the line
/// gives one (`none` gives none: the interval stays unset, as in OpenSSH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RekeyLine {
    pub(crate) data: u64,
    pub(crate) time: Option<u32>,
}

/// OpenSSH 9.2's `RekeyLimit` parsing (`readconf.c`): `default` or a `scan_scaled` size of at
/// least 16 bytes (0 is allowed: the default), then optionally `none` or a `convtime` time.
pub(crate) fn parse_rekey_limit(
    name: &str,
    words: &[String],
    convtime: impl Fn(&str) -> Option<u32>,
) -> Result<RekeyLine, String> {
    let Some(first) = words.first().filter(|w| !w.is_empty()) else {
        return Err(format!("{name}: missing argument"));
    };
    let data = if first == "default" {
        0
    } else {
        let v = scan_scaled(first).map_err(|e| format!("Bad number '{first}': {e}"))?;
        if v != 0 && v < 16 {
            return Err("RekeyLimit too small".into());
        }
        // Negative sizes are "too small" above; what is left fits.
        u64::try_from(v).unwrap_or(0)
    };
    let time = match words.get(1).map(String::as_str) {
        None | Some("none") => None,
        Some("") => return Err(format!("{name}: missing time value")),
        Some(w) => Some(convtime(w).ok_or_else(|| format!("{name}: invalid time value \"{w}\""))?),
    };
    if words.len() > 2 {
        return Err(format!("keyword {name}: extra arguments at end of line"));
    }
    Ok(RekeyLine { data, time })
}

const EINVAL: &str = "Invalid argument";
const ERANGE: &str = "Numerical result out of range";

/// `scan_scaled()` of OpenSSH's `openbsd-compat/fmt_scaled.c`: an optionally signed decimal
/// number with an optional fraction and an optional unit `B K M G T P E` (either case,
/// powers of 1024); the fraction counts only with a unit. Errors are `strerror`'s words.
pub(crate) fn scan_scaled(s: &str) -> Result<i64, &'static str> {
    const MAX_DIGITS: u32 = 21;
    const SCALE: &[u8] = b"BKMGTPE";
    let b = s.as_bytes();
    let mut p = 0;
    while p < b.len() && b[p].is_ascii_whitespace() {
        p += 1;
    }
    let mut sign = 0i64;
    while p < b.len() && (b[p] == b'-' || b[p] == b'+') {
        if sign != 0 {
            return Err(EINVAL);
        }
        sign = if b[p] == b'-' { -1 } else { 1 };
        p += 1;
    }
    let (mut whole, mut fpart) = (0i64, 0i64);
    let (mut ndigits, mut fract_digits) = (0u32, 0u32);
    while p < b.len() && (b[p].is_ascii_digit() || b[p] == b'.') {
        if b[p] == b'.' {
            if fract_digits > 0 {
                return Err(EINVAL);
            }
            fract_digits = 1;
        } else {
            let i = i64::from(b[p] - b'0');
            if fract_digits > 0 {
                if fract_digits < MAX_DIGITS - 1 {
                    fract_digits += 1;
                    fpart = fpart
                        .checked_mul(10)
                        .and_then(|f| f.checked_add(i))
                        .ok_or(ERANGE)?;
                }
            } else {
                ndigits += 1;
                if ndigits >= MAX_DIGITS {
                    return Err(ERANGE);
                }
                whole = whole
                    .checked_mul(10)
                    .and_then(|w| w.checked_add(i))
                    .ok_or(ERANGE)?;
            }
        }
        p += 1;
    }
    if sign != 0 {
        whole *= sign;
    }
    let Some(&unit) = b.get(p) else {
        return Ok(whole);
    };
    let Some(power) = SCALE.iter().position(|&c| c == unit.to_ascii_uppercase()) else {
        return Err(EINVAL);
    };
    if b.get(p + 1).is_some_and(u8::is_ascii_alphanumeric) {
        return Err(EINVAL);
    }
    let scale = 1i64 << (10 * power);
    whole = whole.checked_mul(scale).ok_or(ERANGE)?;
    while fpart >= i64::MAX / scale {
        fpart /= 10;
        fract_digits -= 1;
    }
    fpart *= scale;
    for _ in 1..fract_digits {
        fpart /= 10;
    }
    Ok(if sign == -1 {
        whole - fpart
    } else {
        whole + fpart
    })
}

/// An authentication method name `PreferredAuthentications` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethodName {
    /// `publickey`.
    PublicKey,
    /// `keyboard-interactive`.
    KeyboardInteractive,
    /// `password`.
    Password,
    /// A method of OpenSSH's table that pgtunnel does not implement: `gssapi-with-mic`,
    /// `hostbased` (and `none`, which is only ever the first, probing request).
    NotImplemented(&'static str),
    /// A name OpenSSH does not know either: `ssh` skips it ("Unrecognized authentication
    /// method name"), so does pgtunnel.
    Unknown,
}

/// What `ssh` 9.2 makes of one name of `PreferredAuthentications` (`authmethod_lookup`:
/// exact, case-sensitive names).
pub fn auth_method(name: &str) -> AuthMethodName {
    match name {
        "publickey" => AuthMethodName::PublicKey,
        "keyboard-interactive" => AuthMethodName::KeyboardInteractive,
        "password" => AuthMethodName::Password,
        "gssapi-with-mic" => AuthMethodName::NotImplemented("gssapi-with-mic"),
        "hostbased" => AuthMethodName::NotImplemented("hostbased"),
        "none" => AuthMethodName::NotImplemented("none"),
        _ => AuthMethodName::Unknown,
    }
}

/// Why pgtunnel refuses a `PreferredAuthentications` list, if it does: it names no method
/// pgtunnel implements, so whatever `ssh` would do with it (GSSAPI, host-based, nothing),
/// pgtunnel could not do the same.
pub(crate) fn preferred_unusable(list: &str) -> Option<String> {
    let names: Vec<&str> = list.split(',').collect();
    let usable = names.iter().any(|n| {
        matches!(
            auth_method(n),
            AuthMethodName::PublicKey
                | AuthMethodName::KeyboardInteractive
                | AuthMethodName::Password
        )
    });
    (!usable).then(|| {
        format!(
            "\"{list}\" names no method pgtunnel implements (it has publickey, \
             keyboard-interactive and password)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ipqos_values_as_openssh_9_2() {
        let t = |w: &str| parse_tos(w).map(Tos::name);
        assert_eq!(t("AF11").as_deref(), Some("af11"));
        assert_eq!(t("none").as_deref(), Some("none"));
        assert_eq!(t("ef").as_deref(), Some("ef"));
        // The first name of a value is printed: reliability is le (0x04).
        assert_eq!(t("reliability").as_deref(), Some("le"));
        assert_eq!(t("16").as_deref(), Some("lowdelay"));
        assert_eq!(t("0x48").as_deref(), Some("af21"));
        assert_eq!(t("010").as_deref(), Some("throughput"));
        assert_eq!(t("+5").as_deref(), Some("0x05"));
        assert_eq!(t("-0").as_deref(), Some("cs0"));
        assert_eq!(t("255").as_deref(), Some("0xff"));
        for bad in ["0x", "256", "", "1e", "-1", "08", "af", "0x1g", "--1"] {
            assert_eq!(parse_tos(bad), None, "{bad}");
        }
        assert_eq!(IpQos::DEFAULT.describe(), "af21 cs1");
        assert_eq!(IpQos::DEFAULT.applied(), Tos::Value(0x48));
    }

    #[test]
    fn scan_scaled_as_openssh() {
        assert_eq!(scan_scaled("1G"), Ok(1 << 30));
        assert_eq!(scan_scaled("16"), Ok(16));
        assert_eq!(scan_scaled("1.5K"), Ok(1536));
        assert_eq!(
            scan_scaled("1.5"),
            Ok(1),
            "the fraction counts only with a unit"
        );
        assert_eq!(scan_scaled("2m"), Ok(2 << 20));
        assert_eq!(
            scan_scaled("1K."),
            Ok(1024),
            "a non-alphanumeric after the unit"
        );
        assert_eq!(scan_scaled("+"), Ok(0));
        assert_eq!(scan_scaled("-5"), Ok(-5));
        assert_eq!(scan_scaled("7E"), Ok(7 << 60));
        assert_eq!(scan_scaled("8E"), Err(ERANGE));
        assert_eq!(scan_scaled("1KB"), Err(EINVAL));
        assert_eq!(scan_scaled("1X"), Err(EINVAL));
        assert_eq!(scan_scaled("1.2.3"), Err(EINVAL));
        assert_eq!(scan_scaled("+-1"), Err(EINVAL));
        assert_eq!(scan_scaled("99999999999999999999"), Err(ERANGE));
    }

    #[test]
    fn rekey_limit_lines() {
        let ct = |w: &str| crate::config::lexer::convtime(w);
        let p = |s: &str| parse_rekey_limit("rekeylimit", &words(s), ct);
        assert_eq!(
            p("1G 1h"),
            Ok(RekeyLine {
                data: 1 << 30,
                time: Some(3600)
            })
        );
        assert_eq!(
            p("default none"),
            Ok(RekeyLine {
                data: 0,
                time: None
            })
        );
        assert_eq!(
            p("0"),
            Ok(RekeyLine {
                data: 0,
                time: None
            })
        );
        assert_eq!(p("15").unwrap_err(), "RekeyLimit too small");
        assert!(p("-16").unwrap_err().contains("too small"));
        assert!(
            p("1Q")
                .unwrap_err()
                .contains("Bad number '1Q': Invalid argument")
        );
        assert!(p("1G 1x").unwrap_err().contains("invalid time value"));
        assert!(p("1G 1h 2").unwrap_err().contains("extra arguments"));
        assert!(p("").unwrap_err().contains("missing argument"));
    }

    #[test]
    fn preferred_authentications_names() {
        assert_eq!(auth_method("publickey"), AuthMethodName::PublicKey);
        assert_eq!(
            auth_method("Password"),
            AuthMethodName::Unknown,
            "case matters"
        );
        assert_eq!(
            auth_method("hostbased"),
            AuthMethodName::NotImplemented("hostbased")
        );
        assert_eq!(preferred_unusable("hostbased,password"), None);
        assert_eq!(preferred_unusable("frob,publickey"), None);
        let why = preferred_unusable("gssapi-with-mic,hostbased").unwrap();
        assert!(why.contains("names no method pgtunnel implements"), "{why}");
        assert!(preferred_unusable("none").is_some());
        assert!(preferred_unusable("frob").is_some());
    }
}
