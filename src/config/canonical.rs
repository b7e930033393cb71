//! `CanonicalizeHostname` and its companions, as ssh's `main()` applies them (ssh.c, OpenSSH
//! 9.2: `resolve_canonicalize()`, `check_follow_cname()`, `resolve_host()` and the
//! `CanonicalizePermittedCNAMEs` step after them).
//!
//! After the first pass over the config files, the host name (`HostName` with `%h` expanded,
//! or the host as typed, lowercased; a numeric address is rewritten instead, see
//! `address.rs`) is canonicalized when `CanonicalizeHostname` is `yes` (only when ssh
//! connects directly: no `ProxyCommand`, no `ProxyJump`, no `-J`) or `always`:
//!
//! - a name ending in `.` is looked up as it is;
//! - otherwise, a name with more than `CanonicalizeMaxDots` (1) dots is left alone; else each
//!   `CanonicalDomains` suffix is tried, in order, as `name.domain.` (a trailing dot, so the
//!   resolver's own search list is not applied), up to a `none`;
//! - the first name found (without its trailing dot) replaces the host name, or its `CNAME`
//!   when a `CanonicalizePermittedCNAMEs` rule allows it (`source:target`, pattern lists,
//!   the name matched against `source`, the CNAME against `target`);
//! - nothing found: with `CanonicalizeFallbackLocal no`, ssh stops (`Could not resolve host
//!   "name"`); with `yes` (the default) the name is kept.
//!
//! Then, if no address was found that way and `CanonicalizePermittedCNAMEs` is set (direct,
//! or `always`), ssh looks the name up as it is (the resolver's search rules apply) and
//! follows its CNAME by the same rules; a direct connection to a name that does not resolve
//! stops there (`Could not resolve hostname name: ...`).
//!
//! Lookups are `getaddrinfo` with `AI_CANONNAME` and `AddressFamily` as the family hint
//! ([`SystemResolver`]); the logic here is pure and takes any [`NameResolver`].
//!
//! Where OpenSSH releases after 9.2 differ (9.2 is the reference of the test suite): from 9.4
//! a `ProxyJump none` counts as a direct connection (9.2 does not canonicalize then, with
//! `yes`); 10.5 lowercases a followed CNAME (9.2 keeps the resolver's case).

use std::fmt;
use std::sync::Arc;

use super::keyword::AddressFamily;
use super::pattern::{ListMatch, match_pattern_list};

/// `CanonicalizeHostname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Canonicalize {
    /// `no` (the default).
    #[default]
    No,
    /// `yes`: only when connecting directly.
    Yes,
    /// `always`: also through a `ProxyCommand` or jump host.
    Always,
}

impl Canonicalize {
    /// As `ssh -G` prints it (`fmt_multistate_int`: the first name of the value).
    pub fn as_str(self) -> &'static str {
        match self {
            Canonicalize::No => "false",
            Canonicalize::Yes => "true",
            Canonicalize::Always => "always",
        }
    }
}

/// One `CanonicalizePermittedCNAMEs` rule: `source:target` (lowercased), or `*` (`*:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermittedCname {
    /// Pattern list the name found must match.
    pub source: String,
    /// Pattern list its CNAME must match.
    pub target: String,
}

/// The local resolver canonicalization asks: `getaddrinfo(name, AI_CANONNAME)` with
/// `family` as the hint. `Ok` with the canonical name the resolver gave (if any) when the
/// name has an address; `Err` with the resolver's message (`gai_strerror`) when not.
pub trait NameResolver: Send + Sync {
    /// Looks `name` up.
    fn lookup(&self, name: &str, family: AddressFamily) -> Result<Option<String>, String>;
}

/// The system's resolver: `getaddrinfo` (so `/etc/hosts`, DNS, ... as `nsswitch.conf` says).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn lookup(&self, name: &str, family: AddressFamily) -> Result<Option<String>, String> {
        let hints = dns_lookup::AddrInfoHints {
            flags: libc::AI_CANONNAME,
            address: match family {
                AddressFamily::Any => libc::AF_UNSPEC,
                AddressFamily::Inet => libc::AF_INET,
                AddressFamily::Inet6 => libc::AF_INET6,
            },
            socktype: libc::SOCK_STREAM,
            protocol: 0,
        };
        let mut found =
            dns_lookup::getaddrinfo(Some(name), Some("22"), Some(hints)).map_err(|e| {
                // `gai_strerror`'s text, as ssh prints it.
                let text = std::io::Error::from(e).to_string();
                match text.strip_prefix("failed to lookup address information: ") {
                    Some(reason) => reason.to_string(),
                    None => text,
                }
            })?;
        // The canonical name is on the first entry, as ssh reads it.
        match found.next() {
            Some(Ok(first)) => Ok(first.canonname),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("no address".into()),
        }
    }
}

/// A resolver that knows no name (every lookup fails): for resolution that must not touch
/// the network, such as tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl NameResolver for NoResolver {
    fn lookup(&self, _name: &str, _family: AddressFamily) -> Result<Option<String>, String> {
        Err("Name or service not known".into())
    }
}

/// A shared [`NameResolver`], as [`crate::config::LocalEnv`] carries it.
#[derive(Clone)]
pub struct Resolver(Arc<dyn NameResolver>);

impl Resolver {
    /// Wraps `resolver`.
    pub fn new(resolver: impl NameResolver + 'static) -> Resolver {
        Resolver(Arc::new(resolver))
    }

    /// The system's resolver.
    pub fn system() -> Resolver {
        Resolver::new(SystemResolver)
    }

    /// One that knows no name.
    pub fn none() -> Resolver {
        Resolver::new(NoResolver)
    }

    pub(crate) fn lookup(
        &self,
        name: &str,
        family: AddressFamily,
    ) -> Result<Option<String>, String> {
        self.0.lookup(name, family)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// The same resolver (the same `Arc`).
impl PartialEq for Resolver {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Resolver {}

/// What canonicalization did to a host name, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Canonicalization {
    /// `CanonicalizeHostname no` (and no CNAME followed).
    #[default]
    Off,
    /// A numeric address: never canonicalized.
    Address,
    /// `yes` and the host is reached through a `ProxyCommand` or jump host.
    Proxied,
    /// More dots than `CanonicalizeMaxDots`.
    TooManyDots {
        /// `CanonicalizeMaxDots`.
        max: u32,
    },
    /// No `CanonicalDomains` suffix resolved (`CanonicalizeFallbackLocal yes`): kept.
    NotFound {
        /// The names looked up, with their trailing dot.
        tried: Vec<String>,
    },
    /// Renamed.
    Renamed {
        /// The name before.
        from: String,
        /// A `CanonicalizePermittedCNAMEs` rule replaced the name found by its CNAME.
        by_cname: bool,
    },
}

/// Canonicalization stopped ssh: the message ssh prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// `Could not resolve host "db"` or `Could not resolve hostname db: <reason>`.
    pub message: String,
    /// The names looked up, in order.
    pub tried: Vec<String>,
}

/// The settings canonicalization reads (after the first pass) and how the host is reached.
#[derive(Debug, Clone)]
pub(crate) struct Rules<'a> {
    pub(crate) mode: Canonicalize,
    pub(crate) max_dots: u32,
    pub(crate) domains: &'a [String],
    pub(crate) fallback_local: bool,
    /// `CanonicalizePermittedCNAMEs`, `none` already dropped.
    pub(crate) cnames: &'a [PermittedCname],
    pub(crate) family: AddressFamily,
    /// No `ProxyCommand`, no jump host (ssh's `direct`).
    pub(crate) direct: bool,
}

/// The host name after ssh's canonicalization steps. `host` is the name as `main()` has it
/// before them (lowercased, or a rewritten address); `numeric`: it is a numeric address
/// (`resolve_addr()` succeeded); `looks_like_address`: `is_addr_fast()`.
pub(crate) fn canonicalize(
    host: &str,
    numeric: bool,
    looks_like_address: bool,
    rules: &Rules<'_>,
    resolver: &Resolver,
) -> Result<(String, Canonicalization), Unresolved> {
    if numeric {
        return Ok((host.to_string(), Canonicalization::Address));
    }
    let mut tried = Vec::new();
    let mut outcome = Canonicalization::Off;
    if !looks_like_address && rules.mode != Canonicalize::No {
        match by_domains(host, rules, resolver, &mut tried)? {
            Step::Found(name, by_cname) => {
                let from = host.to_string();
                return Ok((name, Canonicalization::Renamed { from, by_cname }));
            }
            Step::Kept(why) => outcome = why,
        }
    }
    // `CanonicalizePermittedCNAMEs` without a canonical name found: the name as it is.
    if rules.cnames.is_empty() || !(rules.direct || rules.mode == Canonicalize::Always) {
        return Ok((host.to_string(), outcome));
    }
    tried.push(host.to_string());
    match resolver.lookup(host, rules.family) {
        Err(reason) if rules.direct => Err(Unresolved {
            message: format!("Could not resolve hostname {host}: {reason}"),
            tried,
        }),
        Err(_) => Ok((host.to_string(), outcome)),
        Ok(cname) => match follow_cname(host, cname.as_deref(), rules) {
            Some(name) => Ok((
                name,
                Canonicalization::Renamed {
                    from: host.to_string(),
                    by_cname: true,
                },
            )),
            None => Ok((host.to_string(), outcome)),
        },
    }
}

enum Step {
    /// The canonical name, and whether a CNAME rule gave it.
    Found(String, bool),
    /// Not renamed, and why.
    Kept(Canonicalization),
}

/// `resolve_canonicalize()` for a name that is not an address.
fn by_domains(
    host: &str,
    rules: &Rules<'_>,
    resolver: &Resolver,
    tried: &mut Vec<String>,
) -> Result<Step, Unresolved> {
    if !rules.direct && rules.mode != Canonicalize::Always {
        return Ok(Step::Kept(Canonicalization::Proxied));
    }
    let candidates: Vec<String> = if host.ends_with('.') {
        vec![host.to_string()]
    } else {
        let dots = host.bytes().filter(|&b| b == b'.').count();
        if dots > rules.max_dots as usize {
            return Ok(Step::Kept(Canonicalization::TooManyDots {
                max: rules.max_dots,
            }));
        }
        rules
            .domains
            .iter()
            .take_while(|d| !d.eq_ignore_ascii_case("none"))
            .map(|d| format!("{host}.{d}."))
            .collect()
    };
    for full in candidates {
        tried.push(full.clone());
        if let Ok(cname) = resolver.lookup(&full, rules.family) {
            let name = full[..full.len() - 1].to_string();
            return Ok(match follow_cname(&name, cname.as_deref(), rules) {
                Some(cname) => Step::Found(cname, true),
                None => Step::Found(name, false),
            });
        }
    }
    if !rules.fallback_local {
        return Err(Unresolved {
            message: format!("Could not resolve host \"{host}\""),
            tried: tried.clone(),
        });
    }
    Ok(Step::Kept(Canonicalization::NotFound {
        tried: tried.clone(),
    }))
}

/// `check_follow_cname()`: the CNAME the resolver gave for `name`, when a rule permits it.
/// A CNAME that is not a valid domain name is ignored (as `resolve_host()` does).
fn follow_cname(name: &str, cname: Option<&str>, rules: &Rules<'_>) -> Option<String> {
    let cname = cname.and_then(valid_cname)?;
    if rules.cnames.is_empty() || name == cname || rules.mode == Canonicalize::No {
        return None;
    }
    if !rules.direct && rules.mode != Canonicalize::Always {
        return None;
    }
    rules
        .cnames
        .iter()
        .any(|rule| {
            match_pattern_list(name.as_bytes(), rule.source.as_bytes(), true) == ListMatch::Yes
                && match_pattern_list(cname.as_bytes(), rule.target.as_bytes(), true)
                    == ListMatch::Yes
        })
        .then(|| cname.to_string())
}

/// OpenSSH's `valid_domain(name, 0)`: the name without a trailing dot, or `None` (empty,
/// not starting with a letter or digit, `..`, characters other than letters, digits, `.`,
/// `-` and `_`).
pub(crate) fn valid_cname(name: &str) -> Option<&str> {
    valid_domain(name).ok()
}

/// OpenSSH's `valid_domain()`: `Ok(name without a trailing dot)`, or its error message.
pub(crate) fn valid_domain(name: &str) -> Result<&str, String> {
    let first = name.bytes().next().ok_or("empty domain name")?;
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "domain name \"{name}\" starts with invalid character"
        ));
    }
    if name.contains("..") {
        return Err(format!(
            "domain name \"{name}\" contains consecutive separators"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!(
            "domain name \"{name}\" contains invalid characters"
        ));
    }
    Ok(name.strip_suffix('.').unwrap_or(name))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// A fake resolver: name (with its trailing dot, as asked) -> canonical name, and the
    /// names it was asked about.
    #[derive(Default)]
    pub(crate) struct Table {
        pub(crate) names: BTreeMap<String, Option<String>>,
        /// Names that have only an IPv4 address.
        pub(crate) v4_only: Vec<String>,
        pub(crate) asked: Mutex<Vec<String>>,
    }

    impl Table {
        pub(crate) fn new(entries: &[(&str, Option<&str>)]) -> Table {
            Table {
                names: entries
                    .iter()
                    .map(|(n, c)| (n.to_string(), c.map(str::to_string)))
                    .collect(),
                ..Table::default()
            }
        }
    }

    impl NameResolver for Table {
        fn lookup(&self, name: &str, family: AddressFamily) -> Result<Option<String>, String> {
            self.asked.lock().unwrap().push(name.to_string());
            if family == AddressFamily::Inet6 && self.v4_only.iter().any(|n| n == name) {
                return Err("Address family for hostname not supported".into());
            }
            self.names
                .get(name)
                .cloned()
                .ok_or_else(|| "Name or service not known".into())
        }
    }

    fn rules<'a>(domains: &'a [String], cnames: &'a [PermittedCname]) -> Rules<'a> {
        Rules {
            mode: Canonicalize::Yes,
            max_dots: 1,
            domains,
            fallback_local: true,
            cnames,
            family: AddressFamily::Any,
            direct: true,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(
        host: &str,
        rules: &Rules<'_>,
        table: Table,
    ) -> (Result<(String, Canonicalization), Unresolved>, Vec<String>) {
        let table = Arc::new(table);
        struct Shared(Arc<Table>);
        impl NameResolver for Shared {
            fn lookup(&self, n: &str, f: AddressFamily) -> Result<Option<String>, String> {
                self.0.lookup(n, f)
            }
        }
        let resolver = Resolver::new(Shared(table.clone()));
        let got = canonicalize(host, false, false, rules, &resolver);
        let asked = table.asked.lock().unwrap().clone();
        (got, asked)
    }

    #[test]
    fn domains_are_tried_in_order_with_a_trailing_dot() {
        let domains = strings(&["a.example", "b.example", "c.example"]);
        let table = Table::new(&[("db.b.example.", None), ("db.c.example.", None)]);
        let (got, asked) = run("db", &rules(&domains, &[]), table);
        assert_eq!(
            got.unwrap(),
            (
                "db.b.example".to_string(),
                Canonicalization::Renamed {
                    from: "db".into(),
                    by_cname: false
                }
            )
        );
        assert_eq!(asked, ["db.a.example.", "db.b.example."]);
    }

    #[test]
    fn max_dots_none_and_anchored_names() {
        let domains = strings(&["a.example", "none", "b.example"]);
        let table = || {
            Table::new(&[
                ("x.y.a.example.", None),
                ("db.b.example.", None),
                ("db.", None),
            ])
        };
        // One dot is allowed by default, two are not.
        let (got, asked) = run("x.y.z", &rules(&domains, &[]), table());
        assert_eq!(got.unwrap().1, Canonicalization::TooManyDots { max: 1 });
        assert!(asked.is_empty());
        let mut r = rules(&domains, &[]);
        r.max_dots = 0;
        let (got, _) = run("x.y", &r, table());
        assert_eq!(got.unwrap().1, Canonicalization::TooManyDots { max: 0 });
        r.max_dots = 1;
        assert_eq!(run("x.y", &r, table()).0.unwrap().0, "x.y.a.example");
        // `none` ends the list.
        let (got, asked) = run("db", &r, table());
        assert_eq!(
            got.unwrap().1,
            Canonicalization::NotFound {
                tried: strings(&["db.a.example."])
            }
        );
        assert_eq!(asked, ["db.a.example."]);
        // A name ending in a dot is looked up as it is, whatever its dots.
        let (got, asked) = run("db.", &r, table());
        assert_eq!(got.unwrap().0, "db");
        assert_eq!(asked, ["db."]);
    }

    #[test]
    fn fallback_local_no_refuses_with_ssh_message() {
        let domains = strings(&["a.example"]);
        let mut r = rules(&domains, &[]);
        r.fallback_local = false;
        let err = run("db", &r, Table::default()).0.unwrap_err();
        assert_eq!(err.message, "Could not resolve host \"db\"");
        assert_eq!(err.tried, ["db.a.example."]);
        // Too many dots: not canonicalized, so no failure either.
        assert!(run("a.b.c", &r, Table::default()).0.is_ok());
    }

    #[test]
    fn yes_only_when_direct_always_also_proxied() {
        let domains = strings(&["a.example"]);
        let table = || Table::new(&[("db.a.example.", None)]);
        let mut r = rules(&domains, &[]);
        r.direct = false;
        let (got, asked) = run("db", &r, table());
        assert_eq!(got.unwrap(), ("db".into(), Canonicalization::Proxied));
        assert!(asked.is_empty());
        r.mode = Canonicalize::Always;
        assert_eq!(run("db", &r, table()).0.unwrap().0, "db.a.example");
        r.mode = Canonicalize::No;
        assert_eq!(
            run("db", &r, table()).0.unwrap(),
            ("db".into(), Canonicalization::Off)
        );
    }

    #[test]
    fn cnames_are_followed_only_when_a_rule_permits() {
        let domains = strings(&["a.example"]);
        let table = || {
            Table::new(&[
                ("db.a.example.", Some("real.b.example")),
                ("web", Some("Web.C.Example")),
            ])
        };
        let none: &[PermittedCname] = &[];
        assert_eq!(
            run("db", &rules(&domains, none), table()).0.unwrap().0,
            "db.a.example"
        );
        let rule = |s: &str, t: &str| PermittedCname {
            source: s.into(),
            target: t.into(),
        };
        let permit = [rule("*.a.example", "*.b.example")];
        let got = run("db", &rules(&domains, &permit), table()).0.unwrap();
        assert_eq!(
            got,
            (
                "real.b.example".into(),
                Canonicalization::Renamed {
                    from: "db".into(),
                    by_cname: true
                }
            )
        );
        let other = [rule("*.a.example", "*.z.example")];
        assert_eq!(
            run("db", &rules(&domains, &other), table()).0.unwrap().0,
            "db.a.example"
        );
        // No domain found: the name as it is, and its CNAME (case kept, as in 9.2; the
        // target pattern is lowercased, the CNAME is matched as the resolver wrote it).
        let all = [rule("*", "*")];
        let got = run("web", &rules(&domains, &all), table());
        assert_eq!(got.0.unwrap().0, "Web.C.Example");
        assert_eq!(got.1, ["web.a.example.", "web"]);
        // ... even with CanonicalizeHostname no, ssh looks the name up, and a direct
        // connection to a name that does not resolve stops there.
        let mut r = rules(&domains, &all);
        r.mode = Canonicalize::No;
        let (got, asked) = run("web", &r, table());
        assert_eq!(got.unwrap(), ("web".into(), Canonicalization::Off));
        assert_eq!(asked, ["web"]);
        let err = run("gone", &r, table()).0.unwrap_err();
        assert_eq!(
            err.message,
            "Could not resolve hostname gone: Name or service not known"
        );
        r.direct = false;
        assert!(run("gone", &r, table()).0.is_ok());
    }

    #[test]
    fn the_family_is_the_hint() {
        let domains = strings(&["a.example", "b.example"]);
        let mut table = Table::new(&[("db.a.example.", None), ("db.b.example.", None)]);
        table.v4_only.push("db.a.example.".into());
        let mut r = rules(&domains, &[]);
        r.family = AddressFamily::Inet6;
        assert_eq!(run("db", &r, table).0.unwrap().0, "db.b.example");
    }

    #[test]
    fn addresses_are_never_canonicalized() {
        let domains = strings(&["a.example"]);
        let r = rules(&domains, &[]);
        let resolver = Resolver::none();
        assert_eq!(
            canonicalize("10.0.0.1", true, true, &r, &resolver).unwrap(),
            ("10.0.0.1".into(), Canonicalization::Address)
        );
        // Looks like an address but is not one: not canonicalized by domain.
        assert_eq!(
            canonicalize("fe80::1%bad", false, true, &r, &resolver)
                .unwrap()
                .1,
            Canonicalization::Off
        );
    }

    #[test]
    fn domain_names_are_checked_as_openssh_does() {
        assert_eq!(valid_domain("a.example."), Ok("a.example"));
        assert_eq!(valid_domain("x_y-z.example"), Ok("x_y-z.example"));
        assert!(valid_domain("").unwrap_err().contains("empty"));
        assert!(
            valid_domain(".a")
                .unwrap_err()
                .contains("starts with invalid")
        );
        assert!(valid_domain("a..b").unwrap_err().contains("consecutive"));
        assert!(
            valid_domain("a b")
                .unwrap_err()
                .contains("invalid characters")
        );
        assert_eq!(valid_cname("-bad"), None);
    }
}
