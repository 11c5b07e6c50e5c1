//! opsync's library: everything but the wiring.
//!
//! The crate is split the way the data flows. `scim` is the generic RFC 7644 client
//! (read-only by construction), `onepassword` holds what is specific to the 1Password SCIM
//! Bridge, `verify` is the "Continue" step of Viio's setup page. Pure decisions (paging,
//! parsing, classification) live in modules that do no I/O so they can be tested exhaustively;
//! the HTTP transport is the only edge in this part of the crate.

pub mod broker;
pub mod crypto;
pub mod directory;
pub mod dlq;
pub mod error;
pub mod events;
pub mod insight;
pub mod job;
pub mod metrics;
pub mod onepassword;
pub mod outbox;
pub mod report;
pub mod scim;
pub mod secret;
pub mod store;
pub mod sync;
pub mod tracecontext;
pub mod verify;
pub mod worker;

pub use error::{ErrorClass, ScimError};
pub use secret::BearerToken;
