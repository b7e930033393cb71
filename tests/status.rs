//! The status socket (`pgtunnel status`) and systemd notifications, over real Unix sockets in
//! a temp dir: what one process serves is what `status` reads; stale sockets are cleaned up;
//! a directory others can use is refused; a client that never reads does not hold up others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgtunnel::notify::Notifier;
use pgtunnel::status::{
    self, HopState, HopStatus, ProcessStatus, ServerLimits, StatusError, StatusServer, TunnelStatus,
};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

fn snapshot(name: &str) -> ProcessStatus {
    ProcessStatus {
        pid: std::process::id(),
        started_unix: 1_767_225_600,
        tunnels: vec![TunnelStatus {
            name: name.into(),
            listen: vec!["127.0.0.1:6543".into(), "/tmp/s/.s.PGSQL.5432".into()],
            target: "db.internal:5432".into(),
            hops: vec![
                HopStatus {
                    name: "bastion".into(),
                    addr: "bastion.example.com:22".into(),
                    state: HopState::Up,
                    since_unix: 1_767_225_601,
                    reason: None,
                },
                HopStatus {
                    name: "inner".into(),
                    addr: "10.0.0.5:22".into(),
                    state: HopState::Reconnecting,
                    since_unix: 1_767_225_700,
                    reason: Some("connection reset".into()),
                },
            ],
            open: 2,
            accepted: 10,
            bytes_up: 12_345,
            bytes_down: 678_901,
            refused: 1,
            rejected: 3,
            reset: 4,
            reconnects: 5,
        }],
    }
}

fn provider(p: ProcessStatus) -> status::Provider {
    Arc::new(move || p.clone())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A socket file nobody accepts on, as a killed process leaves it.
fn stale_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

fn private_dir(tmp: &tempfile::TempDir) -> PathBuf {
    let dir = tmp.path().join("run/pgtunnel");
    status::ensure_dir(&dir).unwrap();
    dir
}

#[tokio::test]
async fn status_reads_back_what_the_process_serves_and_the_socket_goes_on_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run/pgtunnel");
    let server = StatusServer::start(&dir, provider(snapshot("staging"))).unwrap();
    assert_eq!(mode(&dir), 0o700, "created private");
    assert_eq!(mode(server.path()), 0o600);
    assert_eq!(
        server.path(),
        dir.join(format!("{}.sock", std::process::id()))
    );

    let found = status::collect(&dir).await.unwrap();
    assert_eq!(found.processes, vec![snapshot("staging")]);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    // What `status` prints and `status --json` writes, from that.
    let text = status::render(&found.processes, 1_767_225_712);
    assert!(text.contains("via bastion (up 1m51s) -> inner (reconnecting since 12s: connection reset) -> db.internal:5432"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&status::to_json(&found.processes)).unwrap();
    assert_eq!(json[0]["tunnels"][0]["bytes_down"], 678_901);

    let path = server.path().to_path_buf();
    server.stop().await;
    assert!(!path.exists(), "socket removed on stop");
    let found = status::collect(&dir).await.unwrap();
    assert!(found.processes.is_empty() && found.problems.is_empty());
    assert_eq!(status::render(&found.processes, 0), "no pgtunnel running\n");
}

#[tokio::test]
async fn dropping_the_server_removes_its_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let server = StatusServer::start(&dir, provider(snapshot("a"))).unwrap();
    let path = server.path().to_path_buf();
    drop(server);
    assert!(!path.exists());
}

#[tokio::test]
async fn stale_sockets_are_removed_by_status_and_replaced_by_a_new_server_with_that_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let dead = dir.join("999999.sock");
    stale_socket(&dead);
    // Not ours to touch: a file that is not `*.sock`, and a `*.sock` that is not a socket.
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::write(dir.join("plain.sock"), "x").unwrap();

    let found = status::collect(&dir).await.unwrap();
    assert!(found.processes.is_empty());
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    assert_eq!(found.removed, vec![dead.clone()]);
    assert!(!dead.exists());
    assert!(dir.join("notes.txt").exists() && dir.join("plain.sock").exists());

    // pid reuse: a socket with our pid left by an earlier process is replaced.
    let ours = dir.join(format!("{}.sock", std::process::id()));
    stale_socket(&ours);
    let server = StatusServer::start(&dir, provider(snapshot("b"))).unwrap();
    let found = status::collect(&dir).await.unwrap();
    assert_eq!(found.processes, vec![snapshot("b")]);
    // One that is served is not: a second server in this process is refused.
    assert!(matches!(
        StatusServer::start(&dir, provider(snapshot("c"))),
        Err(StatusError::InUse { .. })
    ));
    drop(server);
}

#[tokio::test]
async fn a_directory_others_can_use_is_refused_by_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = StatusServer::start(&dir, provider(snapshot("a"))).unwrap_err();
    assert!(matches!(err, StatusError::NotPrivate { .. }), "{err}");
    assert!(err.to_string().contains("0755"), "{err}");
    let err = status::collect(&dir).await.unwrap_err();
    assert!(matches!(err, StatusError::NotPrivate { .. }), "{err}");

    // A symbolic link to a private directory is refused too (it could be swapped).
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert!(matches!(
        status::ensure_dir(&link),
        Err(StatusError::NotPrivate { .. })
    ));

    // No directory at all: nothing is running.
    let found = status::collect(&tmp.path().join("absent")).await.unwrap();
    assert!(found.processes.is_empty() && found.problems.is_empty());
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let err = StatusServer::start(&private_dir(&tmp), provider(snapshot("a"))).unwrap_err();
    assert!(matches!(err, StatusError::Bind { .. }), "{err}");
}

/// A snapshot too large for the socket buffer, so a client that does not read holds its
/// answer mid-write.
fn huge() -> ProcessStatus {
    snapshot(&"x".repeat(2 << 20))
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_block_others_and_is_dropped() {
    // A server that would wait for the stuck client holds everyone for a minute: the other
    // client is answered long before that (no timing is asserted, only that it does not wait).
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let patient = ServerLimits {
        max_clients: 4,
        write_timeout: Duration::from_secs(60),
    };
    let server = StatusServer::start_with(&dir, provider(huge()), patient).unwrap();
    let _stuck = UnixStream::connect(server.path()).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(30), status::collect(&dir))
        .await
        .expect("answered while the other client is stuck")
        .unwrap();
    assert_eq!(found.processes, vec![huge()]);
    drop(server);

    // The stuck client is dropped at the write timeout: what it reads then ends short.
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let limits = ServerLimits {
        max_clients: 4,
        write_timeout: Duration::from_millis(800),
    };
    let server = StatusServer::start_with(&dir, provider(huge()), limits).unwrap();
    let mut stuck = UnixStream::connect(server.path()).await.unwrap();
    // Not reading until the server has given up on this client.
    tokio::time::sleep(limits.write_timeout * 2).await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stuck.read_to_end(&mut got))
        .await
        .expect("the server ends the stuck connection")
        .unwrap();
    let full = serde_json::to_vec(&huge()).unwrap().len() + 1;
    assert!(got.len() < full, "{} of {full} bytes", got.len());
    drop(server);
}

#[tokio::test]
async fn at_most_max_clients_are_answered_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let limits = ServerLimits {
        max_clients: 1,
        write_timeout: Duration::from_millis(600),
    };
    let server = StatusServer::start_with(&dir, provider(huge()), limits).unwrap();
    let _stuck = UnixStream::connect(server.path()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The only slot is taken: this one waits until the stuck client is dropped, then is
    // answered.
    let started = Instant::now();
    let found = status::collect(&dir).await.unwrap();
    assert_eq!(found.processes.len(), 1, "{:?}", found.problems);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    drop(server);
}

#[tokio::test]
async fn a_bad_or_silent_socket_is_a_problem_and_the_others_are_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = private_dir(&tmp);
    let server = StatusServer::start(&dir, provider(snapshot("good"))).unwrap();

    let garbage = tokio::net::UnixListener::bind(dir.join("1.sock")).unwrap();
    let silent = tokio::net::UnixListener::bind(dir.join("2.sock")).unwrap();
    let answer_garbage = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = garbage.accept().await.unwrap();
        s.write_all(b"not json\n").await.unwrap();
    });
    let hold_silent = tokio::spawn(async move {
        let (s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });

    let found = status::collect_with(&dir, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(found.processes, vec![snapshot("good")]);
    let problems: Vec<String> = found.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("1.sock: unreadable answer: "),
        "{problems:?}"
    );
    assert!(
        problems[1].ends_with("2.sock: no answer within 0.5s"),
        "{problems:?}"
    );
    assert!(dir.join("1.sock").exists(), "a live socket is not removed");
    answer_garbage.await.unwrap();
    hold_silent.abort();
    drop(server);
}

// systemd notifications: a fake NOTIFY_SOCKET receives exactly the datagrams.

fn receive_all(socket: &std::os::unix::net::UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

fn notify_all(notifier: &Notifier) {
    notifier.ready().unwrap();
    notifier.status("3 tunnels up\nbastion: up").unwrap();
    notifier.stopping().unwrap();
}

const EXPECTED: [&str; 3] = ["READY=1", "STATUS=3 tunnels up bastion: up", "STOPPING=1"];

#[test]
fn notify_socket_path_receives_exactly_the_datagrams() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let value = path.to_str().unwrap().to_string();
    let notifier = Notifier::from_env(&|k| (k == "NOTIFY_SOCKET").then(|| value.clone()))
        .unwrap()
        .unwrap();
    notify_all(&notifier);
    assert_eq!(receive_all(&socket), EXPECTED);
}

#[cfg(target_os = "linux")]
#[test]
fn notify_abstract_socket_receives_exactly_the_datagrams() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("pgtunnel-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    let notifier = Notifier::new(&format!("@{name}")).unwrap();
    notify_all(&notifier);
    assert_eq!(receive_all(&socket), EXPECTED);
}

#[test]
fn a_notify_socket_nobody_listens_on_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let notifier = Notifier::new(tmp.path().join("gone").to_str().unwrap()).unwrap();
    let err = notifier.ready().unwrap_err();
    assert!(err.to_string().contains("cannot notify systemd"), "{err}");
}
