//! From a request and the user's configuration to a plan, before any connection is made.
//!
//! Everything here is pure: it takes parsed input ([`crate::spec`], [`crate::config`]) and
//! returns values, so it is unit-tested without a network.
//!
//! - [`chain`]: the hops from `--via` and `ProxyJump`, expanded recursively, loops refused.
//! - [`path`]: the segment report: which links are encrypted, how strongly, what to do.
//! - [`names`]: the config's aliases, for messages about a name that is none of them.
//! - [`explain`]: `pgtunnel explain`: every hop's settings with the file and line they came from.

pub mod chain;
pub mod explain;
pub mod names;
pub mod path;
