//! A faithful stand-in for a 1Password SCIM Bridge 2.9, for tests, the demo and benchmarks.
//!
//! What it copies from the real bridge (see `../shared/reference/1password-scim-bridge.md`):
//! 1Password-shaped users, RFC 7644 offset paging with an optional page cap, bearer auth tied
//! to a token that can be regenerated (the old one stops at once), `/ping` without auth,
//! `/health` with a version, `ServiceProviderConfig`, `GET /Users/{id}`, `/` redirecting to
//! `/app`, and `Resources` omitted when there are no users. Where the real behaviour is
//! unknown (the SCIM base path, what Google Workspace mode answers), it is configurable so
//! tests can cover every variant.
//!
//! It records every request (method, path, query, time, status) so tests can assert that
//! opsync never sent anything but GET, and it takes faults, queued per request.

use crate::users::{self, EmuUser};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How the bridge is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Normal,
    /// Set up with Google Workspace: the SCIM API is not served (with this status), while
    /// `/ping` and `/health` answer.
    GoogleWorkspace {
        scim_status: u16,
    },
    /// Provisioning switched off in 1Password: SCIM requests get 500.
    ProvisioningOff,
}

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub users: usize,
    pub seed: u64,
    /// Where SCIM is served: "/scim/v2", "/scim", "/v2" or "" (the root).
    pub base_path: String,
    /// The most users one page returns, whatever `count` asks.
    pub page_cap: Option<usize>,
    pub token: String,
    pub version: String,
    pub mode: Mode,
    /// Status for a bad token: 401 (default) or 403.
    pub auth_status: u16,
    /// Body for a bad token: a SCIM Error (default), plain text, or nothing.
    pub auth_body: AuthBody,
    pub omit_items_per_page: bool,
    /// Answer `startIndex: 0` on the first page, as one 1Password endpoint was seen to.
    pub start_index_zero: bool,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthBody {
    Scim,
    Text,
    Empty,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            users: 25,
            seed: 1,
            base_path: "/scim/v2".into(),
            page_cap: None,
            token: "mock-bridge-token-7f3a9c".into(),
            version: "2.9.16".into(),
            mode: Mode::Normal,
            auth_status: 401,
            auth_body: AuthBody::Scim,
            omit_items_per_page: false,
            start_index_zero: false,
            addr: "127.0.0.1:0".parse().unwrap(),
        }
    }
}

/// What to do to a request instead of (or before) answering it normally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status (and `Retry-After`, and body) instead.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        location: Option<String>,
    },
    /// Wait, then answer normally.
    Delay { ms: u64 },
    /// Send half of the normal body, then break the connection.
    Truncate,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Answer 200 with a body of this many bytes, streamed without a length.
    Oversize { bytes: usize },
    /// Break the connection before any body byte.
    Drop,
    /// Add users at the front and remove users from the front, then answer normally: the
    /// directory changes between two pages of one listing pass.
    Drift { add: usize, remove: usize },
    /// Serve this page one user early: the user before `startIndex` comes again, and the
    /// last one of the page is pushed to the next.
    RepeatPrevious,
}

/// A fault for the requests whose path contains `path`, after letting `skip` of them pass,
/// for `times` of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub path: String,
    #[serde(default)]
    pub skip: usize,
    #[serde(default = "one")]
    pub times: usize,
    #[serde(flatten)]
    pub fault: Fault,
}

fn one() -> usize {
    1
}

impl Fault {
    /// A plain status fault, with a SCIM error body.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
            body: None,
            location: None,
        }
    }
}

impl FaultRule {
    pub fn on(path: &str, fault: Fault) -> Self {
        Self {
            path: path.into(),
            skip: 0,
            times: 1,
            fault,
        }
    }
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    pub status: u16,
    pub authorized: bool,
}

struct BridgeState {
    cfg: BridgeConfig,
    users: Vec<EmuUser>,
    next_user: u64,
    faults: VecDeque<FaultRule>,
    log: Vec<RecordedRequest>,
    started: Instant,
}

type Shared = Arc<Mutex<BridgeState>>;

pub struct MockBridge {
    state: Shared,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockBridge {
    /// Starts the emulator on the current tokio runtime.
    pub async fn start(cfg: BridgeConfig) -> MockBridge {
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .expect("bind the emulator");
        Self::serve(cfg, listener)
    }

    pub fn serve(cfg: BridgeConfig, listener: tokio::net::TcpListener) -> MockBridge {
        let addr = listener.local_addr().unwrap();
        let users = users::generate(cfg.seed, cfg.users);
        let state = Arc::new(Mutex::new(BridgeState {
            next_user: cfg.users as u64,
            cfg,
            users,
            faults: VecDeque::new(),
            log: Vec::new(),
            started: Instant::now(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        MockBridge {
            state,
            addr,
            shutdown: Some(tx),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bridge's public URL (what a customer would paste), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> String {
        self.lock().cfg.token.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BridgeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// "Regenerate credentials": the old token stops working at once.
    pub fn regenerate_token(&self) -> String {
        let mut s = self.lock();
        let n = users::mix(s.cfg.token.len() as u64 ^ s.started.elapsed().as_nanos() as u64);
        s.cfg.token = format!("mock-bridge-token-{n:016x}");
        s.cfg.token.clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().cfg.mode = mode;
    }

    pub fn configure(&self, f: impl FnOnce(&mut BridgeConfig)) {
        f(&mut self.lock().cfg);
    }

    pub fn inject(&self, rule: FaultRule) {
        self.lock().faults.push_back(rule);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Every test that uses the emulator ends with this: opsync only ever reads.
    pub fn assert_only_gets(&self) {
        let log = self.requests();
        let bad: Vec<_> = log.iter().filter(|r| r.method != "GET").collect();
        assert!(
            bad.is_empty(),
            "opsync sent non-GET requests to the bridge: {bad:?}"
        );
    }

    pub fn users(&self) -> Vec<EmuUser> {
        self.lock().users.clone()
    }

    pub fn apply(&self, change: Change) -> Value {
        apply_change(&mut self.lock(), change)
    }

    pub fn add_user(&self, given: &str, family: &str) -> String {
        let v = self.apply(Change::Add {
            given: given.into(),
            family: family.into(),
            active: true,
        });
        v["id"].as_str().unwrap().to_owned()
    }
    pub fn suspend(&self, id: &str) {
        self.apply(Change::Suspend { id: id.into() });
    }
    pub fn reactivate(&self, id: &str) {
        self.apply(Change::Reactivate { id: id.into() });
    }
    pub fn rename(&self, id: &str, given: &str, family: &str) {
        self.apply(Change::Rename {
            id: id.into(),
            given: given.into(),
            family: family.into(),
        });
    }
    pub fn delete(&self, id: &str) {
        self.apply(Change::Delete { id: id.into() });
    }
}

impl Drop for MockBridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A change to the directory, as the control endpoint takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Add {
        given: String,
        family: String,
        #[serde(default = "yes")]
        active: bool,
    },
    Suspend {
        id: String,
    },
    Reactivate {
        id: String,
    },
    Rename {
        id: String,
        given: String,
        family: String,
    },
    Delete {
        id: String,
    },
}

fn yes() -> bool {
    true
}

fn apply_change(s: &mut BridgeState, change: Change) -> Value {
    let find = |s: &mut BridgeState, id: &str| s.users.iter().position(|u| u.id == id);
    match change {
        Change::Add {
            given,
            family,
            active,
        } => {
            let mut u = EmuUser::generate(s.cfg.seed, s.next_user);
            u.email = format!(
                "{}.{}{}@example.com",
                given.to_ascii_lowercase(),
                family.to_ascii_lowercase(),
                s.next_user
            );
            u.given = given;
            u.family = family;
            u.active = active;
            s.next_user += 1;
            let v = u.to_scim();
            s.users.push(u);
            v
        }
        Change::Suspend { id }
        | Change::Reactivate { id }
        | Change::Rename { id, .. }
        | Change::Delete { id }
            if find(s, &id).is_none() =>
        {
            json!({"error": format!("no user {id}")})
        }
        Change::Suspend { id } => {
            let i = find(s, &id).unwrap();
            s.users[i].active = false;
            s.users[i].to_scim()
        }
        Change::Reactivate { id } => {
            let i = find(s, &id).unwrap();
            s.users[i].active = true;
            s.users[i].to_scim()
        }
        Change::Rename { id, given, family } => {
            let i = find(s, &id).unwrap();
            s.users[i].given = given;
            s.users[i].family = family;
            s.users[i].to_scim()
        }
        Change::Delete { id } => {
            let i = find(s, &id).unwrap();
            s.users.remove(i).to_scim()
        }
    }
}

fn scim_error(status: u16, detail: &str) -> Response {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

fn scim_json(v: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/scim+json")],
        v.to_string(),
    )
        .into_response()
}

fn query_param(query: Option<&str>, name: &str) -> Option<i64> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.parse().ok())
}

/// A body stream that yields `prefix` and then fails, which makes hyper cut the connection.
fn broken_body(prefix: Bytes) -> Body {
    let items: Vec<Result<Bytes, std::io::Error>> = if prefix.is_empty() {
        vec![Err(std::io::Error::other("emulated connection drop"))]
    } else {
        vec![
            Ok(prefix),
            Err(std::io::Error::other("emulated connection drop")),
        ]
    };
    Body::from_stream(futures::stream::iter(items))
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let (fault, authorized, started) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let authorized = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.strip_prefix("Bearer ") == Some(s.cfg.token.as_str()));
        // Take the first matching fault, honouring skip and times.
        let mut fault = None;
        for i in 0..s.faults.len() {
            if !path.contains(&s.faults[i].path) {
                continue;
            }
            if s.faults[i].skip > 0 {
                s.faults[i].skip -= 1;
                continue;
            }
            fault = Some(s.faults[i].fault.clone());
            s.faults[i].times -= 1;
            if s.faults[i].times == 0 {
                s.faults.remove(i);
            }
            break;
        }
        (fault, authorized, s.started)
    };
    let at_ms = started.elapsed().as_millis() as u64;

    let response = respond(&state, &method, &path, query.as_deref(), authorized, fault).await;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.log.push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        at_ms,
        status: response.status().as_u16(),
        authorized,
    });
    response
}

async fn respond(
    state: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    authorized: bool,
    fault: Option<Fault>,
) -> Response {
    if method != Method::GET {
        // The emulator serves no writes: opsync must never send one, and if it does the
        // request log shows it.
        return scim_error(405, "the emulator accepts only GET");
    }
    match &fault {
        Some(Fault::Status {
            status,
            retry_after,
            body,
            location,
        }) => {
            let mut r = match body {
                Some(b) => (StatusCode::from_u16(*status).unwrap(), b.clone()).into_response(),
                None => scim_error(*status, "injected failure"),
            };
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_str(ra).unwrap());
            }
            if let Some(l) = location {
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_str(l).unwrap());
            }
            return r;
        }
        Some(Fault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(Fault::Drop) => return Response::new(broken_body(Bytes::new())),
        Some(Fault::Malformed) => {
            return ([(header::CONTENT_TYPE, "application/scim+json")], "{\"schemas\": [\"urn:ietf:params:scim:api:messages:2.0:ListResponse\", totalResults: ]").into_response();
        }
        Some(Fault::Oversize { bytes }) => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let n = bytes.div_ceil(chunk.len());
            let stream =
                futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            return (
                [(header::CONTENT_TYPE, "application/scim+json")],
                Body::from_stream(stream),
            )
                .into_response();
        }
        Some(Fault::Drift { add, remove }) => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            for _ in 0..*remove {
                if !s.users.is_empty() {
                    s.users.remove(0);
                }
            }
            for _ in 0..*add {
                let u = EmuUser::generate(s.cfg.seed, s.next_user);
                s.next_user += 1;
                s.users.insert(0, u);
            }
        }
        _ => {}
    }
    let response = route(state, path, query, authorized, fault.as_ref());
    if fault == Some(Fault::Truncate) {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let half = bytes.slice(..bytes.len() / 2);
        let mut r = Response::from_parts(parts, broken_body(half));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        return r;
    }
    response
}

fn route(
    state: &Shared,
    path: &str,
    query: Option<&str>,
    authorized: bool,
    fault: Option<&Fault>,
) -> Response {
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    match path {
        "/ping" => return "pong".into_response(),
        "/" => return (StatusCode::FOUND, [(header::LOCATION, "/app")]).into_response(),
        "/app" => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>1Password SCIM Bridge</body></html>",
            )
                .into_response();
        }
        "/health" => {
            if !authorized {
                return auth_failure(&s.cfg);
            }
            return Json(&json!({
                "build": "209161",
                "version": s.cfg.version,
                "reports": [
                    {"source": "SCIMServer", "state": "healthy", "reported": httpdate::fmt_http_date(SystemTime::now())},
                    {"source": "StartProvisionWatcher", "state": "healthy"},
                    {"source": "RedisCache", "state": "healthy"},
                ],
                "retrievedAt": httpdate::fmt_http_date(SystemTime::now()),
            }));
        }
        _ => {}
    }
    let base = s.cfg.base_path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix(base).filter(|r| r.starts_with('/')) else {
        return scim_error(404, "not found");
    };
    let is_scim = rest == "/Users"
        || rest.starts_with("/Users/")
        || matches!(
            rest,
            "/ServiceProviderConfig" | "/Schemas" | "/ResourceTypes" | "/Groups"
        );
    if !is_scim {
        return scim_error(404, "not found");
    }
    match s.cfg.mode {
        Mode::GoogleWorkspace { scim_status } => {
            return scim_error(scim_status, "SCIM API is disabled for Google Workspace");
        }
        Mode::ProvisioningOff => return scim_error(500, "provisioning is disabled"),
        Mode::Normal => {}
    }
    if !authorized {
        return auth_failure(&s.cfg);
    }
    if rest == "/ServiceProviderConfig" {
        return scim_json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 10000},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true}],
        }));
    }
    if let Some(id) = rest.strip_prefix("/Users/") {
        return match s.users.iter().find(|u| u.id == id) {
            Some(u) => scim_json(&u.to_scim()),
            None => scim_error(404, "User not found"),
        };
    }
    if rest != "/Users" {
        return scim_json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0}),
        );
    }
    let total = s.users.len();
    let start = query_param(query, "startIndex").unwrap_or(1).max(1) as usize;
    let mut count = query_param(query, "count")
        .map(|c| c.max(0) as usize)
        .unwrap_or(total);
    if let Some(cap) = s.cfg.page_cap {
        count = count.min(cap);
    }
    let from = (start - 1).min(total);
    let to = (from + count).min(total);
    let mut resources: Vec<Value> = Vec::with_capacity(to - from + 1);
    // RepeatPrevious serves the window one user early, as an insertion in front would.
    let (from, to) = if fault == Some(&Fault::RepeatPrevious) && from > 0 {
        (from - 1, to - 1)
    } else {
        (from, to)
    };
    resources.extend(s.users[from..to].iter().map(EmuUser::to_scim));
    let mut page = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": if s.cfg.start_index_zero && start == 1 { 0 } else { start },
    });
    if !s.cfg.omit_items_per_page {
        page["itemsPerPage"] = json!(resources.len());
    }
    // The bridge leaves Resources out when there is nothing to list.
    if !resources.is_empty() {
        page["Resources"] = Value::Array(resources);
    }
    scim_json(&page)
}

#[allow(non_snake_case)]
fn Json(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn auth_failure(cfg: &BridgeConfig) -> Response {
    match cfg.auth_body {
        AuthBody::Scim => scim_error(cfg.auth_status, "Unauthorized: the bearer token is invalid"),
        AuthBody::Text => (
            StatusCode::from_u16(cfg.auth_status).unwrap(),
            "Unauthorized",
        )
            .into_response(),
        AuthBody::Empty => StatusCode::from_u16(cfg.auth_status)
            .unwrap()
            .into_response(),
    }
}

/// The control API of the `mock-bridge` binary: one endpoint on loopback taking JSON.
pub fn control_router(bridge: Arc<MockBridge>) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route(
            "/requests",
            get({
                let b = bridge.clone();
                move || async move { axum::Json(b.requests()) }
            }),
        )
        .route(
            "/users",
            get({
                let b = bridge.clone();
                move || async move {
                    axum::Json(b.users().iter().map(EmuUser::to_scim).collect::<Vec<_>>())
                }
            }),
        )
        .route(
            "/change",
            post({
                let b = bridge.clone();
                move |axum::Json(c): axum::Json<Change>| async move { axum::Json(b.apply(c)) }
            }),
        )
        .route(
            "/fault",
            post({
                let b = bridge.clone();
                move |axum::Json(r): axum::Json<FaultRule>| async move {
                    b.inject(r);
                    axum::Json(json!({"ok": true}))
                }
            }),
        )
        .route(
            "/mode",
            post({
                let b = bridge.clone();
                move |axum::Json(m): axum::Json<Mode>| async move {
                    b.set_mode(m);
                    axum::Json(json!({"ok": true}))
                }
            }),
        )
        .route(
            "/regenerate-token",
            post({
                let b = bridge.clone();
                move || async move { axum::Json(json!({"token": b.regenerate_token()})) }
            }),
        )
}
