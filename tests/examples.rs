//! The programs in examples/ (compiled by `cargo test`) run here through their own code:
//! each file is included as a module and its functions are called as its `main` would.

#[path = "../examples/query.rs"]
mod query;
#[path = "../examples/resolve.rs"]
mod resolve;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn resolve_prints_the_chain_and_its_path_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ssh_config");
    std::fs::write(
        &config,
        "Host shell.foo.com\n  User joe\n  Port 2222\n\
         Host db-prod\n  HostName db.foo.com\n  ProxyJump shell.foo.com\n",
    )
    .expect("write ssh_config");
    let config = config.to_str().expect("utf-8 path");

    // The manual's example: the last segment is plain TCP, and the report says so.
    let text = resolve::report(&args(&[
        "-F",
        config,
        "--via",
        "shell.foo.com",
        "db.foo.com",
    ]))
    .expect("resolve");
    assert!(
        text.starts_with("chain: shell.foo.com -> db.foo.com:5432\n"),
        "{text}"
    );
    assert!(text.contains("joe"), "User from the config: {text}");
    assert!(
        text.contains(&format!("{config}:3")),
        "origin file:line of Port: {text}"
    );
    assert!(text.contains("127.0.0.1 -> shell.foo.com:2222"), "{text}");
    assert!(text.contains("shell.foo.com -> db.foo.com:5432"), "{text}");
    assert!(text.contains("NOT encrypted"), "{text}");

    // An alias with ProxyJump: its chain and HostName are used.
    let text = resolve::report(&args(&["-F", config, "db-prod"])).expect("resolve alias");
    assert!(
        text.starts_with("chain: shell.foo.com -> db.foo.com:5432\n"),
        "{text}"
    );

    // No TARGET: the usage, not a panic.
    let err = resolve::report(&[]).expect_err("usage");
    assert!(err.starts_with("usage: resolve"), "{err}");
    let err = resolve::report(&args(&["-F", config, "db.foo.com:99999"])).expect_err("bad port");
    assert!(err.to_lowercase().contains("port"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_opens_a_tunnel_and_runs_sql_through_the_demo_topology() {
    if let Err(e) = pgtunnel::demo::pgcluster::find_bindir() {
        panic!("this test needs PostgreSQL's server binaries (scripts/test installs them): {e}");
    }
    let rows = query::query_demo(
        "SELECT current_user || ' ' || host(inet_client_addr()) UNION ALL SELECT 'second row'",
    )
    .await
    .expect("query through the demo tunnel");
    assert_eq!(
        rows,
        vec!["joe 127.0.0.1".to_string(), "second row".to_string()]
    );
}
