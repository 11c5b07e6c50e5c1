//! Exit codes: a script can tell "fix the token" from "try again later" without parsing text.
//! Documented in `opsync --help` and README; never renumber one.

use opsync_shared::ScimError;

pub const OK: u8 = 0;
/// A bug or an environment problem opsync did not expect.
pub const INTERNAL: u8 = 1;
// 2 is clap's usage error.
/// The input is wrong: token source, URL, or a URL pointing at an internal address.
pub const BAD_INPUT: u8 = 3;
pub const AUTH_REJECTED: u8 = 4;
pub const SCIM_API_DISABLED: u8 = 5;
/// The URL answers, but not as a 1Password SCIM bridge.
pub const NOT_A_BRIDGE: u8 = 6;
/// The bridge cannot be reached: network, DNS, TLS, timeout.
pub const UNREACHABLE: u8 = 7;
/// The bridge is failing or overloaded (5xx, 429): try again later.
pub const BRIDGE_FAILING: u8 = 8;
/// The bridge answered something we cannot read.
pub const PROTOCOL: u8 = 9;

/// The database cannot be reached or failed.
pub const DATABASE: u8 = 10;
/// RabbitMQ cannot be reached or refused a message.
pub const BROKER: u8 = 11;
/// No such integration.
pub const NOT_FOUND: u8 = 12;
/// The database schema is older than this binary: run `opsync migrate`.
pub const SCHEMA_OUTDATED: u8 = 13;
/// The integration is disabled or waits for a person (new token, other identity provider).
pub const INACTIVE: u8 = 14;

pub const HELP: &str = "Exit codes:
  0  success
  1  internal error
  2  usage error
  3  bad input (token source, invalid_url, insecure_url, address_blocked)
  4  auth_rejected: the bearer token was refused
  5  scim_api_disabled: the bridge runs with Google Workspace
  6  not_a_scim_bridge, redirected, client_error
  7  bridge_unreachable, tls_error, timeout
  8  server_error, rate_limited (transient: try again later)
  9  protocol_error, response_too_large
 10  database_error, database_unavailable
 11  broker_error
 12  integration_not_found, member_not_found
 13  schema_outdated: run `opsync migrate`
 14  integration_inactive (disabled, needs_credentials, scim_disabled)";

pub fn for_sync(e: &opsync_shared::sync::SyncError) -> u8 {
    use opsync_shared::sync::SyncError;
    match e {
        SyncError::Scim(s) => for_scim(s),
        _ => for_kind(e.kind()),
    }
}

pub fn for_kind(kind: &str) -> u8 {
    match kind {
        "database_error" | "database_unavailable" | "migration_failed" => DATABASE,
        "broker_error" => BROKER,
        "integration_not_found" | "member_not_found" => NOT_FOUND,
        "schema_outdated" => SCHEMA_OUTDATED,
        "integration_inactive" => INACTIVE,
        "token_undecryptable" | "invalid_job" | "token_key" | "token_source" => BAD_INPUT,
        _ => INTERNAL,
    }
}

pub fn for_scim(e: &ScimError) -> u8 {
    match e.kind() {
        "invalid_url" | "insecure_url" | "address_blocked" => BAD_INPUT,
        "auth_rejected" => AUTH_REJECTED,
        "scim_api_disabled" => SCIM_API_DISABLED,
        "not_a_scim_bridge" | "redirected" | "client_error" => NOT_A_BRIDGE,
        "bridge_unreachable" | "tls_error" | "timeout" => UNREACHABLE,
        "server_error" | "rate_limited" => BRIDGE_FAILING,
        "protocol_error" | "response_too_large" => PROTOCOL,
        _ => INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_documented_code() {
        for kind in ScimError::KINDS {
            assert!(
                HELP.contains(kind),
                "{kind} missing from the exit code help"
            );
        }
    }
}
