//! PostgreSQL protocol bits that the product uses.
//!
//! - [`wire`]: just enough of the frontend/backend protocol to check a server through a
//!   tunnel: `SSLRequest`, startup, a simple query, `ErrorResponse`.

pub mod wire;
