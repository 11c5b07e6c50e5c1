//! Test support for opsync: the 1Password SCIM Bridge emulator and `spawn_app`-style helpers.
//!
//! The emulator is the only thing we mock. Postgres and RabbitMQ are always the real services.

pub mod app;
pub mod bridge;
pub mod env;
pub mod helpers;
pub mod proxy;
pub mod users;

pub use bridge::{BridgeConfig, Fault, FaultRule, MockBridge, Mode, RecordedRequest};
