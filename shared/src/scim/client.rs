//! The HTTP edge of the SCIM client: one bridge, GET only, polite and defensive.
//!
//! Politeness toward a bridge that is one small container: one request in flight at a time
//! (a mutex around send + read), a request rate limit (governor, GCRA), `Retry-After`
//! honoured, exponential backoff with jitter under a total deadline, and no retry at all for
//! errors that repeating cannot fix.
//!
//! Defence toward us: connect and request timeouts, a response-size cap enforced while
//! streaming (a `Content-Length` is not trusted), TLS verification that cannot be turned off,
//! `http://` refused unless allowed, internal addresses refused after DNS (see [`super::net`]),
//! redirects never followed (reqwest would drop the token on a cross-host redirect, but a
//! same-host redirect could still lead the token somewhere we did not choose).

use super::model::{self, ScimUser};
use super::net::{self, AddressPolicy, BlockedAddress, FilteringResolver};
use super::paging::{Pager, PagingError, PagingLimits, Snapshot};
use super::retry::{self, RetryPolicy};
use crate::error::{ScimError, one_line};
use crate::secret::BearerToken;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;
use url::Url;

/// How error bodies are read: enough for a message, never enough to hurt.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// For one whole request, body included.
    pub request_timeout: Duration,
    pub max_response_bytes: u64,
    pub paging: PagingLimits,
    /// Requests per second to one bridge; 0 turns the limit off (benchmarks only).
    pub rate_limit_per_sec: f64,
    pub retry: RetryPolicy,
    pub allow_http: bool,
    pub address_policy: AddressPolicy,
    /// PEM certificates trusted in addition to the system's roots (a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 32 * 1024 * 1024,
            paging: PagingLimits::default(),
            rate_limit_per_sec: 10.0,
            retry: RetryPolicy::default(),
            allow_http: false,
            address_policy: AddressPolicy::default(),
            extra_ca_pem: None,
        }
    }
}

/// Counters a caller can read after a run (and that metrics export).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limit_waits: AtomicU64,
    /// Waits imposed by the server's `Retry-After`, and their total in milliseconds.
    pub retry_after_waits: AtomicU64,
    pub retry_after_waited_ms: AtomicU64,
}

impl ClientStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A response as read: status, headers and a bounded body.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|s| one_line(s, 300))
            .unwrap_or_else(|| "an unnamed location".into())
    }
}

pub struct ScimClient {
    http: reqwest::Client,
    /// The URL the customer gave, user-info removed.
    root: Url,
    /// The SCIM base in use (discovered or stored); the root until discovery sets it.
    base: Url,
    token: BearerToken,
    cfg: ClientConfig,
    limiter: Option<DefaultDirectRateLimiter>,
    in_flight: tokio::sync::Mutex<()>,
    stats: Arc<ClientStats>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimClient")
            .field("root", &self.root.as_str())
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Checks and normalises a bridge URL as a customer typed it.
pub fn parse_bridge_url(raw: &str, cfg: &ClientConfig) -> Result<Url, ScimError> {
    let shown = one_line(raw, 200);
    let mut url = Url::parse(raw.trim()).map_err(|e| ScimError::InvalidUrl {
        url: redact_userinfo(&shown),
        reason: e.to_string(),
    })?;
    // Credentials in the URL would end up in logs and error messages; we never need them.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        "http" => {
            return Err(ScimError::InsecureUrl {
                url: url.to_string(),
            });
        }
        other => {
            return Err(ScimError::InvalidUrl {
                url: url.to_string(),
                reason: format!("scheme {other} is not https"),
            });
        }
    }
    let host = url.host().ok_or_else(|| ScimError::InvalidUrl {
        url: url.to_string(),
        reason: "no host".into(),
    })?;
    net::check_literal_host(&host, cfg.address_policy).map_err(blocked)?;
    // A path given with a trailing slash or a trailing /Users means the same base.
    let path = url.path().trim_end_matches('/').to_owned();
    let path = path
        .strip_suffix("/Users")
        .map(str::to_owned)
        .unwrap_or(path);
    url.set_path(if path.is_empty() { "/" } else { &path });
    Ok(url)
}

fn redact_userinfo(s: &str) -> String {
    match (s.find("://"), s.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}[redacted]{}", &s[..scheme_end + 3], &s[at..])
        }
        _ => s.to_owned(),
    }
}

fn blocked(b: BlockedAddress) -> ScimError {
    ScimError::AddressBlocked {
        host: b.host,
        addr: b.addr,
    }
}

/// `base` + one path segment each, keeping the base's own path.
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    url
}

/// The path of a URL for logs: never the query, never the host's credentials.
fn log_path(url: &Url) -> &str {
    url.path()
}

impl ScimClient {
    /// A client for the bridge at `bridge_url`, not yet talking to it.
    pub fn new(bridge_url: &str, token: BearerToken, cfg: ClientConfig) -> Result<Self, ScimError> {
        let root = parse_bridge_url(bridge_url, &cfg)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "opsync/",
                env!("CARGO_PKG_VERSION"),
                " (Viio 1Password connector; read-only)"
            ))
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!cfg.allow_http)
            .dns_resolver(FilteringResolver::new(cfg.address_policy));
        if let Some(pem) = &cfg.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ScimError::Tls {
                url: root.to_string(),
                detail: format!("the extra CA file is not valid PEM: {e}"),
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| ScimError::Tls {
            url: root.to_string(),
            detail: one_line(&e.to_string(), 200),
        })?;
        let limiter = (cfg.rate_limit_per_sec > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / cfg.rate_limit_per_sec))
            .and_then(Quota::with_period)
            .map(RateLimiter::direct);
        Ok(Self {
            http,
            base: root.clone(),
            root,
            token,
            cfg,
            limiter,
            in_flight: tokio::sync::Mutex::new(()),
            stats: Arc::new(ClientStats::default()),
            metrics: None,
        })
    }

    /// The URL the customer gave, normalised.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The SCIM base requests go to.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Uses a SCIM base found earlier (by discovery, stored with the integration).
    pub fn set_base(&mut self, base: Url) {
        self.base = base;
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn stats(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// Reports request latencies, retries and rate-limit waits to Prometheus metrics too.
    pub fn set_metrics(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        self.metrics = Some(metrics);
    }

    /// GET with retries of transient failures. Returns any HTTP status that is not worth
    /// retrying (2xx, 3xx, most 4xx) for the caller to interpret; retryable statuses that
    /// outlast the retry budget come back as errors.
    pub(crate) async fn get(&self, url: &Url, authenticated: bool) -> Result<Fetched, ScimError> {
        let started = Instant::now();
        let mut backoff = self.cfg.retry.backoff();
        let mut attempt: u32 = 0;
        // The page of a listing, for the request's span ("" for other requests).
        let page = url
            .query_pairs()
            .find(|(k, _)| k == "startIndex")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        loop {
            let span = tracing::debug_span!(
                "bridge_request",
                path = log_path(url),
                start_index = page.as_str(),
                attempt,
                status = tracing::field::Empty,
                duration_ms = tracing::field::Empty
            );
            let result = self
                .get_once(url, authenticated)
                .instrument(span.clone())
                .await;
            let (err, server_wait) = match result {
                Ok(f) if !retry::is_retryable_status(f.status.as_u16()) => return Ok(f),
                Ok(f) => {
                    let wait = match f.status.as_u16() {
                        429 | 503 => f
                            .headers
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| {
                                retry::parse_retry_after(
                                    v,
                                    SystemTime::now(),
                                    self.cfg.retry.max_retry_after,
                                )
                            }),
                        _ => None,
                    };
                    (status_failure(&f), wait)
                }
                Err(e) if e.is_transient() => (e, None),
                Err(e) => return Err(e),
            };
            let Some(backoff_delay) = backoff.next() else {
                return Err(err);
            };
            let delay = server_wait.unwrap_or(backoff_delay);
            if started.elapsed() + delay > self.cfg.retry.deadline {
                return Err(err);
            }
            attempt += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.retries.inc();
            }
            if let Some(w) = server_wait {
                self.stats.retry_after_waits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .retry_after_waited_ms
                    .fetch_add(w.as_millis() as u64, Ordering::Relaxed);
            }
            tracing::info!(
                path = log_path(url),
                attempt,
                error.kind = err.kind(),
                delay_ms = delay.as_millis() as u64,
                retry_after = server_wait.is_some(),
                "bridge request failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn get_once(&self, url: &Url, authenticated: bool) -> Result<Fetched, ScimError> {
        // One request in flight per bridge: held across send and body read, so a slow page
        // is never overlapped by the next.
        let _slot = self.in_flight.lock().await;
        if let Some(limiter) = &self.limiter
            && limiter.check().is_err()
        {
            self.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.rate_limit_waits.inc();
            }
            limiter.until_ready().await;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut req = self.http.get(url.clone()).header(
            reqwest::header::ACCEPT,
            "application/scim+json, application/json;q=0.9",
        );
        if authenticated {
            // bearer_auth marks the header sensitive, so the HTTP stack never logs it.
            req = req.bearer_auth(self.token.expose());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(None, t0);
                return Err(self.transport_error(&e));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let limit = if status.is_success() {
            self.cfg.max_response_bytes
        } else {
            ERROR_BODY_LIMIT as u64
        };
        if status.is_success()
            && let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(ScimError::ResponseTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(&e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                if !status.is_success() {
                    // An error body is only read for its message; the start is enough.
                    body.extend_from_slice(&chunk[..limit as usize - body.len()]);
                    break;
                }
                return Err(ScimError::ResponseTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        self.observe(Some(status.as_u16()), t0);
        let span = tracing::Span::current();
        span.record("status", status.as_u16());
        span.record("duration_ms", t0.elapsed().as_millis() as u64);
        tracing::debug!(bytes = body.len(), "bridge response");
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }

    fn observe(&self, status: Option<u16>, since: Instant) {
        if let Some(m) = &self.metrics {
            m.bridge_request(status, since.elapsed());
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> ScimError {
        classify_transport(e, &self.root, self.cfg.request_timeout)
    }

    /// Lists every user as one snapshot (see [`super::paging`] for what "complete and
    /// consistent" means). `on_page` is told the running count after each page, for
    /// progress display.
    pub async fn list_users(
        &self,
        on_page: impl FnMut(u64, Option<u64>),
    ) -> Result<Snapshot, ScimError> {
        self.list_users_to(on_page, None).await
    }

    /// [`Self::list_users`], also sending a copy of each page's users to `pages` as it
    /// arrives (an initial sync writes them while the next page downloads). The channel is
    /// bounded, so a slow receiver slows the listing instead of piling pages up in memory.
    /// A receiver that is gone (its owner failed and reports its own error) ends the listing
    /// early: the snapshot returned then says it is incomplete.
    pub async fn list_users_to(
        &self,
        mut on_page: impl FnMut(u64, Option<u64>),
        pages: Option<&tokio::sync::mpsc::Sender<Vec<super::ScimUser>>>,
    ) -> Result<Snapshot, ScimError> {
        let users_url = join(&self.base, &["Users"]);
        let mut pager = Pager::new(self.cfg.paging);
        let mut seen = 0u64;
        while let Some(req) = pager.next_request().map_err(paging_error)? {
            let mut url = users_url.clone();
            url.query_pairs_mut()
                .append_pair("startIndex", &req.start_index.to_string())
                .append_pair("count", &req.count.to_string());
            let fetched = self.get(&url, true).await?;
            if !fetched.status.is_success() {
                return Err(status_failure_at(&fetched, &url));
            }
            let page = model::parse_list_page(&fetched.body).map_err(|e| ScimError::Protocol {
                detail: format!("page at startIndex {}: {e}", req.start_index),
            })?;
            seen += page.users.len() as u64;
            let receiver_gone = match pages {
                Some(p) if !page.users.is_empty() => p.send(page.users.clone()).await.is_err(),
                _ => false,
            };
            let total = page.total_results;
            pager.ingest(req, page).map_err(paging_error)?;
            on_page(seen, total);
            if receiver_gone {
                break;
            }
        }
        Ok(pager.finish())
    }

    /// One user by id: `None` when the bridge answers 404 (the user is gone).
    pub async fn get_user(&self, id: &str) -> Result<Option<ScimUser>, ScimError> {
        let url = join(&self.base, &["Users", id]);
        let fetched = self.get(&url, true).await?;
        if fetched.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !fetched.status.is_success() {
            return Err(status_failure_at(&fetched, &url));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&fetched.body).map_err(|e| ScimError::Protocol {
                detail: format!("user {id}: the body is not JSON: {e}"),
            })?;
        model::parse_user(&v)
            .map(Some)
            .ok_or_else(|| ScimError::Protocol {
                detail: format!("user {id}: the answer has no id"),
            })
    }
}

fn paging_error(e: PagingError) -> ScimError {
    ScimError::Protocol {
        detail: e.to_string(),
    }
}

/// The error for a retryable status, once retries are spent.
fn status_failure(f: &Fetched) -> ScimError {
    let status = f.status.as_u16();
    match status {
        429 => ScimError::RateLimited { retry_after: None },
        408 => ScimError::ClientError {
            status,
            detail: model::error_detail(&f.body),
        },
        _ => ScimError::ServerError {
            status,
            detail: model::error_detail(&f.body),
        },
    }
}

/// The error for a status the caller did not expect from `url`.
pub(crate) fn status_failure_at(f: &Fetched, url: &Url) -> ScimError {
    let status = f.status.as_u16();
    match status {
        401 | 403 => ScimError::AuthRejected { status },
        300..=399 => ScimError::Redirected {
            url: url.to_string(),
            location: f.location(),
        },
        _ if retry::is_retryable_status(status) => status_failure(f),
        _ => ScimError::ClientError {
            status,
            detail: model::error_detail(&f.body),
        },
    }
}

/// Turns a transport failure into the error a person can act on. The source chain is
/// searched for the causes we care about: our own address block, TLS, timeouts.
pub(crate) fn classify_transport(e: &reqwest::Error, url: &Url, timeout: Duration) -> ScimError {
    let shown = url.to_string();
    let chain = causes(e);
    for s in &chain {
        if let Some(b) = s.downcast_ref::<BlockedAddress>() {
            return ScimError::AddressBlocked {
                host: b.host.clone(),
                addr: b.addr.clone(),
            };
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return ScimError::Tls {
                url: shown,
                detail: one_line(&tls.to_string(), 200),
            };
        }
    }
    if e.is_timeout() {
        return ScimError::Timeout {
            url: shown,
            after: timeout,
        };
    }
    // The innermost cause is the informative one ("connection refused", "dns error ...").
    let detail = chain
        .last()
        .map(|s| one_line(&s.to_string(), 200))
        .unwrap_or_default();
    let detail = if e.is_body() || e.is_decode() {
        format!("the connection broke while reading the answer: {detail}")
    } else {
        detail
    };
    ScimError::BridgeUnreachable { url: shown, detail }
}

/// Every cause of an error, outermost first. `std::io::Error::source` skips the error it
/// wraps (it returns the wrapped error's source), and TLS failures arrive as an io::Error
/// inside an io::Error, so wrapped errors are unpacked by hand.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(cur) = next {
        out.push(cur);
        next = match cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cur.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow_http: bool, allow_private: bool) -> ClientConfig {
        ClientConfig {
            allow_http,
            address_policy: AddressPolicy { allow_private },
            ..ClientConfig::default()
        }
    }

    #[test]
    fn bridge_urls_are_checked_and_normalised() {
        let c = cfg(false, false);
        assert_eq!(
            parse_bridge_url("https://scim.example.com", &c)
                .unwrap()
                .as_str(),
            "https://scim.example.com/"
        );
        assert_eq!(
            parse_bridge_url(" https://scim.example.com/scim/v2/ ", &c)
                .unwrap()
                .as_str(),
            "https://scim.example.com/scim/v2"
        );
        assert_eq!(
            parse_bridge_url("https://scim.example.com/scim/Users?x=1#f", &c)
                .unwrap()
                .as_str(),
            "https://scim.example.com/scim"
        );
        let u = parse_bridge_url("https://user:hunter2@scim.example.com/", &c).unwrap();
        assert!(!u.as_str().contains("hunter2"));
        assert_eq!(
            parse_bridge_url("http://scim.example.com", &c)
                .unwrap_err()
                .kind(),
            "insecure_url"
        );
        assert!(parse_bridge_url("http://scim.example.com", &cfg(true, false)).is_ok());
        assert_eq!(
            parse_bridge_url("ftp://scim.example.com", &c)
                .unwrap_err()
                .kind(),
            "invalid_url"
        );
        assert_eq!(
            parse_bridge_url("scim.example.com", &c).unwrap_err().kind(),
            "invalid_url"
        );
        assert_eq!(
            parse_bridge_url("https://127.0.0.1:8443", &c)
                .unwrap_err()
                .kind(),
            "address_blocked"
        );
        assert_eq!(
            parse_bridge_url("https://169.254.169.254/", &c)
                .unwrap_err()
                .kind(),
            "address_blocked"
        );
        assert!(parse_bridge_url("https://127.0.0.1:8443", &cfg(false, true)).is_ok());
        let e = parse_bridge_url("not a url://user:pw@x", &c)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw@"), "{e}");
    }

    #[test]
    fn join_keeps_the_base_path() {
        let b = Url::parse("https://h/scim/v2").unwrap();
        assert_eq!(join(&b, &["Users"]).as_str(), "https://h/scim/v2/Users");
        let b = Url::parse("https://h/").unwrap();
        assert_eq!(
            join(&b, &["Users", "AB C"]).as_str(),
            "https://h/Users/AB%20C"
        );
    }
}
