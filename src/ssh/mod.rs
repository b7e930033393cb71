//! One SSH session per hop, each over the previous hop's `direct-tcpip` channel.
//!
//! The flow of one hop, in the order it happens:
//!
//! - `transport`: how the hop's byte stream is obtained (TCP, `ProxyCommand`, or a
//!   `direct-tcpip` channel of the previous hop's session).
//! - `diagnose`: what the server sent first, recorded from that stream, turned into what went
//!   wrong when the handshake fails or stalls (not SSH, closed in the key exchange, silent,
//!   an endless line, an enormous banner).
//! - `host_key`: the host key check (known_hosts x StrictHostKeyChecking x BatchMode x
//!   whether anyone can be asked), a pure decision with the I/O around it.
//! - `algorithms`: the configured algorithm lists as russh's preferences (what russh
//!   lacks dropped, OpenSSH's order kept).
//! - `auth`: the authentication methods, as a table in OpenSSH's order.
//! - [`prompt`]: questions for the user (passphrases, passwords, host keys), answered by
//!   whatever the caller plugs in (the binary's terminal, `SSH_ASKPASS`, a test).
//! - [`session`]: one hop's session from those parts, and the chain of sessions.
//! - `pool`: sessions shared between chains ([`session::HopPool`]): a hop already up for
//!   one tunnel is not logged in to again for another.

mod algorithms;
mod auth;
mod diagnose;
mod hop_tcp;
mod host_key;
pub(crate) mod pool;
pub mod prompt;
pub mod session;
mod stage;
mod transport;
mod window;

pub use algorithms::aes_in_hardware;
