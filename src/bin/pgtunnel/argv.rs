//! Options written before a subcommand (`pgtunnel -F ssh_config explain db-prod`). clap
//! reads them as the tunnel's own and then refuses the subcommand ("cannot be used with
//! --config"); here they are moved after the subcommand's name when the subcommand takes
//! them too, or refused with a message that says where they go. Pure: the command line and
//! clap's definitions in, the command line clap is to parse (or the refusal) out.

use std::ffi::OsString;

use clap::Command;
use pgtunnel::plan::names::ConfigNames;

/// `argv` with the options before a subcommand's name moved after it; `Err`: the message
/// for an option the subcommand does not take, or for a second TARGET. A command line with
/// nothing before its subcommand, or that `top` cannot read, is returned as it is (clap
/// reports what is wrong with it).
pub fn reorder(top: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let (sub, at) = match scan(top, &argv) {
        Scan::Subcommand(sub, at) if at > 1 => (sub, at),
        Scan::Positionals(found) if found.len() > 1 => return Err(one_target(top, &found)),
        _ => return Ok(argv),
    };
    let before = &argv[1..at];
    if let Some(option) = first_refused(top, sub, before) {
        let name = sub.get_name();
        return Err(format!(
            "{option} is not an option of `pgtunnel {name}` (see `pgtunnel {name} --help`{})",
            where_it_goes(top, &option)
        ));
    }
    let mut out = Vec::with_capacity(argv.len());
    out.push(argv[0].clone());
    out.push(argv[at].clone());
    out.extend(before.iter().cloned());
    out.extend(argv[at + 1..].iter().cloned());
    Ok(out)
}

/// For `pgtunnel db extra`: the tunnel takes one TARGET (a command to run goes after `--`;
/// a first word close to a subcommand's name is likely that subcommand, misspelt).
fn one_target(top: &Command, found: &[&str]) -> String {
    let Some((first, rest)) = found.split_first() else {
        return "no TARGET".into();
    };
    let rest = rest.join(" ");
    let names = ConfigNames {
        aliases: top
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect(),
        files: Vec::new(),
    };
    let misspelt = match names.closest(first).first() {
        Some(sub) => format!(" (or is `{first}` the subcommand `{sub}`, misspelt?)"),
        None => String::new(),
    };
    format!(
        "one TARGET only, but `{first}` is followed by `{rest}`: a command to run with the \
         tunnel up goes after `--`, as in `pgtunnel {first} -- {rest}`{misspelt}"
    )
}

/// Where an option the subcommand does not take belongs.
fn where_it_goes(top: &Command, option: &str) -> String {
    let takers: Vec<&str> = top
        .get_subcommands()
        .filter(|s| lookup(s, option).is_some())
        .map(Command::get_name)
        .collect();
    match takers.is_empty() {
        true => "; it is an option of the tunnel itself: pgtunnel [OPTIONS] TARGET)".into(),
        false => format!(
            "; it goes with the tunnel itself, pgtunnel [OPTIONS] TARGET, or after {})",
            takers.join(", ")
        ),
    }
}

/// What the positional arguments of `argv` are, as `top` reads them.
#[derive(Debug)]
enum Scan<'a> {
    /// The first one names this subcommand, at this index.
    Subcommand(&'a Command, usize),
    /// None is a subcommand: these, up to `--`.
    Positionals(Vec<&'a str>),
    /// An option `top` does not know, or an argument that is not UTF-8: clap's own message
    /// is the right one.
    Unread,
}

fn scan<'a>(top: &'a Command, argv: &'a [OsString]) -> Scan<'a> {
    let mut found = Vec::new();
    let mut i = 1;
    while let Some(arg) = argv.get(i) {
        let Some(arg) = arg.to_str() else {
            return Scan::Unread;
        };
        if arg == "--" {
            break;
        }
        match split_option(top, arg) {
            None => return Scan::Unread,
            Some(Parsed::Positional) => {
                if let (true, Some(sub)) = (found.is_empty(), top.find_subcommand(arg)) {
                    return Scan::Subcommand(sub, i);
                }
                found.push(arg);
                i += 1;
            }
            Some(Parsed::Option { needs_next, .. }) => i += 1 + usize::from(needs_next),
        }
    }
    Scan::Positionals(found)
}

/// The first option in `before` (as the user wrote it: `-F`, `--config`) that `sub` does
/// not take.
fn first_refused(top: &Command, sub: &Command, before: &[OsString]) -> Option<String> {
    let mut i = 0;
    while let Some(arg) = before.get(i).and_then(|a| a.to_str()) {
        let Some(Parsed::Option { names, needs_next }) = split_option(top, arg) else {
            // A value (checked by `find_subcommand` to follow its option).
            i += 1;
            continue;
        };
        if let Some(refused) = names.into_iter().find(|n| lookup(sub, n).is_none()) {
            return Some(refused);
        }
        i += 1 + usize::from(needs_next);
    }
    None
}

/// One argument as `top` reads it.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// Not an option.
    Positional,
    /// An option (`names`: each option of a `-vq` cluster, as `-v`, `-q`); `needs_next`:
    /// its value is the next argument.
    Option {
        names: Vec<String>,
        needs_next: bool,
    },
}

/// `arg` as an option of `top`; `None`: an option `top` does not know.
fn split_option(top: &Command, arg: &str) -> Option<Parsed> {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((name, _)) => (name, true),
            None => (long, false),
        };
        let option = format!("--{name}");
        let takes = lookup(top, &option)?;
        return Some(Parsed::Option {
            names: vec![option],
            needs_next: takes && !inline,
        });
    }
    let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
        return Some(Parsed::Positional);
    };
    let mut names = Vec::new();
    for (at, c) in cluster.char_indices() {
        let option = format!("-{c}");
        let takes = lookup(top, &option)?;
        names.push(option);
        if takes {
            let inline = at + c.len_utf8() < cluster.len();
            return Some(Parsed::Option {
                names,
                needs_next: !inline,
            });
        }
    }
    Some(Parsed::Option {
        names,
        needs_next: false,
    })
}

/// Whether `cmd` has `option` (`-F` or `--config`): `Some(takes a value)`.
fn lookup(cmd: &Command, option: &str) -> Option<bool> {
    let found = cmd
        .get_arguments()
        .find(|a| match option.strip_prefix("--") {
            Some(long) => {
                a.get_long() == Some(long)
                    || a.get_all_aliases().is_some_and(|all| all.contains(&long))
            }
            None => {
                let short = option.strip_prefix('-').and_then(|s| s.chars().next());
                short.is_some() && a.get_short() == short
            }
        })?;
    Some(found.get_action().takes_values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    /// A command shaped like pgtunnel's: -F/-L/-v/--json at the top; `explain` takes -F,
    /// -L and -v; `status` only --json and -v.
    fn top() -> Command {
        let config = || Arg::new("config").short('F').long("config");
        let listen = || Arg::new("listen").short('L').long("listen");
        let verbose = || Arg::new("verbose").short('v').action(ArgAction::Count);
        let json = || Arg::new("json").long("json").action(ArgAction::SetTrue);
        Command::new("pgtunnel")
            .arg(Arg::new("target"))
            .args([config(), listen(), verbose(), json()])
            .subcommand(Command::new("explain").arg(Arg::new("target")).args([
                config(),
                listen(),
                verbose(),
            ]))
            .subcommand(Command::new("status").args([verbose(), json()]))
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("pgtunnel")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn reordered(args: &[&str]) -> Result<Vec<OsString>, String> {
        reorder(&top(), argv(args))
    }

    #[test]
    fn options_before_the_subcommand_go_after_it() {
        for (given, expect) in [
            (
                &["-F", "cfg", "explain", "db"][..],
                &["explain", "-F", "cfg", "db"][..],
            ),
            (
                &["--config=cfg", "-vv", "explain", "db"],
                &["explain", "--config=cfg", "-vv", "db"],
            ),
            (&["-Fcfg", "explain", "db"], &["explain", "-Fcfg", "db"]),
            (
                &["-vF", "cfg", "explain", "db", "-L", "5"],
                &["explain", "-vF", "cfg", "db", "-L", "5"],
            ),
            (&["--json", "status"], &["status", "--json"]),
        ] {
            assert_eq!(reordered(given), Ok(argv(expect)), "{given:?}");
        }
    }

    #[test]
    fn command_lines_without_options_before_a_subcommand_are_unchanged() {
        for given in [
            &["explain", "-F", "cfg", "db"][..],
            &["-F", "cfg", "db"],
            // A value that happens to be a subcommand's name is a value.
            &["-F", "explain", "db"],
            &["db", "-L", "5"],
            &["-v", "--", "status"],
            // Unknown to the top level: clap says so.
            &["--nope", "explain", "db"],
            &[],
        ] {
            assert_eq!(reordered(given), Ok(argv(given)), "{given:?}");
        }
    }

    #[test]
    fn an_option_the_subcommand_lacks_is_refused_saying_where_it_goes() {
        let err = reordered(&["-F", "cfg", "status"]).unwrap_err();
        assert!(
            err.starts_with("-F is not an option of `pgtunnel status`"),
            "{err}"
        );
        assert!(err.contains("after explain"), "{err}");
        let err = reordered(&["-vL", "5", "status"]).unwrap_err();
        assert!(err.starts_with("-L is not"), "{err}");
        let err = reordered(&["--json", "explain", "db"]).unwrap_err();
        assert!(err.contains("after status"), "{err}");
    }

    #[test]
    fn a_second_target_is_refused_pointing_at_dash_dash() {
        let err = reordered(&["-F", "cfg", "db", "extra", "more"]).unwrap_err();
        assert!(
            err.starts_with("one TARGET only, but `db` is followed by `extra more`"),
            "{err}"
        );
        assert!(err.contains("`pgtunnel db -- extra more`"), "{err}");
        assert!(!err.contains("misspelt"), "{err}");
        let err = reordered(&["explian", "db"]).unwrap_err();
        assert!(err.contains("the subcommand `explain`, misspelt"), "{err}");
        // After `--`, words are the command's.
        let given = &["db", "--", "psql", "-c", "select 1"];
        assert_eq!(reordered(given), Ok(argv(given)));
    }

    #[test]
    fn an_option_of_the_tunnel_alone_says_so() {
        let only_top = top().arg(Arg::new("socket").long("socket"));
        let err = reorder(&only_top, argv(&["--socket", "d", "status"])).unwrap_err();
        assert!(err.contains("an option of the tunnel itself"), "{err}");
    }

    #[test]
    fn the_real_definitions_move_config_before_explain() {
        use clap::CommandFactory;
        let top = crate::args::Args::command();
        let moved = reorder(&top, argv(&["-F", "cfg", "-v", "explain", "db"]));
        assert_eq!(moved, Ok(argv(&["explain", "-F", "cfg", "-v", "db"])));
        let err = reorder(&top, argv(&["--socket", "d", "explain", "db"])).unwrap_err();
        assert!(
            err.starts_with("--socket is not an option of `pgtunnel explain`"),
            "{err}"
        );
    }
}
