//! PostgreSQL end to end, the manual's topology with real servers: two OpenSSH hops
//! (127.0.0.1 = shell.foo.com, 127.0.0.2 = db.foo.com, each `PermitOpen` only the next step)
//! and a real PostgreSQL listening on 127.0.0.3 only, with TLS. Through pgtunnel: tokio-postgres,
//! `psql`, `pg_dump`, `pgbench`; TLS inside the tunnel (`sslmode=require`, and `verify-full`
//! with `host=db.foo.com hostaddr=127.0.0.1`); and the server sees the connection coming
//! from the last hop, as the manual says.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::pg::{PG_USER, SERVER_NAME, TLS_USER, TestPg, assert_success, password};
use support::process::Pgtunnel;
use support::sshd::{ManualHops, Sshd};
use support::*;

const PG_IP: &str = "127.0.0.3";

struct Topology {
    home: Home,
    pg: TestPg,
    shell: Sshd,
    db: Sshd,
}

impl Topology {
    /// TARGET as the last hop sees it.
    fn target(&self) -> String {
        self.pg.cluster.addr().to_string()
    }
}

async fn topology() -> Topology {
    let home = Home::new();
    let pg = tokio::task::spawn_blocking(|| TestPg::start(PG_IP.parse().expect("ip")))
        .await
        .expect("start PostgreSQL");
    let hops = ManualHops::start(&home, (PG_IP, pg.cluster.addr().port()));
    hops.write_config(&home, "");
    let ManualHops { shell, db } = hops;
    Topology {
        home,
        pg,
        shell,
        db,
    }
}

/// The source address the kernel gives an unbound socket connecting to `to` (what the last
/// sshd gets when it dials PostgreSQL: sshd does not bind its outgoing connections).
fn source_address_for(to: SocketAddr) -> IpAddr {
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    udp.connect(to).expect("route to the server");
    udp.local_addr().expect("local address").ip()
}

/// The process that owns the TCP socket `local -> remote` (IPv4), from /proc.
fn socket_owner(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let hex = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), a.port()),
        IpAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r).then(|| f[9].to_string())
    })?;
    let needle = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == needle) {
                return Some(pid);
            }
        }
    }
    None
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match parent_of(pid) {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Asserts that the server's client `client_addr:client_port` is a socket of db.foo.com's
/// sshd (the last hop), not of the first hop or of this process.
fn assert_from_last_hop(t: &Topology, client_addr: &str, client_port: i32) {
    let expected = source_address_for(t.pg.cluster.addr());
    assert_eq!(
        client_addr,
        expected.to_string(),
        "inet_client_addr() is the last hop's source address"
    );
    let local = SocketAddr::new(expected, u16::try_from(client_port).expect("port"));
    let owner = socket_owner(local, t.pg.cluster.addr())
        .unwrap_or_else(|| panic!("no process owns {local} -> {}", t.pg.cluster.addr()));
    assert!(
        descends_from(owner, t.db.pid()),
        "the connection to PostgreSQL ({local}) belongs to pid {owner}, which is not one of db.foo.com's sshd ({})",
        t.db.pid()
    );
    assert!(!descends_from(owner, t.shell.pid()));
    assert_ne!(owner, std::process::id());
}

fn conninfo(addr: SocketAddr, rest: &str) -> String {
    format!("host={} port={} {rest}", addr.ip(), addr.port())
}

const WHO: &str = "SELECT host(inet_client_addr()), inet_client_port(), host(inet_server_addr()), \
                   current_user::text, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_through_two_sshd_hops_and_the_server_sees_the_last_hop() {
    let t = topology().await;
    let chain = t
        .home
        .chain(Some("db.foo.com"), &t.target())
        .expect("chain");
    assert_eq!(chain.hops.len(), 2);
    let running = Running::start(&chain).await.expect("tunnel up");

    let (client, connection) = tokio_postgres::connect(
        &conninfo(
            running.addr,
            &format!(
                "user={PG_USER} password={} dbname=postgres sslmode=disable",
                password()
            ),
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("tokio-postgres connects through the tunnel");
    let conn = tokio::spawn(connection);

    let row = client.query_one(WHO, &[]).await.expect("who am I");
    let (addr, port, server, user, ssl): (String, i32, String, String, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(server, PG_IP, "the server listens on {PG_IP} only");
    assert_eq!(user, PG_USER);
    assert!(!ssl, "sslmode=disable");
    assert_from_last_hop(&t, &addr, port);

    // Real work: a table, rows in, an aggregate and a large value out.
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, name text);
             INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 10000) i;",
        )
        .await
        .expect("create and fill a table");
    let row = client
        .query_one(
            "SELECT count(*), sum(id) FROM t WHERE name LIKE 'row %'",
            &[],
        )
        .await
        .expect("aggregate");
    assert_eq!(row.get::<_, i64>(0), 10_000);
    assert_eq!(row.get::<_, i64>(1), 50_005_000);
    let stmt = client
        .prepare("SELECT name FROM t WHERE id = $1")
        .await
        .expect("prepare");
    for id in [1, 5000, 10_000] {
        let row = client.query_one(&stmt, &[&id]).await.expect("lookup");
        assert_eq!(row.get::<_, String>(0), format!("row {id}"));
    }
    let row = client
        .query_one("SELECT repeat('pgtunnel', 1048576)", &[])
        .await
        .expect("8 MiB value");
    let big: String = row.get(0);
    assert_eq!(big.len(), 8 * 1024 * 1024);
    assert!(big.starts_with("pgtunnelpgtunnel") && big.ends_with("pgtunnel"));
    drop(client);
    conn.await
        .expect("connection task")
        .expect("connection ends cleanly");

    // pg_hba: the TLS-only user is refused on this plaintext connection, by the server.
    let err = tokio_postgres::connect(
        &conninfo(
            running.addr,
            &format!(
                "user={TLS_USER} password={} dbname=postgres sslmode=disable",
                password()
            ),
        ),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("hostnossl ... reject refuses the TLS-only user without TLS");
    let text = format!("{err:?}");
    assert!(text.contains("rejects connection"), "{text}");
    assert!(text.contains("no encryption"), "{text}");

    running.stop().await;
}

fn native_tls(root: &std::path::Path) -> postgres_native_tls::MakeTlsConnector {
    let pem = std::fs::read(root).expect("read CA certificate");
    let cert = native_tls::Certificate::from_pem(&pem).expect("parse CA certificate");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(cert)
        .disable_built_in_roots(true)
        .build()
        .expect("TLS connector");
    postgres_native_tls::MakeTlsConnector::new(connector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_inside_the_tunnel_require_and_verify_full_with_hostaddr() {
    let t = topology().await;
    let chain = t
        .home
        .chain(Some("db.foo.com"), &t.target())
        .expect("chain");
    let running = Running::start(&chain).await.expect("tunnel up");
    let port = running.addr.port();

    // tokio-postgres with native-tls: the certificate is checked against the test CA and
    // the name in host= (db.foo.com), while the TCP connection goes to hostaddr (the tunnel).
    let config = format!(
        "host={SERVER_NAME} hostaddr=127.0.0.1 port={port} user={TLS_USER} password={} \
         dbname=postgres sslmode=require",
        password()
    );
    let (client, connection) = tokio_postgres::connect(&config, native_tls(&t.pg.ca_cert))
        .await
        .expect("TLS through the tunnel, certificate verified for db.foo.com");
    let conn = tokio::spawn(connection);
    let row = client.query_one(WHO, &[]).await.expect("who am I");
    let (addr, client_port, user, ssl): (String, i32, String, bool) =
        (row.get(0), row.get(1), row.get(3), row.get(4));
    assert_eq!(user, TLS_USER, "hostssl let the TLS-only user in");
    assert!(ssl, "pg_stat_ssl.ssl for this connection");
    assert_from_last_hop(&t, &addr, client_port);
    let row = client
        .query_one(
            "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let version: String = row.get(0);
    assert!(version.starts_with("TLSv1."), "{version}");
    drop(client);
    conn.await.expect("connection task").expect("clean end");

    // A name the certificate does not carry fails verification, and so does a CA that did
    // not sign it.
    let wrong = config.replace(SERVER_NAME, "wrong.foo.com");
    let err = tokio_postgres::connect(&wrong, native_tls(&t.pg.ca_cert))
        .await
        .err()
        .expect("wrong.foo.com must not verify");
    assert!(
        format!("{err:?}").contains("certificate verify failed"),
        "{err:?}"
    );
    let err = tokio_postgres::connect(&config, native_tls(&t.pg.other_ca_cert))
        .await
        .err()
        .expect("an unrelated CA must not verify");
    assert!(
        format!("{err:?}").contains("certificate verify failed"),
        "{err:?}"
    );

    // psql (libpq), as the README shows it.
    let psql = |conninfo: String| {
        let mut cmd = t.pg.tool("psql");
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &conninfo,
            "-c",
        ])
        .arg("SELECT ssl, inet_client_addr() FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        cmd.output().expect("run psql")
    };
    let last_hop = source_address_for(t.pg.cluster.addr());
    let out = psql(format!(
        "host=127.0.0.1 port={port} user={PG_USER} dbname=postgres sslmode=require"
    ));
    assert_success(&out, "psql sslmode=require");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("t|{last_hop}")
    );
    let ca = t.pg.ca_cert.display();
    let out = psql(format!(
        "host={SERVER_NAME} hostaddr=127.0.0.1 port={port} user={TLS_USER} dbname=postgres \
         sslmode=verify-full sslrootcert={ca}"
    ));
    assert_success(
        &out,
        "psql sslmode=verify-full host=db.foo.com hostaddr=127.0.0.1",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("t|{last_hop}")
    );
    let out = psql(format!(
        "host=wrong.foo.com hostaddr=127.0.0.1 port={port} user={TLS_USER} dbname=postgres \
         sslmode=verify-full sslrootcert={ca}"
    ));
    assert!(
        !out.status.success(),
        "verify-full with the wrong name must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not match host name \"wrong.foo.com\""),
        "{stderr}"
    );
    let out = psql(format!(
        "host={SERVER_NAME} hostaddr=127.0.0.1 port={port} user={TLS_USER} dbname=postgres \
         sslmode=verify-full sslrootcert={}",
        t.pg.other_ca_cert.display()
    ));
    assert!(
        !out.status.success(),
        "verify-full with another CA must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    running.stop().await;
}

/// The binary as a user runs it, then psql, pg_dump and pgbench through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_pg_dump_and_pgbench_through_the_pgtunnel_binary() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path");
    let mut tunnel =
        Pgtunnel::start(&t.home, &["-F", cfg, "--via", "db.foo.com", &t.target()]).await;
    let addr = tunnel.addr;
    let report = &tunnel.report;
    let text = report.join("\n");
    assert!(
        text.contains(&format!("db.foo.com -> {}", t.target())),
        "{text}"
    );
    let port = addr.port();
    let db = |name: &str| format!("host=127.0.0.1 port={port} user={PG_USER} dbname={name}");

    let run = |tool: &str, args: &[&str]| {
        let out =
            t.pg.tool(tool)
                .args(args)
                .output()
                .expect("run client tool");
        assert_success(&out, &format!("{tool} {args:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // psql, the ready line's command plus user and database.
    let out = run(
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-d",
            &db("postgres"),
            "-c",
            "SELECT inet_client_addr()",
        ],
    );
    assert_eq!(
        out.trim(),
        source_address_for(t.pg.cluster.addr()).to_string()
    );
    run(
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db("postgres"),
            "-c",
            "CREATE DATABASE shop",
        ],
    );
    run(
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db("shop"),
            "-c",
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
            "-c",
            "INSERT INTO items VALUES (1, 'bastion'), (2, 'tunnel'), (3, 'elephant')",
        ],
    );

    // pg_dump of the small database.
    let dump = run("pg_dump", &["-d", &db("shop")]);
    assert!(dump.contains("CREATE TABLE public.items"), "{dump}");
    assert!(
        dump.contains(
            "COPY public.items (id, name) FROM stdin;\n1\tbastion\n2\ttunnel\n3\telephant\n\\.\n"
        ),
        "{dump}"
    );

    // A short, bounded pgbench run.
    let init =
        t.pg.tool("pgbench")
            .args(["-i", "-s", "1", "-q", &db("shop")])
            .output()
            .expect("run pgbench -i");
    assert_success(&init, "pgbench -i -s 1");
    let bench = run("pgbench", &["-c", "4", "-j", "2", "-t", "50", &db("shop")]);
    assert!(
        bench.contains("number of transactions actually processed: 200/200"),
        "{bench}"
    );
    assert!(
        bench.contains("number of failed transactions: 0"),
        "{bench}"
    );
    let history =
        t.pg.local_sql("shop", "SELECT count(*) FROM pgbench_history");
    assert_eq!(history, "200", "every transaction reached the server");

    // Ctrl-C: exit 0.
    tunnel.signal(nix::sys::signal::Signal::SIGINT);
    let status = tunnel.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
}

/// `psql`'s stderr for a connection through the tunnel at `port` (`extra`: more connection
/// parameters).
fn psql_error(t: &Topology, port: u16, extra: &str) -> String {
    let out =
        t.pg.tool("psql")
            .args(["-X", "-d"])
            .arg(format!(
                "host=127.0.0.1 port={port} user={PG_USER} dbname=postgres connect_timeout=30 \
                 {extra}"
            ))
            .arg("-c")
            .arg("SELECT 1")
            .output()
            .expect("run psql");
    assert!(!out.status.success(), "psql should fail");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A connection pgtunnel cannot carry is answered in PostgreSQL's protocol, so psql prints
/// why (the hop, the reason) instead of "server closed the connection unexpectedly": the last
/// hop refusing the channel (PermitOpen), the connection limit, the chain staying down. A
/// client that speaks something else is still just closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_is_told_why_a_connection_cannot_be_carried() {
    let mut t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let db_label = format!("hop 2 (db.foo.com, {})", t.db.addr);

    // The last hop refuses the channel (db.foo.com may open only PostgreSQL's port).
    let refused_target = format!("{PG_IP}:1");
    let tunnel = Pgtunnel::start(
        &t.home,
        &[
            "-F",
            &cfg,
            "--via",
            "db.foo.com",
            "--pg",
            "--no-probe",
            &refused_target,
        ],
    )
    .await;
    let port = tunnel.addr.port();
    for sslmode in ["prefer", "disable"] {
        let err = psql_error(&t, port, &format!("sslmode={sslmode}"));
        assert!(
            err.starts_with(&format!(
                "psql: error: connection to server at \"127.0.0.1\", port {port} failed: \
                 FATAL:  pgtunnel: {db_label} refused to forward to {refused_target}: \
                 administratively prohibited"
            )),
            "{err}"
        );
    }
    // Not a PostgreSQL client: closed without an answer.
    let mut raw = tokio::net::TcpStream::connect(tunnel.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got).await;
    assert!(
        got.is_empty(),
        "no answer to a non-PostgreSQL client: {got:?}"
    );
    // Without --pg (the port is not 5432) psql sees the connection closed, as before.
    drop(tunnel);
    let tunnel = Pgtunnel::start(
        &t.home,
        &[
            "-F",
            &cfg,
            "--via",
            "db.foo.com",
            "--no-probe",
            &refused_target,
        ],
    )
    .await;
    let err = psql_error(&t, tunnel.addr.port(), "");
    assert!(!err.contains("pgtunnel:"), "{err}");
    drop(tunnel);

    // The connection limit.
    let target = t.target();
    let tunnel = Pgtunnel::start(
        &t.home,
        &[
            "-F",
            &cfg,
            "--via",
            "db.foo.com",
            "--pg",
            "--max-connections",
            "1",
            "--wait-for-chain",
            "1",
            &target,
        ],
    )
    .await;
    let port = tunnel.addr.port();
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={PG_USER} password={} dbname=postgres",
        password()
    );
    let (held, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("the first connection is carried");
    let conn = tokio::spawn(conn);
    held.simple_query("SELECT 1").await.expect("query");
    let err = psql_error(&t, port, "");
    assert_eq!(
        err,
        format!(
            "psql: error: connection to server at \"127.0.0.1\", port {port} failed: FATAL:  \
             pgtunnel: too many connections: this tunnel carries at most 1 at once \
             (--max-connections)"
        )
    );
    drop(held);
    let _ = conn.await;

    // The chain goes down (hop 2's sshd and its sessions killed) and stays down.
    t.db.kill_all();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let err = psql_error(&t, port, "");
    assert!(
        err.starts_with(&format!(
            "psql: error: connection to server at \"127.0.0.1\", port {port} failed: FATAL:  \
             pgtunnel: the SSH chain is down ("
        )) && err.ends_with("and was not back within 1s (--wait-for-chain)"),
        "{err}"
    );
    drop(tunnel);
}

/// `pgtunnel ARGS` with `home` as $HOME, PATH, and nothing else of the environment.
fn pgtunnel(home: &Home, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgtunnel"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home.dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` to its end (bounded: 120 s): exit code, stdout, stderr.
async fn finished(cmd: &mut tokio::process::Command) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("pgtunnel stops by itself")
        .expect("run pgtunnel");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `cmd` and reads its stdout up to the ready line (bounded: 60 s): the process, the
/// ready line, and the lines before it.
async fn until_ready(
    cmd: &mut tokio::process::Command,
) -> (tokio::process::Child, String, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pgtunnel");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("ready:") {
                return line;
            }
            before.push(line);
        }
        panic!("no ready line: {before:?}");
    })
    .await
    .expect("ready in time");
    (child, ready, before)
}

/// `pgtunnel`'s exit status and stderr when it stops before its ready line.
async fn fails_before_ready(home: &Home, args: &[&str]) -> (Option<i32>, String, String) {
    finished(&mut pgtunnel(home, args)).await
}

/// Before the ready line, one channel to the target through the chain: PostgreSQL is asked
/// for TLS (and the answer reported); a refused channel, nothing listening or a service that
/// is not PostgreSQL stop pgtunnel (exit 7) naming the hop, with a hint, before it is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_is_probed_before_ready() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let db_label = format!("hop 2 (db.foo.com, {})", t.db.addr);

    // PostgreSQL with TLS: reported.
    let target = t.target();
    let tunnel = Pgtunnel::start(
        &t.home,
        &["-F", &cfg, "--via", "db.foo.com", "--pg", &target],
    )
    .await;
    let report = tunnel.report.join("\n");
    assert!(
        report.contains("probe: PostgreSQL answered; TLS offered: yes"),
        "{report}"
    );
    drop(tunnel);

    // PermitOpen refuses the target.
    let refused = format!("{PG_IP}:1");
    let (code, stdout, stderr) = fails_before_ready(
        &t.home,
        &["-F", &cfg, "--via", "db.foo.com", "--pg", &refused],
    )
    .await;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(!stdout.contains("ready:"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{db_label} refused to forward to {refused}: administratively prohibited"
        )) && stderr.contains("does not allow forwarding to"),
        "{stderr}"
    );

    // Nothing listening, and a service that is not PostgreSQL (an SSH server), through a
    // hop whose sshd may open anything.
    let open = Sshd::start_with(
        support::sshd::SshdOptions {
            ip: "127.0.0.1".parse().expect("ip"),
            authorized: vec![t.home.public()],
            permit_open: Vec::new(),
            extra: "",
        },
        // sshd keeps the first value: this one, not the default `PermitOpen none`.
        "PermitOpen any",
        &[],
    );
    t.home.trust_addr(open.addr, &open.host_key);
    let user = support::sshd::login_user();
    let config = format!(
        "{}{}",
        std::fs::read_to_string(&t.home.config).expect("config"),
        t.home.block("open", open.addr, &user, "")
    );
    t.home.write_config(&config);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let nothing = free.to_string();
    let (code, _, stderr) =
        fails_before_ready(&t.home, &["-F", &cfg, "--via", "open", "--pg", &nothing]).await;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.contains(&format!("could not reach {nothing}: connect failed"))
            && stderr.contains("Nothing accepts connections at"),
        "{stderr}"
    );
    let ssh_service = t.shell.addr.to_string();
    let (code, _, stderr) = fails_before_ready(
        &t.home,
        &["-F", &cfg, "--via", "open", "--pg", &ssh_service],
    )
    .await;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.contains("does not answer as PostgreSQL: it sent")
            && stderr.contains("SSH-2.0-")
            && stderr.contains("--no-pg"),
        "{stderr}"
    );
    // Not PostgreSQL (--no-pg): the channel check only, which an SSH server passes.
    let tunnel = Pgtunnel::start(
        &t.home,
        &["-F", &cfg, "--via", "open", "--no-pg", &ssh_service],
    )
    .await;
    let report = tunnel.report.join("\n");
    assert!(
        report.contains("probe: the target accepted a connection"),
        "{report}"
    );
}

/// `pgtunnel ARGS -- COMMAND...`: its exit code, stdout and stderr (bounded: 120 s).
async fn run_with_command(
    t: &Topology,
    args: &[&str],
    command: &[&str],
) -> (Option<i32>, String, String) {
    finished(
        pgtunnel(&t.home, args)
            .arg("--")
            .args(command)
            .env("PGUSER", PG_USER)
            .env("PGDATABASE", "postgres")
            .env("PGPASSWORD", password())
            .env("PGHOSTADDR", "192.0.2.1"),
    )
    .await
}

/// `-- COMMAND`: the command runs with the tunnel up (PGHOST/PGPORT, {host}/{port}), its
/// stdout is all there is on stdout, its exit status is pgtunnel's; when the chain cannot
/// be set up, it does not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_with_the_tunnel_up() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let target = t.target();
    let args = [
        "-F",
        cfg.as_str(),
        "--via",
        "db.foo.com",
        "--pg",
        target.as_str(),
    ];
    let bin = t.pg.cluster.bindir();
    let psql = bin.join("psql").display().to_string();

    // psql through the tunnel: only its output on stdout, status 0. (PGHOSTADDR pointing
    // elsewhere is removed, with a warning.)
    let (code, stdout, stderr) =
        run_with_command(&t, &args, &[&psql, "-X", "-A", "-t", "-c", "SELECT 40 + 2"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "42\n");
    assert!(stderr.contains("PGHOSTADDR is set"), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("pgtunnel: warning:") || l.trim().is_empty()),
        "only warnings and errors: {stderr}"
    );

    // The command's failure is pgtunnel's exit status.
    let (code, _, stderr) = run_with_command(&t, &args, &[&psql, "-X", "-c", "SELECT 1/0"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("division by zero"), "{stderr}");
    let (code, _, _) = run_with_command(&t, &args, &["sh", "-c", "kill -TERM $$"]).await;
    assert_eq!(code, Some(128 + 15));
    let (code, _, stderr) = run_with_command(&t, &args, &["no-such-command-here"]).await;
    assert_eq!(code, Some(127), "{stderr}");

    // Placeholders and the environment.
    let (code, stdout, _) = run_with_command(
        &t,
        &args,
        &[
            "sh",
            "-c",
            "echo {host} {port} $PGHOST $PGPORT ${PGHOSTADDR:-unset}",
        ],
    )
    .await;
    assert_eq!(code, Some(0));
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{stdout}");
    assert_eq!((words[0], words[2]), ("127.0.0.1", "127.0.0.1"));
    assert_eq!(words[1], words[3]);
    assert_eq!(words[4], "unset");

    // pg_dump through the tunnel, byte for byte the dump made directly.
    let (code, _, stderr) = run_with_command(
        &t,
        &args,
        &[
            &psql,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name \
             FROM generate_series(1, 5000) g",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let direct =
        t.pg.tool("pg_dump")
            .arg(format!(
                "host={PG_IP} port={} user={PG_USER} dbname=postgres",
                t.pg.cluster.addr().port()
            ))
            .output()
            .expect("pg_dump directly");
    assert_success(&direct, "pg_dump directly");
    let pg_dump = bin.join("pg_dump").display().to_string();
    let (code, stdout, stderr) = run_with_command(&t, &args, &[&pg_dump]).await;
    assert_eq!(code, Some(0), "{stderr}");
    // pg_dump 15.14+ brackets the dump in `\restrict KEY` / `\unrestrict KEY` with a random
    // KEY per run (CVE-2025-8714); everything else is byte for byte.
    let unkeyed = |dump: &str| -> String {
        dump.lines()
            .map(|l| match l.split_once(' ') {
                Some((w @ ("\\restrict" | "\\unrestrict"), _)) => w.to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let direct = String::from_utf8(direct.stdout).expect("utf-8 dump");
    assert!(
        direct.contains("COPY public.items (id, name) FROM stdin;"),
        "{direct}"
    );
    assert_eq!(unkeyed(&stdout), unkeyed(&direct), "the same dump");
    assert_eq!(stdout.len(), direct.len());

    // After an alias, as `pgtunnel db-prod -- pg_dump shop`.
    let config = std::fs::read_to_string(&t.home.config).expect("config");
    t.home.write_config(&format!(
        "{config}Host pgdb\n  HostName {PG_IP}\n  ProxyJump db.foo.com\n"
    ));
    let alias = format!("pgdb:{}", t.pg.cluster.addr().port());
    let (code, stdout, stderr) = run_with_command(
        &t,
        &["-F", &cfg, "--pg", &alias],
        &[&psql, "-X", "-A", "-t", "-c", "SELECT 'through the alias'"],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "through the alias\n");

    // The chain cannot be set up (the last hop refuses the target): the command never runs.
    let marker = t.home.dir.path().join("ran");
    let refused = format!("{PG_IP}:1");
    let (code, stdout, stderr) = run_with_command(
        &t,
        &["-F", &cfg, "--via", "db.foo.com", "--pg", &refused],
        &["touch", marker.to_str().expect("utf-8")],
    )
    .await;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!marker.exists(), "the command ran");
}

/// `--sslmode verify-full`: the ready line's string names the server (host=TARGET's name,
/// hostaddr=the tunnel) and psql verifies the certificate through it; a `--` command gets the
/// same in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connection_strings_name_the_server() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let target = t.target();
    let args = [
        "-F",
        cfg.as_str(),
        "--via",
        "db.foo.com",
        "--sslmode",
        "verify-full",
        target.as_str(),
    ];
    let tunnel = Pgtunnel::start(&t.home, &args).await;
    let port = tunnel.addr.port();
    let expected = format!("host={PG_IP} hostaddr=127.0.0.1 port={port} sslmode=verify-full");
    let ca = t.pg.ca_cert.display().to_string();
    let out =
        t.pg.tool("psql")
            .args(["-X", "-A", "-t", "-d"])
            .arg(format!(
                "{expected} user={TLS_USER} dbname=postgres sslrootcert={ca}"
            ))
            .args([
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ])
            .output()
            .expect("psql");
    assert_success(&out, "psql with the ready line's string");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    // The same string with another server name: the certificate does not match it.
    let wrong = expected.replace(&format!("host={PG_IP}"), "host=wrong.foo.com");
    let out =
        t.pg.tool("psql")
            .args(["-X", "-d"])
            .arg(format!(
                "{wrong} user={TLS_USER} dbname=postgres sslrootcert={ca}"
            ))
            .args(["-c", "SELECT 1"])
            .output()
            .expect("psql");
    assert!(
        !out.status.success(),
        "verify-full with a wrong name must fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match host name"), "{stderr}");
    drop(tunnel);

    // The ready line itself.
    let (child, ready, _) = until_ready(&mut pgtunnel(&t.home, &args)).await;
    assert!(
        ready.contains("sslmode=verify-full\" (or the URI postgresql://127.0.0.3:")
            && ready.contains("?hostaddr=127.0.0.1&sslmode=verify-full)"),
        "{ready}"
    );
    drop(child);

    // A `--` command: PGHOST is the server's name, PGHOSTADDR the tunnel, verify-full.
    let psql = t.pg.cluster.bindir().join("psql").display().to_string();
    let (code, stdout, stderr) = finished(
        pgtunnel(&t.home, &args)
            .args(["--", &psql, "-X", "-A", "-t", "-c"])
            .arg("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .env("PGUSER", TLS_USER)
            .env("PGDATABASE", "postgres")
            .env("PGPASSWORD", password())
            .env("PGSSLROOTCERT", &ca),
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "t\n");
}

/// `--socket DIR`: psql -h DIR works through the tunnel, no TCP port is opened, another local
/// user (`nobody`) cannot connect, a stale socket is replaced and the socket is removed on
/// exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_unix_socket() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let target = t.target();
    let port = t.pg.cluster.addr().port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pgt");
    let socket = dir.join(format!(".s.PGSQL.{port}"));
    // A stale socket from a pgtunnel that was killed: nothing accepts on it.
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());

    let dir_arg = dir.to_str().expect("utf-8").to_string();
    let (mut child, ready, seen) = until_ready(&mut pgtunnel(
        &t.home,
        &[
            "-F",
            &cfg,
            "--via",
            "db.foo.com",
            "--pg",
            "--socket",
            &dir_arg,
            &target,
        ],
    ))
    .await;
    let expected_socket = socket.display().to_string();
    assert!(
        ready.starts_with(&format!("ready: {expected_socket} -> "))
            && !ready.contains("127.0.0.1:"),
        "{ready}"
    );
    assert!(
        ready.contains(&format!("psql \"host={dir_arg} port={port}\"")),
        "{ready}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("local Unix socket, only you")),
        "{seen:?}"
    );
    let pid = child.id().expect("pid");
    // No TCP port: none of its sockets is a listening TCP socket.
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    assert!(
        !inodes.is_empty(),
        "it has sockets (its SSH session, its Unix listener)"
    );
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(
                !(f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9])),
                "pgtunnel listens on TCP: {line}"
            );
        }
    }

    // psql -h DIR, as with a local PostgreSQL.
    let psql = |as_nobody: bool| {
        let mut cmd = if as_nobody {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(t.pg.cluster.bindir().join("psql"));
            c
        } else {
            t.pg.tool("psql")
        };
        cmd.args(["-X", "-A", "-t", "-h", &dir_arg, "-p", &port.to_string()])
            .args(["-U", PG_USER, "-d", "postgres", "-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", password())
            .output()
            .expect("run psql")
    };
    let out = psql(false);
    assert_success(&out, "psql -h DIR");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Another user cannot reach the socket.
    let out = psql(true);
    assert!(!out.status.success(), "nobody connected");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // SIGINT: the socket is removed.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists(), "the socket is removed on exit");
}

/// `pgtunnel check`: every hop and the target, field by field in `--json`; a failing step
/// gives its exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_hop_and_the_target() {
    let t = topology().await;
    let cfg = t.home.config.to_str().expect("utf-8 path").to_string();
    let target = t.target();
    let home = &t.home;
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        finished(&mut pgtunnel(home, &args)).await
    };
    let args = |extra: &[&str], target: &str| -> Vec<String> {
        ["check", "-F", &cfg, "--via", "db.foo.com", "--pg"]
            .iter()
            .chain(extra)
            .chain([&target])
            .map(|s| s.to_string())
            .collect()
    };

    let (code, stdout, stderr) = run(args(&["--json"], &target)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(j["ok"], true);
    let hops = j["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2);
    for (h, (name, addr)) in hops
        .iter()
        .zip([("shell.foo.com", t.shell.addr), ("db.foo.com", t.db.addr)])
    {
        assert_eq!(h["name"], name);
        assert_eq!(h["address"], addr.to_string());
        assert_eq!(h["ok"], true);
        assert!(h["time_ms"].as_u64().is_some(), "{h}");
        assert!(
            h["host_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("SHA256:")),
            "{h}"
        );
        assert!(
            h["verified_by"]
                .as_str()
                .is_some_and(|v| v.contains("known_hosts")),
            "{h}"
        );
        assert!(
            h["authenticated"]
                .as_str()
                .is_some_and(|a| a.contains("publickey")),
            "{h}"
        );
        assert!(
            h["kex"]
                .as_str()
                .is_some_and(|k| k.starts_with("sntrup761x25519")),
            "{h}"
        );
        assert_eq!(h["post_quantum"], true);
        assert!(h["cipher"].as_str().is_some_and(|c| !c.is_empty()), "{h}");
    }
    assert_eq!(hops[0]["via"], "TCP");
    assert_eq!(j["target"]["ok"], true);
    assert_eq!(j["target"]["postgres"], true);
    assert_eq!(j["target"]["tls_offered"], true);
    let segments = j["path"]["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 4);
    // db.foo.com -> 127.0.0.3: a loopback address, it stays on that machine.
    assert_eq!(segments[3]["leaves_machine_unencrypted"], false);
    assert!(
        segments[3]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("stays on db.foo.com")),
        "{}",
        segments[3]
    );
    assert!(j["error"].is_null());

    // Text.
    let (code, stdout, _) = run(args(&[], &target)).await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("hop 1 (shell.foo.com, {}): ok", t.shell.addr))
            && stdout.contains("target: PostgreSQL answered; TLS offered: yes")
            && stdout.contains("pg_hba.conf"),
        "{stdout}"
    );

    // The last hop refuses the target: exit 7, the hops fine, the target not.
    let refused = format!("{PG_IP}:1");
    let (code, stdout, _) = run(args(&["--json"], &refused)).await;
    assert_eq!(code, Some(7));
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(j["ok"], false);
    assert_eq!(j["hops"][1]["ok"], true);
    assert_eq!(j["target"]["ok"], false);
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("administratively prohibited")),
        "{j}"
    );
}
