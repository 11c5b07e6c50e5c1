//! Typed errors of the SCIM side, each with a stable `kind` and a class.
//!
//! The `kind` strings are a contract: they appear in logs, metrics labels, the database and
//! dead-letter headers, and operators grep for them. Never rename one; add a new one instead.
//! The class decides what the machinery does: a transient error is retried (with backoff in
//! the client, with delays at job level), a permanent one is reported at once because trying
//! again cannot help until a person changes something.
//!
//! Every message is one sentence that says what happened and what to do. None of them may
//! carry the bearer token: the token never reaches this module (URLs are redacted of
//! user-info, and the token only ever travels in a header).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// May succeed if tried again later, with no change on anyone's side.
    Transient,
    /// Needs a person to change something (token, URL, bridge configuration, our settings).
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScimError {
    #[error(
        "the bridge rejected the bearer token (HTTP {status}); if it was regenerated in 1Password, update the integration's token"
    )]
    AuthRejected { status: u16 },

    #[error(
        "the SCIM bridge at {url} is running but does not serve the SCIM API, which is what a bridge configured with Google Workspace does; connect this bridge to another identity provider (Microsoft Entra ID, Okta, OneLogin, JumpCloud or Rippling) to use it with Viio"
    )]
    ScimApiDisabled { url: String },

    #[error(
        "{url} does not look like a 1Password SCIM bridge ({detail}); check the URL you were given for the bridge, e.g. https://scim.example.com"
    )]
    NotAScimBridge { url: String, detail: String },

    #[error(
        "cannot reach the bridge at {url} ({detail}); check that the bridge is running and that the URL and its DNS name are right"
    )]
    BridgeUnreachable { url: String, detail: String },

    #[error(
        "the TLS connection to {url} failed ({detail}); the bridge needs a valid certificate, or give its private CA with --ca-file"
    )]
    Tls { url: String, detail: String },

    #[error(
        "the bridge at {url} did not answer within {after:?}; it may be overloaded, try again later or raise the timeout"
    )]
    Timeout { url: String, after: Duration },

    #[error(
        "the bridge answered HTTP {status} ({detail}); it is failing or provisioning is switched off in 1Password, retry later and check the bridge's status page"
    )]
    ServerError { status: u16, detail: String },

    #[error(
        "the bridge kept asking us to slow down (HTTP 429) past our retry deadline; the next sync will try again, lower the request rate if it persists"
    )]
    RateLimited { retry_after: Option<Duration> },

    #[error(
        "the bridge's answer broke the SCIM protocol ({detail}); check that the URL points at a 1Password SCIM bridge and report this if it persists"
    )]
    Protocol { detail: String },

    #[error(
        "an answer from the bridge was larger than the {limit} bytes we accept; lower the page size or raise the response size limit"
    )]
    ResponseTooLarge { limit: u64 },

    #[error(
        "{host} points to {addr}, a loopback, private, link-local or otherwise internal address, which we refuse to call; give the bridge's public address"
    )]
    AddressBlocked { host: String, addr: String },

    #[error(
        "{url} is plain http, which would send the bearer token unencrypted; use the bridge's https:// URL"
    )]
    InsecureUrl { url: String },

    #[error("{url} is not a usable bridge URL ({reason}); give it as https://host[:port][/path]")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "the bridge redirected {url} to {location}, and we do not follow redirects (they could carry the token elsewhere); give the final URL instead"
    )]
    Redirected { url: String, location: String },

    #[error(
        "the bridge refused the request with HTTP {status} ({detail}); check the bridge URL and that this bridge version supports SCIM user listing"
    )]
    ClientError { status: u16, detail: String },
}

impl ScimError {
    /// The stable machine-readable name of this error.
    pub fn kind(&self) -> &'static str {
        match self {
            ScimError::AuthRejected { .. } => "auth_rejected",
            ScimError::ScimApiDisabled { .. } => "scim_api_disabled",
            ScimError::NotAScimBridge { .. } => "not_a_scim_bridge",
            ScimError::BridgeUnreachable { .. } => "bridge_unreachable",
            ScimError::Tls { .. } => "tls_error",
            ScimError::Timeout { .. } => "timeout",
            ScimError::ServerError { .. } => "server_error",
            ScimError::RateLimited { .. } => "rate_limited",
            ScimError::Protocol { .. } => "protocol_error",
            ScimError::ResponseTooLarge { .. } => "response_too_large",
            ScimError::AddressBlocked { .. } => "address_blocked",
            ScimError::InsecureUrl { .. } => "insecure_url",
            ScimError::InvalidUrl { .. } => "invalid_url",
            ScimError::Redirected { .. } => "redirected",
            ScimError::ClientError { .. } => "client_error",
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ScimError::BridgeUnreachable { .. }
            | ScimError::Timeout { .. }
            | ScimError::ServerError { .. }
            | ScimError::RateLimited { .. } => ErrorClass::Transient,
            // A 408 is the server timing us out: the same as our own timeout.
            ScimError::ClientError { status: 408, .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Every kind this module can produce, for documentation and tests.
    pub const KINDS: &'static [&'static str] = &[
        "auth_rejected",
        "scim_api_disabled",
        "not_a_scim_bridge",
        "bridge_unreachable",
        "tls_error",
        "timeout",
        "server_error",
        "rate_limited",
        "protocol_error",
        "response_too_large",
        "address_blocked",
        "insecure_url",
        "invalid_url",
        "redirected",
        "client_error",
    ];
}

/// Cuts an error detail taken from the network (a response body, an OS error) to one short
/// line, so that a hostile or verbose server cannot flood logs and database columns.
pub fn one_line(detail: &str, max: usize) -> String {
    let mut out = String::with_capacity(detail.len().min(max));
    for c in detail.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_sentence_with_advice() {
        let samples = vec![
            ScimError::AuthRejected { status: 401 },
            ScimError::ScimApiDisabled {
                url: "https://b".into(),
            },
            ScimError::NotAScimBridge {
                url: "https://b".into(),
                detail: "d".into(),
            },
            ScimError::BridgeUnreachable {
                url: "https://b".into(),
                detail: "d".into(),
            },
            ScimError::Tls {
                url: "https://b".into(),
                detail: "d".into(),
            },
            ScimError::Timeout {
                url: "https://b".into(),
                after: Duration::from_secs(3),
            },
            ScimError::ServerError {
                status: 500,
                detail: "d".into(),
            },
            ScimError::RateLimited { retry_after: None },
            ScimError::Protocol { detail: "d".into() },
            ScimError::ResponseTooLarge { limit: 1 },
            ScimError::AddressBlocked {
                host: "h".into(),
                addr: "127.0.0.1".into(),
            },
            ScimError::InsecureUrl {
                url: "http://b".into(),
            },
            ScimError::InvalidUrl {
                url: "x".into(),
                reason: "r".into(),
            },
            ScimError::Redirected {
                url: "https://b".into(),
                location: "https://c".into(),
            },
            ScimError::ClientError {
                status: 400,
                detail: "d".into(),
            },
        ];
        let mut kinds: Vec<_> = samples.iter().map(|e| e.kind()).collect();
        for e in &samples {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains(';'), "no advice in: {msg}");
        }
        kinds.sort();
        let mut all = ScimError::KINDS.to_vec();
        all.sort();
        assert_eq!(kinds, all);
    }

    #[test]
    fn transient_kinds() {
        assert!(
            ScimError::ServerError {
                status: 503,
                detail: String::new()
            }
            .is_transient()
        );
        assert!(
            ScimError::ClientError {
                status: 408,
                detail: String::new()
            }
            .is_transient()
        );
        assert!(
            !ScimError::ClientError {
                status: 400,
                detail: String::new()
            }
            .is_transient()
        );
        assert!(!ScimError::AuthRejected { status: 401 }.is_transient());
    }

    #[test]
    fn one_line_strips_control_characters_and_bounds_length() {
        assert_eq!(one_line("a\nb\r\n  c", 100), "a b c");
        assert!(one_line(&"x".repeat(1000), 10).chars().count() <= 12);
    }
}
