//! Just enough of the PostgreSQL frontend/backend protocol (version 3) to check a server
//! through a tunnel without a client library: ask whether it offers TLS (`SSLRequest`), and
//! run a simple query as a user that needs no password (`trust`).
//!
//! The demo's self-check uses it; so can anything that wants to know whether the far end of a
//! tunnel really is PostgreSQL. Every read is bounded by the caller's timeout and by
//! [`MAX_MESSAGE`].

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest backend message accepted (a result row of the demo's check is 1 MiB).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// `SSLRequest`'s request code (1234 << 16 | 5679).
pub(crate) const SSL_REQUEST: u32 = 80_877_103;

/// The `SSLRequest` message: its length (8) and its code.
pub(crate) fn ssl_request() -> [u8; 8] {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&8u32.to_be_bytes());
    msg[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    msg
}
/// Protocol 3.0.
const PROTOCOL_3_0: u32 = 196_608;

/// What went wrong talking to the server.
#[derive(Debug, Error)]
pub enum PgWireError {
    /// Connecting, reading or writing failed.
    #[error("PostgreSQL at {addr}: {what}: {source}")]
    Io {
        /// The address talked to.
        addr: SocketAddr,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("PostgreSQL at {addr}: no answer within {seconds} s")]
    Timeout {
        /// The address talked to.
        addr: SocketAddr,
        /// The limit.
        seconds: u64,
    },
    /// The peer does not speak the protocol as expected (perhaps not PostgreSQL at all).
    #[error("PostgreSQL at {addr}: unexpected answer: {detail}")]
    Protocol {
        /// The address talked to.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// The server reported an error (`ErrorResponse`).
    #[error("PostgreSQL at {addr}: {severity}: {message} (SQLSTATE {code})")]
    Server {
        /// The address talked to.
        addr: SocketAddr,
        /// `ERROR`, `FATAL`, ...
        severity: String,
        /// SQLSTATE.
        code: String,
        /// The primary message.
        message: String,
    },
    /// The server wants a password (or another method); this client only does `trust`.
    #[error(
        "PostgreSQL at {addr}: the server asks for authentication ({method}); this check only logs in where pg_hba.conf says trust"
    )]
    AuthRequired {
        /// The address talked to.
        addr: SocketAddr,
        /// The method the server asked for.
        method: &'static str,
    },
}

/// Sends `SSLRequest` on a fresh connection and returns whether the server offers TLS
/// (`S`) or not (`N`). The connection is closed afterwards.
pub async fn offers_tls(addr: SocketAddr, timeout: Duration) -> Result<bool, PgWireError> {
    bounded(addr, timeout, async {
        let mut tcp = connect(addr).await?;
        tcp.write_all(&ssl_request())
            .await
            .map_err(io(addr, "send SSLRequest"))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(io(addr, "read the SSLRequest answer"))?;
        match answer[0] {
            b'S' => Ok(true),
            b'N' => Ok(false),
            other => Err(PgWireError::Protocol {
                addr,
                detail: format!("SSLRequest answered with byte {other:#04x}, not 'S' or 'N'"),
            }),
        }
    })
    .await
}

/// The result of [`simple_query`]: the last statement's rows, as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Server parameters reported at start-up (`server_version`, ...).
    pub parameters: Vec<(String, String)>,
}

impl QueryResult {
    /// A server parameter reported at start-up.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Logs in as `user` to `database` without TLS (the server must `trust` this connection),
/// runs `sql` with the simple query protocol and returns the rows as text.
pub async fn simple_query(
    addr: SocketAddr,
    user: &str,
    database: &str,
    sql: &str,
    timeout: Duration,
) -> Result<QueryResult, PgWireError> {
    bounded(addr, timeout, async {
        let mut tcp = connect(addr).await?;
        let parameters = start_up(&mut tcp, addr, user, database).await?;
        let mut result = query(&mut tcp, addr, sql).await;
        // Terminate; the server closes the connection.
        let _ = tcp.write_all(&[b'X', 0, 0, 0, 4]).await;
        let _ = tcp.shutdown().await;
        if let Ok(r) = &mut result {
            r.parameters = parameters;
        }
        result
    })
    .await
}

/// The startup message, then authentication (`trust` only), parameters, `ReadyForQuery`.
/// Returns the server's parameters.
async fn start_up(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    user: &str,
    database: &str,
) -> Result<Vec<(String, String)>, PgWireError> {
    let mut body = Vec::new();
    body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in [
        ("user", user),
        ("database", database),
        ("application_name", "pgtunnel"),
    ] {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut startup = Vec::with_capacity(body.len() + 4);
    startup.extend_from_slice(&frame_len(addr, body.len())?.to_be_bytes());
    startup.extend_from_slice(&body);
    tcp.write_all(&startup)
        .await
        .map_err(io(addr, "send the startup message"))?;

    let mut parameters = Vec::new();
    loop {
        let (tag, payload) = read_message(tcp, addr).await?;
        match tag {
            b'R' => {
                let code = be_u32(&payload, 0).ok_or_else(|| short(addr, "Authentication"))?;
                if code == 0 {
                    continue;
                }
                let method = auth_method(code);
                return Err(PgWireError::AuthRequired { addr, method });
            }
            b'S' => {
                let mut parts = payload.split(|b| *b == 0);
                let name = parts.next().unwrap_or_default();
                let value = parts.next().unwrap_or_default();
                parameters.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
            b'K' | b'N' => {}
            b'E' => return Err(server_error(addr, &payload)),
            b'Z' => return Ok(parameters),
            other => return Err(unexpected(addr, other, "start-up")),
        }
    }
}

/// The method an `AuthenticationXXX` request code asks for.
fn auth_method(code: u32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        3 => "cleartext password",
        5 => "MD5 password",
        7 => "GSSAPI",
        9 => "SSPI",
        10 => "SASL (SCRAM)",
        _ => "an unknown method",
    }
}

/// One simple `Query` up to `ReadyForQuery`: the last statement's rows, or the first error.
async fn query(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    sql: &str,
) -> Result<QueryResult, PgWireError> {
    let mut message = Vec::with_capacity(sql.len() + 6);
    message.push(b'Q');
    message.extend_from_slice(&frame_len(addr, sql.len() + 1)?.to_be_bytes());
    cstr(&mut message, sql);
    tcp.write_all(&message)
        .await
        .map_err(io(addr, "send the query"))?;
    let mut result = QueryResult::default();
    let mut error = None;
    loop {
        let (tag, payload) = read_message(tcp, addr).await?;
        match tag {
            b'T' => {
                result.columns = parse_row_description(addr, &payload)?;
                result.rows.clear();
            }
            b'D' => result.rows.push(parse_data_row(addr, &payload)?),
            b'C' | b'I' | b'N' | b'S' => {}
            b'E' => error = Some(server_error(addr, &payload)),
            b'Z' => break,
            other => return Err(unexpected(addr, other, "a query")),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

async fn bounded<T>(
    addr: SocketAddr,
    timeout: Duration,
    f: impl Future<Output = Result<T, PgWireError>>,
) -> Result<T, PgWireError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| PgWireError::Timeout {
            addr,
            seconds: timeout.as_secs(),
        })?
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, PgWireError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(io(addr, "connect"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn io(addr: SocketAddr, what: &'static str) -> impl FnOnce(std::io::Error) -> PgWireError {
    move |source| PgWireError::Io { addr, what, source }
}

fn short(addr: SocketAddr, what: &str) -> PgWireError {
    PgWireError::Protocol {
        addr,
        detail: format!("truncated {what} message"),
    }
}

fn unexpected(addr: SocketAddr, tag: u8, during: &str) -> PgWireError {
    PgWireError::Protocol {
        addr,
        detail: format!(
            "message type {:?} during {during}",
            char::from(tag).escape_default().to_string()
        ),
    }
}

fn cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// The length field of a message whose body (after the length) is `body` bytes.
fn frame_len(addr: SocketAddr, body: usize) -> Result<u32, PgWireError> {
    u32::try_from(body + 4).map_err(|_| PgWireError::Protocol {
        addr,
        detail: "message too long to send".into(),
    })
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = buf.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

async fn read_message(tcp: &mut TcpStream, addr: SocketAddr) -> Result<(u8, Vec<u8>), PgWireError> {
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header)
        .await
        .map_err(io(addr, "read a message"))?;
    let len = be_u32(&header, 1).unwrap_or(0) as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(PgWireError::Protocol {
            addr,
            detail: format!(
                "message type {:?} with length {len}",
                char::from(header[0]).escape_default().to_string()
            ),
        });
    }
    let mut payload = vec![0u8; len - 4];
    tcp.read_exact(&mut payload)
        .await
        .map_err(io(addr, "read a message"))?;
    Ok((header[0], payload))
}

fn parse_row_description(addr: SocketAddr, p: &[u8]) -> Result<Vec<String>, PgWireError> {
    let n = be_u16(p, 0).ok_or_else(|| short(addr, "RowDescription"))?;
    let mut at = 2;
    let mut names = Vec::with_capacity(n.into());
    for _ in 0..n {
        let rest = p.get(at..).ok_or_else(|| short(addr, "RowDescription"))?;
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| short(addr, "RowDescription"))?;
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        // name, NUL, table oid (4), column (2), type oid (4), size (2), modifier (4), format (2)
        at += end + 1 + 18;
    }
    Ok(names)
}

fn parse_data_row(addr: SocketAddr, p: &[u8]) -> Result<Vec<Option<String>>, PgWireError> {
    let n = be_u16(p, 0).ok_or_else(|| short(addr, "DataRow"))?;
    let mut at = 2;
    let mut row = Vec::with_capacity(n.into());
    for _ in 0..n {
        let len = be_u32(p, at).ok_or_else(|| short(addr, "DataRow"))?;
        at += 4;
        if len == u32::MAX {
            row.push(None);
            continue;
        }
        let len = len as usize;
        let value = p.get(at..at + len).ok_or_else(|| short(addr, "DataRow"))?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        at += len;
    }
    Ok(row)
}

fn server_error(addr: SocketAddr, p: &[u8]) -> PgWireError {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    for field in p.split(|b| *b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'S' => severity = value,
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    PgWireError::Server {
        addr,
        severity,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5432);

    #[test]
    fn data_row_with_null_and_text() {
        let mut p = vec![0, 2];
        p.extend_from_slice(&u32::MAX.to_be_bytes());
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(b"abc");
        assert_eq!(
            parse_data_row(ADDR, &p).expect("row"),
            vec![None, Some("abc".into())]
        );
        // A length past the end is an error, not a panic.
        let mut bad = vec![0, 1];
        bad.extend_from_slice(&10u32.to_be_bytes());
        bad.extend_from_slice(b"abc");
        assert!(parse_data_row(ADDR, &bad).is_err());
    }

    #[test]
    fn row_description_names() {
        let mut p = vec![0, 2];
        for name in ["a", "version"] {
            p.extend_from_slice(name.as_bytes());
            p.push(0);
            p.extend_from_slice(&[0; 18]);
        }
        assert_eq!(
            parse_row_description(ADDR, &p).expect("names"),
            vec!["a".to_string(), "version".to_string()]
        );
        assert!(parse_row_description(ADDR, &[0, 3, b'x']).is_err());
    }

    #[test]
    fn error_response_fields() {
        let p = b"SFATAL\0C28000\0Mno pg_hba.conf entry\0\0";
        let e = server_error(ADDR, p);
        assert_eq!(
            e.to_string(),
            "PostgreSQL at 127.0.0.1:5432: FATAL: no pg_hba.conf entry (SQLSTATE 28000)"
        );
    }
}
