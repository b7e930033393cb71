//! A throw-away PostgreSQL cluster for the tests (the library's [`pgtunnel::demo::pgcluster`], the
//! same code `pgtunnel demo` uses), with TLS: a test CA made with the `openssl` command and a
//! server certificate for [`SERVER_NAME`]. Dropping it stops the server and removes it all.
//!
//! pg_hba.conf:
//! - the Unix socket trusts everyone (the tests set up databases through it);
//! - [`TLS_USER`] may log in over TCP only with TLS (`hostssl`; `hostnossl ... reject`);
//! - everyone else over TCP with a SCRAM password, TLS or not.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgtunnel::demo::pgcluster::{Cluster, ClusterOptions};

/// The name in the server certificate (the manual's database host).
pub const SERVER_NAME: &str = "db.foo.com";
/// The superuser (SCRAM password [`password`]).
pub const PG_USER: &str = "alice";
/// A user that pg_hba.conf lets in over TCP only with TLS (same password).
pub const TLS_USER: &str = "tlsonly";
/// The users' password: random per test process (the server is reachable by any local user
/// while a test runs).
pub fn password() -> &'static str {
    static PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PASSWORD.get_or_init(|| {
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..24)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    })
}

pub struct TestPg {
    pub cluster: Cluster,
    /// The test CA's certificate (for `sslrootcert`).
    pub ca_cert: PathBuf,
    /// A second CA, which did not sign the server's certificate.
    pub other_ca_cert: PathBuf,
    _certs: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (install the openssl package; scripts/test does)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`{name}.crt`, `{name}.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=pgtunnel test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

impl TestPg {
    /// Starts a cluster listening on `ip` only, with `ssl = on`.
    pub fn start(ip: IpAddr) -> TestPg {
        let certs = tempfile::tempdir().expect("tempdir for certificates");
        let dir = certs.path();
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                &format!("/CN={SERVER_NAME}"),
            ],
        );
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName=DNS:{SERVER_NAME},IP:{ip}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write server.ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        let read = |name: &str| std::fs::read(dir.join(name)).expect("read certificate file");
        let opts = ClusterOptions {
            listen: ip,
            superuser: PG_USER.into(),
            password: Some(password().into()),
            hba: vec![
                "local all all trust".into(),
                format!("hostssl all {TLS_USER} 127.0.0.0/8 scram-sha-256"),
                format!("hostnossl all {TLS_USER} 127.0.0.0/8 reject"),
                "host all all 127.0.0.0/8 scram-sha-256".into(),
            ],
            settings: vec![
                "ssl = on".into(),
                "ssl_cert_file = 'server.crt'".into(),
                "ssl_key_file = 'server.key'".into(),
                "log_connections = on".into(),
            ],
            files: vec![
                ("server.crt".into(), read("server.crt")),
                ("server.key".into(), read("server.key")),
            ],
            init_sql: vec![format!(
                "CREATE ROLE {TLS_USER} LOGIN PASSWORD '{}'",
                password()
            )],
        };
        let cluster = match Cluster::start(&opts) {
            Ok(c) => c,
            Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
        };
        TestPg {
            cluster,
            ca_cert: dir.join("ca.crt"),
            other_ca_cert: dir.join("other-ca.crt"),
            _certs: certs,
        }
    }

    /// A client program of the server's version (`psql`, `pg_dump`, `pgbench`).
    pub fn tool(&self, name: &str) -> Command {
        let path = self.cluster.bindir().join(name);
        assert!(
            path.is_file(),
            "{} is missing: install postgresql-client and postgresql (pgbench is in the server \
             package on Debian; scripts/test installs both)",
            path.display()
        );
        let mut cmd = Command::new(path);
        // Only what the test says: no PGHOST & co. from the environment, no ~/.psqlrc, no
        // ~/.postgresql/ client certificates.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.env("PGPASSWORD", password())
            .env("PGCONNECT_TIMEOUT", "30")
            .env("HOME", self._certs.path());
        cmd
    }

    /// Runs SQL as the superuser over the Unix socket (not through any tunnel).
    pub fn local_sql(&self, db: &str, sql: &str) -> String {
        let conninfo = format!(
            "host={} port={} user={PG_USER} dbname={db}",
            self.cluster.socket_dir().display(),
            self.cluster.addr().port()
        );
        let out = self
            .tool("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert_success(&out, &format!("psql (local) {sql}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
