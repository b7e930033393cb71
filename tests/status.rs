//! systemd notifications: a fake NOTIFY_SOCKET receives exactly the datagrams.

use pgtunnel::notify::Notifier;

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
