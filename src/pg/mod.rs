//! PostgreSQL protocol bits that the product uses.
//!
//! - [`wire`]: just enough of the frontend/backend protocol to check a server through a
//!   tunnel: `SSLRequest`, startup, a simple query, `ErrorResponse`.
//! - [`refuse`]: turning a PostgreSQL client away in its protocol, with the reason.

pub mod client;
pub mod refuse;
pub mod wire;
