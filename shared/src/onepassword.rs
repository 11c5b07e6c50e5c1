//! Everything that is specific to the 1Password SCIM Bridge, in one place.
//!
//! What is known and unknown about the bridge is in `../shared/reference/1password-scim-bridge.md`.
//! Where behaviour is unknown, the code here accepts every plausible variant:
//! - the SCIM base may be the URL as given, `/scim`, `/scim/v2` or `/v2`: we probe in that
//!   order and remember what answered;
//! - a bridge set up with Google Workspace keeps `/ping` and `/health` alive but does not
//!   serve SCIM, answering 404, 403, 501 or some error body: "alive but no SCIM" is
//!   recognised and reported as such, with the fix;
//! - a rejected token may come back as 401 or 403, with a SCIM error, plain text or nothing.

use crate::error::{ScimError, one_line};
use crate::scim::client::{ScimClient, join};
use crate::scim::model;
use serde::{Deserialize, Serialize};
use url::Url;

/// Paths probed under the customer's URL, in order.
pub const BASE_CANDIDATES: &[&str] = &["", "scim", "scim/v2", "v2"];

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// The SCIM base to store and reuse.
    pub base: Url,
    /// The part probed under the given URL: "" (as given), "/scim", "/scim/v2" or "/v2".
    pub base_path: String,
    /// `totalResults` of the probe, a cheap first count.
    pub total_results: Option<u64>,
}

/// The bridge's own report of itself, from `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BridgeHealth {
    pub version: Option<String>,
    pub build: Option<String>,
    /// Components not reporting "healthy", as "source: state".
    pub unhealthy: Vec<String>,
}

/// The URL the bridge's non-SCIM endpoints hang off: the given URL without a SCIM suffix.
pub fn bridge_root(given: &Url) -> Url {
    let mut url = given.clone();
    let mut path = given.path().trim_end_matches('/').to_owned();
    for suffix in ["/scim/v2", "/scim", "/v2"] {
        if let Some(p) = path.strip_suffix(suffix) {
            path = p.to_owned();
            break;
        }
    }
    url.set_path(if path.is_empty() { "/" } else { &path });
    url
}

/// Candidate SCIM bases under the given URL, without repeats.
pub fn candidates(given: &Url) -> Vec<(String, Url)> {
    let mut out: Vec<(String, Url)> = Vec::new();
    for c in BASE_CANDIDATES {
        let segs: Vec<&str> = c.split('/').filter(|s| !s.is_empty()).collect();
        let url = join(given, &segs);
        if !out.iter().any(|(_, u)| u == &url) {
            let label = if c.is_empty() {
                String::new()
            } else {
                format!("/{c}")
            };
            out.push((label, url));
        }
    }
    out
}

/// What one candidate answered.
#[derive(Debug)]
enum Probe {
    Auth(u16),
    Redirect(String),
    Missing(String),
}

/// Finds the SCIM base, or says precisely why there is none.
pub async fn discover(client: &ScimClient) -> Result<Discovery, ScimError> {
    let given = client.root().clone();
    let mut probes = Vec::new();
    for (label, base) in candidates(&given) {
        let mut url = join(&base, &["Users"]);
        url.query_pairs_mut()
            .append_pair("startIndex", "1")
            .append_pair("count", "1");
        // Transport errors (unreachable, TLS, timeout, blocked address) are the same for
        // every path on this host: report them at once.
        let f = client.get(&url, true).await?;
        let status = f.status.as_u16();
        match status {
            200..=299 => match model::parse_list_page(&f.body) {
                Ok(page) => {
                    tracing::info!(base_path = %label, "found the SCIM base");
                    return Ok(Discovery {
                        base,
                        base_path: label,
                        total_results: page.total_results,
                    });
                }
                Err(e) => probes.push(Probe::Missing(format!(
                    "{label}/Users answered {status} but {e}"
                ))),
            },
            401 | 403 => probes.push(Probe::Auth(status)),
            300..=399 => probes.push(Probe::Redirect(f.location())),
            _ => probes.push(Probe::Missing(format!("{label}/Users answered {status}"))),
        }
    }
    tracing::debug!(?probes, "no SCIM base answered");
    let root = bridge_root(&given);
    let health = health(client).await;
    if let Some(status) = probes.iter().find_map(|p| match p {
        Probe::Auth(s) => Some(*s),
        _ => None,
    }) {
        // The SCIM paths refused our token. If /health accepts the same token, the token is
        // good and it is the SCIM API that is refused: Google Workspace mode.
        return Err(match health {
            Ok(Some(_)) => ScimError::ScimApiDisabled {
                url: root.to_string(),
            },
            _ => ScimError::AuthRejected { status },
        });
    }
    let alive = matches!(health, Ok(Some(_))) || ping(client).await;
    if alive {
        return Err(ScimError::ScimApiDisabled {
            url: root.to_string(),
        });
    }
    if let Some(location) = probes.iter().find_map(|p| match p {
        Probe::Redirect(l) => Some(l.clone()),
        _ => None,
    }) {
        return Err(ScimError::Redirected {
            url: given.to_string(),
            location,
        });
    }
    let detail = probes
        .iter()
        .filter_map(|p| match p {
            Probe::Missing(m) => Some(m.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(ScimError::NotAScimBridge {
        url: given.to_string(),
        detail: one_line(&detail, 300),
    })
}

/// `GET /ping`: the bridge's unauthenticated liveness check.
pub async fn ping(client: &ScimClient) -> bool {
    let url = join(&bridge_root(client.root()), &["ping"]);
    matches!(client.get(&url, false).await, Ok(f) if f.status.is_success())
}

/// `GET /health` with the token: `Ok(None)` when the bridge has no such endpoint or does not
/// answer it with JSON, an auth error when the token is refused.
pub async fn health(client: &ScimClient) -> Result<Option<BridgeHealth>, ScimError> {
    let url = join(&bridge_root(client.root()), &["health"]);
    let f = client.get(&url, true).await?;
    match f.status.as_u16() {
        200..=299 => Ok(parse_health(&f.body)),
        401 | 403 => Err(ScimError::AuthRejected {
            status: f.status.as_u16(),
        }),
        _ => Ok(None),
    }
}

/// Reads a `/health` body:
/// `{"build":"...","version":"2.9.16","reports":[{"source":"SCIMServer","state":"healthy"}]}`.
pub fn parse_health(body: &[u8]) -> Option<BridgeHealth> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let s = |k: &str| obj.get(k).and_then(|x| x.as_str()).map(|x| one_line(x, 64));
    let unhealthy = obj
        .get("reports")
        .and_then(|r| r.as_array())
        .map(|reports| {
            reports
                .iter()
                .filter_map(|r| {
                    let source = r.get("source")?.as_str()?;
                    let state = r.get("state")?.as_str()?;
                    (state != "healthy").then(|| one_line(&format!("{source}: {state}"), 80))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(BridgeHealth {
        version: s("version"),
        build: s("build"),
        unhealthy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_bases() {
        let u = Url::parse("https://scim.example.com/").unwrap();
        let c: Vec<String> = candidates(&u)
            .into_iter()
            .map(|(_, u)| u.to_string())
            .collect();
        assert_eq!(
            c,
            [
                "https://scim.example.com/",
                "https://scim.example.com/scim",
                "https://scim.example.com/scim/v2",
                "https://scim.example.com/v2"
            ]
        );
        let u = Url::parse("https://h/proxy/scim").unwrap();
        assert_eq!(candidates(&u)[0].1.as_str(), "https://h/proxy/scim");
        assert_eq!(candidates(&u)[2].1.as_str(), "https://h/proxy/scim/scim/v2");
    }

    #[test]
    fn bridge_root_strips_scim_suffixes() {
        for (given, root) in [
            ("https://h/", "https://h/"),
            ("https://h/scim/v2", "https://h/"),
            ("https://h/scim", "https://h/"),
            ("https://h/p/v2", "https://h/p"),
            ("https://h/p", "https://h/p"),
        ] {
            assert_eq!(
                bridge_root(&Url::parse(given).unwrap()).as_str(),
                root,
                "{given}"
            );
        }
    }

    #[test]
    fn health_bodies() {
        let h = parse_health(br#"{"build":"209161","version":"2.9.16","reports":[{"source":"SCIMServer","state":"healthy"},{"source":"Redis","state":"unhealthy"}],"retrievedAt":"x"}"#).unwrap();
        assert_eq!(h.version.as_deref(), Some("2.9.16"));
        assert_eq!(h.unhealthy, vec!["Redis: unhealthy".to_string()]);
        assert!(parse_health(b"ok").is_none());
        assert_eq!(parse_health(b"{}").unwrap().version, None);
    }
}
