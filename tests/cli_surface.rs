//! What surrounds the command line (issue 14): completions that load in the shells, a man
//! page `man` renders, help wrapped to the terminal and listing only the options a
//! subcommand takes, options written before a subcommand, and messages for arguments that
//! are not what pgtunnel takes. Each runs the binary as a process.

mod support;

use std::process::{Command, Output, Stdio};

use support::Home;
use support::process::BIN;

/// The binary in a clean environment (HOME the test's, no ssh-agent).
fn pgtunnel(home: &Home) -> Command {
    support::process::clean_command(home.dir.path())
}

fn run(home: &Home, args: &[&str]) -> Output {
    pgtunnel(home).args(args).output().expect("run pgtunnel")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `program args...` with `stdin`; its output, failing loudly when it is not installed
/// (scripts/test installs it).
fn shell(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (scripts/test installs it: bash, zsh, fish, man-db, groff-base)")
        })
}

/// The completion script for `shell`, in a file of `home`.
fn completion_file(home: &Home, shell: &str) -> String {
    let out = run(home, &["completions", shell]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("explain"),
        "{shell}: no subcommands"
    );
    let path = home.dir.path().join(format!("pgtunnel.{shell}"));
    std::fs::write(&path, &out.stdout).expect("write the script");
    path.to_str().expect("utf-8").to_string()
}

#[test]
fn completions_load_in_bash_and_parse_in_zsh_and_fish() {
    let home = Home::new();
    let bash = completion_file(&home, "bash");
    let out = shell(
        "bash",
        &["-c", &format!("source {bash} && complete -p pgtunnel")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("pgtunnel"),
        "{}",
        text(&out.stdout)
    );
    // As the README puts it: `source <(pgtunnel completions bash)`.
    let inline = format!("source <({BIN} completions bash) && complete -p pgtunnel");
    let out = shell("bash", &["-c", &inline]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("complete "),
        "{}",
        text(&out.stdout)
    );
    for (program, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let script = completion_file(&home, program);
        let out = shell(program, &[check, &script]);
        assert!(out.status.success(), "{program}: {}", text(&out.stderr));
    }
    let out = run(&home, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("possible values: bash"),
        "{}",
        text(&out.stderr)
    );
}

/// `man -l FILE` as a user reads it, at 80 columns.
fn render(page: &std::path::Path) -> String {
    let out = Command::new("man")
        .args(["-l", page.to_str().expect("utf-8")])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("man: {e} (scripts/test installs man-db and groff-base)"));
    assert!(out.status.success(), "man: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_man_pages_render() {
    let home = Home::new();
    let out = run(&home, &["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = home.dir.path().join("pgtunnel.1");
    std::fs::write(&page, &out.stdout).expect("write the page");
    let shown = render(&page);
    for expect in ["NAME", "SYNOPSIS", "--via", "Exit codes", "explain"] {
        assert!(shown.contains(expect), "no {expect} in:\n{shown}");
    }
    // With a directory: a page per subcommand too, each with its own options only.
    let dir = home.dir.path().join("man1");
    let out = run(&home, &["man", dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let explain = render(&dir.join("pgtunnel-explain.1"));
    assert!(explain.contains("--via"), "{explain}");
    assert!(!explain.contains("--drain-timeout"), "{explain}");
    for sub in ["check", "up", "list", "status", "demo", "completions"] {
        let page = dir.join(format!("pgtunnel-{sub}.1"));
        assert!(page.exists(), "no {}", page.display());
    }
}

/// The long option names a `--help` lists.
fn options_of(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            l.trim_start()
                .split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
        })
        .map(|option| option.trim_end_matches("...").to_string())
        .collect()
}

#[test]
fn each_subcommand_lists_only_its_own_options() {
    let home = Home::new();
    let help = |sub: &str| {
        let out = run(&home, &[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        options_of(&text(&out.stdout))
    };
    let mut explain = help("explain");
    explain.sort();
    assert_eq!(
        explain,
        [
            "--config",
            "--help",
            "--listen",
            "--quiet",
            "--verbose",
            "--via"
        ],
        "explain --help"
    );
    let check = help("check");
    assert!(!check.contains(&"--listen".to_string()), "{check:?}");
    assert!(!check.contains(&"--drain-timeout".to_string()), "{check:?}");
    assert!(check.contains(&"--json".to_string()), "{check:?}");
    let up = help("up");
    assert!(!up.contains(&"--listen".to_string()), "{up:?}");
    assert!(up.contains(&"--drain-timeout".to_string()), "{up:?}");
    for sub in ["status", "list"] {
        assert!(help(sub).contains(&"--quiet".to_string()), "{sub}");
    }
    // An option a subcommand does not take is refused, not ignored.
    let out = run(&home, &["up", "-L", "5000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn help_is_wrapped_to_the_terminal_width() {
    let home = Home::new();
    let out = pgtunnel(&home)
        .arg("--help")
        .env("COLUMNS", "60")
        .output()
        .expect("run pgtunnel");
    let help = text(&out.stdout);
    let widest = help.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 60, "a line of {widest} columns:\n{help}");
    assert!(help.contains("--via"), "{help}");
}

/// A config with an alias `db` behind `shell`, for the commands that connect to nothing.
fn home_with_alias() -> (Home, String) {
    let home = Home::new();
    home.write_config(
        "Host db\n  HostName 10.0.0.5\n  ProxyJump joe@shell\nHost shell\n  HostName 127.0.0.1\n",
    );
    let cfg = home.config.to_str().expect("utf-8").to_string();
    (home, cfg)
}

#[test]
fn options_before_a_subcommand_are_the_subcommands() {
    let (home, cfg) = home_with_alias();
    let out = run(&home, &["-F", &cfg, "-q", "explain", "db"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("hop 1: joe@shell"), "{shown}");
    assert!(shown.contains(&format!("{cfg}:5")), "-F was used: {shown}");
    // One the subcommand lacks: where it goes.
    let out = run(&home, &["-F", &cfg, "status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("-F is not an option of `pgtunnel status`"),
        "{err}"
    );
    assert!(err.contains("after explain, check, up"), "{err}");
}

#[test]
fn explain_takes_ssh_style_forwards() {
    let (home, cfg) = home_with_alias();
    let args = [
        "explain",
        "-F",
        &cfg,
        "-L",
        "63333:db.foo.com:5432",
        "shell",
    ];
    let out = run(&home, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("the -L forwards through shell"), "{shown}");
    assert!(shown.contains("db.foo.com:5432"), "{shown}");
    assert!(shown.contains("63333"), "{shown}");
}

/// `-L NAME:PORT` is judged by the addresses the tunnel would listen on (resolved as when
/// binding); `localhost` is both loopback addresses, so the listener stays private.
#[test]
fn explain_judges_a_named_listener_by_its_addresses() {
    let (home, cfg) = home_with_alias();
    let out = run(
        &home,
        &["explain", "-F", &cfg, "-L", "localhost:5555", "db"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = shown
        .lines()
        .find(|l| l.trim_start().starts_with("you -> "))
        .unwrap_or_else(|| panic!("no listener segment: {shown}"));
    assert!(line.contains("127.0.0.1:5555"), "{line}");
    assert!(line.contains("loopback only"), "{line}");
}

#[test]
fn arguments_that_are_not_a_target_say_what_is_wrong() {
    let home = Home::new();
    for (args, expect, not) in [
        (
            &["-F", "none", "db", "extra"][..],
            "one TARGET only, but `db` is followed by `extra`",
            "subcommand",
        ),
        (
            &["-F", "none", "db:5432:extra"],
            "`:extra` follows the port: TARGET is host[:port] (db:5432)",
            "IPv6",
        ),
        (
            &["-F", "none", "63333:db:5432"],
            "go with -L: pgtunnel -L 63333:db:5432 SSH_SERVER",
            "IPv6",
        ),
        (
            &["-F", "none", "explian", "db"],
            "`explian` the subcommand `explain`, misspelt",
            "cannot be used",
        ),
    ] {
        let out = run(&home, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains(not), "{args:?}: {err}");
    }
}
