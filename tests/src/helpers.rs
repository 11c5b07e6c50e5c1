//! zero2prod-style helpers: one call gives a test a running emulator, and the paths of the
//! binaries under test.

use crate::bridge::{BridgeConfig, MockBridge};
use std::path::PathBuf;

/// Starts an emulator with `users` users and otherwise default settings.
pub async fn spawn_bridge(users: usize) -> MockBridge {
    MockBridge::start(BridgeConfig {
        users,
        ..BridgeConfig::default()
    })
    .await
}

pub async fn spawn_bridge_with(f: impl FnOnce(&mut BridgeConfig)) -> MockBridge {
    let mut cfg = BridgeConfig::default();
    f(&mut cfg);
    MockBridge::start(cfg).await
}

/// The `opsync` binary built by this workspace (integration tests of the `tests` crate are
/// built after the workspace's binaries only when asked; `cargo build --workspace` first).
pub fn opsync_bin() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("opsync");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (make test does)",
        bin.display()
    );
    bin
}
