//! A generic, read-only SCIM 2.0 client (RFC 7643/7644).
//!
//! Nothing here knows about 1Password: see [`crate::onepassword`] for that. The public API can
//! only issue GET requests (there is no method that takes a verb), so opsync cannot change a
//! customer's directory even by mistake.

pub mod client;
pub mod model;
pub mod net;
pub mod paging;
pub mod retry;

pub use client::{ClientConfig, ClientStats, ScimClient};
pub use model::ScimUser;
pub use net::AddressPolicy;
pub use paging::{Doubt, PagingLimits, Snapshot};
pub use retry::RetryPolicy;
