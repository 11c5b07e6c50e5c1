//! `opsync verify`: the "Continue" step of Viio's setup page. Finds the SCIM base, reads the
//! bridge's version, lists every user once and says what it saw.

use crate::error::ScimError;
use crate::onepassword::{self, BridgeHealth};
use crate::scim::{ClientStats, Doubt, ScimClient};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub bridge_url: String,
    pub scim_base: String,
    pub base_path: String,
    pub version: Option<String>,
    pub unhealthy_components: Vec<String>,
    pub users_total: u64,
    pub users_active: u64,
    pub users_suspended: u64,
    pub total_results: Option<u64>,
    pub pages: u64,
    pub complete_and_consistent: bool,
    pub doubts: Vec<Doubt>,
    pub requests: u64,
    pub retries: u64,
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Runs the whole check. `on_page` reports progress (users so far, total if known).
pub async fn verify(
    client: &mut ScimClient,
    on_page: impl FnMut(u64, Option<u64>),
) -> Result<VerifyReport, ScimError> {
    let t0 = Instant::now();
    let discovery = onepassword::discover(client).await?;
    client.set_base(discovery.base.clone());
    // The version is nice to have: a bridge without /health is still a bridge.
    let health = match onepassword::health(client).await {
        Ok(h) => h.unwrap_or_default(),
        Err(e) if e.kind() == "auth_rejected" => return Err(e),
        Err(e) => {
            tracing::debug!(error.kind = e.kind(), "no health report");
            BridgeHealth::default()
        }
    };
    let snapshot = client.list_users(on_page).await?;
    let stats = client.stats();
    let active = snapshot.active_count();
    Ok(VerifyReport {
        bridge_url: client.root().to_string(),
        scim_base: discovery.base.to_string(),
        base_path: discovery.base_path,
        version: health.version,
        unhealthy_components: health.unhealthy,
        users_total: snapshot.users.len() as u64,
        users_active: active,
        users_suspended: snapshot.users.len() as u64 - active,
        total_results: snapshot.total_results,
        pages: snapshot.pages,
        complete_and_consistent: snapshot.is_complete_and_consistent(),
        doubts: snapshot.doubts,
        requests: ClientStats::get(&stats.requests),
        retries: ClientStats::get(&stats.retries),
        elapsed: t0.elapsed(),
    })
}
