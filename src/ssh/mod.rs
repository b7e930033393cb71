//! One SSH session per hop, each over the previous hop's `direct-tcpip` channel.
//!
//! - [`session`]: connecting a hop over any stream (TCP, `ProxyCommand`, a nested channel),
//!   the host key check, and the chain of sessions.
//! - `auth`: the authentication methods, in OpenSSH's order.
//! - [`prompt`]: questions for the user (passphrases, passwords, host keys), answered by
//!   whatever the caller plugs in (the binary's terminal, `SSH_ASKPASS`, a test).

mod auth;
pub mod prompt;
pub mod session;
