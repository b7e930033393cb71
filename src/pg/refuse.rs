//! Turning a PostgreSQL client away in its own protocol, so that it prints why.
//!
//! When pgtunnel cannot carry a connection (the chain stays down, the last hop refuses the
//! channel, the connection limit is reached), a plain reset makes `psql` say "server closed
//! the connection unexpectedly". If the client is a PostgreSQL client, [`answer`] instead
//! reads its first message and replies as a server that cannot serve it would:
//!
//! - `SSLRequest` / `GSSENCRequest`: `N` (not offered), then the next message is read. An
//!   `ErrorResponse` in reply to those requests would not be shown: since CVE-2024-10977,
//!   libpq ignores what a server says before TLS or GSS is settled.
//! - `StartupMessage` (protocol 3.x): read whole (at most [`MAX_STARTUP`] bytes, as the
//!   postmaster's limit), then an `ErrorResponse` (severity FATAL, SQLSTATE 08001 or 08006)
//!   with the reason, then a clean close, so the client reads it.
//! - Anything else (another protocol, a `CancelRequest`, nothing within [`ANSWER_TIME`]):
//!   [`Answered::NotPostgres`], and the caller resets the connection as before.
//!
//! At most the first messages are read, with one time bound for all of it; nothing is
//! buffered beyond the startup packet. [`classify`] and [`error_response`] are pure.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::SSL_REQUEST;

/// How long the client gets to send its first messages.
pub const ANSWER_TIME: Duration = Duration::from_secs(5);
/// How long a told client gets to close the connection itself.
const CLOSE_TIME: Duration = Duration::from_secs(2);
/// The longest startup packet read (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP: usize = 10_000;

/// `GSSENCRequest`'s code (1234 << 16 | 5680).
const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`'s code (1234 << 16 | 5678).
const CANCEL_REQUEST: u32 = 80_877_102;
/// SSL and GSS requests answered before giving up on a client (libpq sends at most one of
/// each).
const MAX_NEGOTIATIONS: usize = 2;

/// The SQLSTATE of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// `08001` sqlclient_unable_to_establish_sqlconnection: the server was not reached.
    CannotConnect,
    /// `08006` connection_failure: the way to the server failed.
    ConnectionFailure,
}

impl SqlState {
    fn code(self) -> &'static str {
        match self {
            SqlState::CannotConnect => "08001",
            SqlState::ConnectionFailure => "08006",
        }
    }
}

/// What a client's first 8 bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstMessage {
    /// `SSLRequest`.
    SslRequest,
    /// `GSSENCRequest`.
    GssEncRequest,
    /// A protocol 3.x `StartupMessage` of this total length (header included).
    Startup(usize),
    /// Not a PostgreSQL client's opening (or a `CancelRequest`, which gets no answer).
    Other,
}

/// Classifies the first 8 bytes a client sent (length, then code or protocol version).
pub fn classify(header: [u8; 8]) -> FirstMessage {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    match (len, code) {
        (8, SSL_REQUEST) => FirstMessage::SslRequest,
        (8, GSSENC_REQUEST) => FirstMessage::GssEncRequest,
        (_, CANCEL_REQUEST) => FirstMessage::Other,
        (8..=MAX_STARTUP, v) if v >> 16 == 3 => FirstMessage::Startup(len),
        _ => FirstMessage::Other,
    }
}

/// An `ErrorResponse`: severity FATAL, `sqlstate`, `message` (NUL bytes dropped: they end a
/// field).
pub fn error_response(sqlstate: SqlState, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate.code()),
        (b'M', message),
    ] {
        body.push(field);
        body.extend(value.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(b'E');
    out.extend(((body.len() + 4) as u32).to_be_bytes());
    out.extend(body);
    out
}

/// How [`answer`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The client spoke PostgreSQL and was sent the `ErrorResponse`.
    Told,
    /// Not a PostgreSQL client (or it went quiet, or the socket failed): reset it.
    NotPostgres,
}

/// Reads a client's first messages and, if it is a PostgreSQL client, answers them with
/// `message` as a FATAL `ErrorResponse` (see the module docs). Bounded by [`ANSWER_TIME`].
pub async fn answer<S>(stream: &mut S, sqlstate: SqlState, message: &str) -> Answered
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(ANSWER_TIME, exchange(stream, sqlstate, message)).await {
        Ok(Ok(true)) => {
            // Let the client read the answer and close first: closing with its data unread
            // would reset the connection before it reads the error.
            let drain = async {
                let mut sink = [0u8; 256];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(CLOSE_TIME, drain).await;
            Answered::Told
        }
        _ => Answered::NotPostgres,
    }
}

async fn exchange<S>(stream: &mut S, sqlstate: SqlState, message: &str) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..=MAX_NEGOTIATIONS {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).await?;
        match classify(header) {
            FirstMessage::SslRequest | FirstMessage::GssEncRequest => {
                stream.write_all(b"N").await?;
            }
            FirstMessage::Startup(len) => {
                let mut rest = vec![0u8; len - header.len()];
                stream.read_exact(&mut rest).await?;
                stream.write_all(&error_response(sqlstate, message)).await?;
                stream.shutdown().await?;
                return Ok(true);
            }
            FirstMessage::Other => return Ok(false),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, code: u32) -> [u8; 8] {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&len.to_be_bytes());
        h[4..].copy_from_slice(&code.to_be_bytes());
        h
    }

    #[test]
    fn first_messages() {
        assert_eq!(classify(header(8, SSL_REQUEST)), FirstMessage::SslRequest);
        assert_eq!(
            classify(header(8, GSSENC_REQUEST)),
            FirstMessage::GssEncRequest
        );
        assert_eq!(classify(header(16, CANCEL_REQUEST)), FirstMessage::Other);
        assert_eq!(classify(header(84, 196_608)), FirstMessage::Startup(84));
        assert_eq!(classify(header(84, 196_610)), FirstMessage::Startup(84));
        // Protocol 2, an oversized packet, HTTP, TLS.
        assert_eq!(classify(header(84, 131_072)), FirstMessage::Other);
        assert_eq!(classify(header(10_001, 196_608)), FirstMessage::Other);
        assert_eq!(classify(*b"GET / HT"), FirstMessage::Other);
        assert_eq!(
            classify(*b"\x16\x03\x01\x02\x00\x01\x00\x01"),
            FirstMessage::Other
        );
        assert_eq!(classify(header(8, SSL_REQUEST + 7)), FirstMessage::Other);
    }

    #[test]
    fn error_response_layout() {
        let e = error_response(SqlState::CannotConnect, "pgtunnel: no\0pe");
        let body = b"SFATAL\0VFATAL\0C08001\0Mpgtunnel: nope\0\0";
        assert_eq!(e[0], b'E');
        assert_eq!(
            u32::from_be_bytes([e[1], e[2], e[3], e[4]]) as usize,
            body.len() + 4
        );
        assert_eq!(&e[5..], body);
    }

    #[tokio::test]
    async fn answers_ssl_then_startup_and_ignores_others() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let serve =
            tokio::spawn(
                async move { answer(&mut server, SqlState::ConnectionFailure, "down").await },
            );
        // libpq's order with gssencmode=prefer: GSS first, then SSL, each declined.
        for request in [GSSENC_REQUEST, SSL_REQUEST] {
            client.write_all(&header(8, request)).await.unwrap();
            let mut n = [0u8; 1];
            client.read_exact(&mut n).await.unwrap();
            assert_eq!(&n, b"N");
        }
        let mut startup = header(23, 196_608).to_vec();
        startup.extend(b"user\0joe\0\0\0\0\0\0\0");
        client.write_all(&startup[..23]).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, error_response(SqlState::ConnectionFailure, "down"));
        drop(client);
        assert_eq!(serve.await.unwrap(), Answered::Told);

        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve =
            tokio::spawn(async move { answer(&mut server, SqlState::CannotConnect, "x").await });
        client.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        assert_eq!(serve.await.unwrap(), Answered::NotPostgres);
    }
}
