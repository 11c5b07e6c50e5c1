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

/// A client configuration for tests: the emulator is on loopback over http, and retries are
/// fast so that failure tests take milliseconds, not minutes.
pub fn test_client_config() -> opsync_shared::scim::ClientConfig {
    use opsync_shared::scim::{AddressPolicy, ClientConfig, RetryPolicy};
    use std::time::Duration;
    ClientConfig {
        allow_http: true,
        address_policy: AddressPolicy {
            allow_private: true,
        },
        rate_limit_per_sec: 0.0,
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            deadline: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    }
}

/// A client for `bridge` with its current token and the test configuration.
pub fn client_for(bridge: &MockBridge) -> opsync_shared::scim::ScimClient {
    client_with(bridge, test_client_config())
}

pub fn client_with(
    bridge: &MockBridge,
    cfg: opsync_shared::scim::ClientConfig,
) -> opsync_shared::scim::ScimClient {
    let token = opsync_shared::BearerToken::new(bridge.token()).unwrap();
    opsync_shared::scim::ScimClient::new(&bridge.url(), token, cfg).unwrap()
}

/// A TCP port free right now on loopback (for a worker's probe and metrics server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
