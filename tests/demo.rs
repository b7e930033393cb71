//! `pgtunnel demo --check`: the README's first command works on a machine with no servers.

use std::process::Command;

#[test]
fn demo_check_runs_the_real_tunnel_through_both_in_process_servers() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgtunnel"))
        .args(["demo", "--check"])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run pgtunnel demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The chain shell.foo.com -> db.foo.com came from db.foo.com's ProxyJump, every segment
    // is encrypted or stays on a machine, and data made the round trip.
    assert!(
        stdout.contains("pgtunnel: shell.foo.com -> db.foo.com -> localhost:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1 -> shell.foo.com (127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shell.foo.com -> db.foo.com (127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stays on db.foo.com (loopback)"),
        "{stdout}"
    );
    assert!(!stdout.contains("NOT encrypted"), "{stdout}");
    assert!(stdout.contains("\nready: 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("came back intact"), "{stdout}");
}
