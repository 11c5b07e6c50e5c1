//! The SCIM client against the bridge emulator: every behaviour the client issue lists.
//! Each test ends by asserting that nothing but GET reached the bridge.

use opsync_shared::onepassword;
use opsync_shared::scim::{
    AddressPolicy, ClientConfig, ClientStats, Doubt, PagingLimits, ScimClient,
};
use opsync_shared::{BearerToken, ScimError};
use opsync_tests::bridge::{AuthBody, Fault, FaultRule, Mode};
use opsync_tests::helpers::{
    client_for, client_with, spawn_bridge, spawn_bridge_with, test_client_config,
};
use std::time::{Duration, Instant};

fn paged(page_size: u64) -> ClientConfig {
    ClientConfig {
        paging: PagingLimits {
            page_size,
            ..PagingLimits::default()
        },
        ..test_client_config()
    }
}

async fn discover_and_list(
    client: &mut ScimClient,
) -> Result<opsync_shared::scim::Snapshot, ScimError> {
    let d = onepassword::discover(client).await?;
    client.set_base(d.base);
    client.list_users(|_, _| {}).await
}

#[tokio::test]
async fn finds_each_scim_base_variant_and_reports_it() {
    for base in ["", "/scim", "/scim/v2", "/v2"] {
        let bridge = spawn_bridge_with(|c| {
            c.users = 7;
            c.base_path = base.into();
        })
        .await;
        let client = client_for(&bridge);
        let d = onepassword::discover(&client).await.unwrap();
        assert_eq!(d.base_path, base, "base {base:?}");
        assert_eq!(
            d.base.as_str().trim_end_matches('/'),
            format!("{}{}", bridge.url(), base)
        );
        assert_eq!(d.total_results, Some(7));
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn a_url_given_with_its_scim_path_is_used_as_given() {
    let bridge = spawn_bridge(3).await;
    let token = BearerToken::new(bridge.token()).unwrap();
    let client = ScimClient::new(
        &format!("{}/scim/v2/", bridge.url()),
        token,
        test_client_config(),
    )
    .unwrap();
    let d = onepassword::discover(&client).await.unwrap();
    assert_eq!(d.base_path, "");
    assert_eq!(bridge.requests().len(), 1, "the given path answered first");
    // /health is found at the bridge root even though the URL carried the SCIM path.
    assert!(onepassword::health(&client).await.unwrap().is_some());
    bridge.assert_only_gets();
}

#[tokio::test]
async fn lists_every_user_across_pages() {
    let bridge = spawn_bridge(250).await;
    let mut client = client_with(&bridge, paged(100));
    let s = discover_and_list(&mut client).await.unwrap();
    assert_eq!(s.users.len(), 250);
    assert!(s.is_complete_and_consistent(), "{:?}", s.doubts);
    assert_eq!(s.pages, 3);
    let expected: Vec<_> = bridge
        .users()
        .iter()
        .filter(|u| u.active)
        .map(|u| u.id.clone())
        .collect();
    assert_eq!(s.active_count() as usize, expected.len());
    let page_requests: Vec<_> = bridge
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.ends_with("/Users") && r.query.as_deref().unwrap_or("").contains("count=100")
        })
        .collect();
    assert_eq!(page_requests.len(), 3);
    assert!(
        page_requests[1]
            .query
            .as_deref()
            .unwrap()
            .contains("startIndex=101")
    );
    bridge.assert_only_gets();
}

#[tokio::test]
async fn short_pages_missing_items_per_page_and_start_index_zero() {
    let bridge = spawn_bridge_with(|c| {
        c.users = 95;
        c.page_cap = Some(30);
        c.omit_items_per_page = true;
        c.start_index_zero = true;
    })
    .await;
    let mut client = client_with(&bridge, paged(100));
    let s = discover_and_list(&mut client).await.unwrap();
    assert_eq!(s.users.len(), 95);
    assert!(s.is_complete_and_consistent(), "{:?}", s.doubts);
    assert_eq!(s.pages, 4, "30 + 30 + 30 + 5");
    bridge.assert_only_gets();
}

#[tokio::test]
async fn empty_directory_without_resources() {
    let bridge = spawn_bridge(0).await;
    let mut client = client_for(&bridge);
    let s = discover_and_list(&mut client).await.unwrap();
    assert!(s.users.is_empty());
    assert!(s.is_complete_and_consistent());
    bridge.assert_only_gets();
}

#[tokio::test]
async fn duplicates_across_pages_mark_the_snapshot_inconsistent() {
    let bridge = spawn_bridge(50).await;
    let mut client = client_with(&bridge, paged(20));
    let d = onepassword::discover(&client).await.unwrap();
    client.set_base(d.base);
    bridge.inject(FaultRule::on("/Users", Fault::RepeatPrevious).skip(1));
    let s = client.list_users(|_, _| {}).await.unwrap();
    // Page 2 starts one user early, so the user at its end is pushed off and never seen.
    assert_eq!(s.users.len(), 49);
    assert!(!s.is_complete_and_consistent());
    assert!(
        s.doubts.contains(&Doubt::Duplicates { count: 1 }),
        "{:?}",
        s.doubts
    );
    bridge.assert_only_gets();
}

#[tokio::test]
async fn drift_during_paging_marks_the_snapshot_inconsistent() {
    // Equal numbers added and removed keep totalResults and the distinct count unchanged:
    // offset paging cannot see that, which is why a removal is only ever inferred after the
    // bridge confirms it with a 404 on GET /Users/{id}.
    for (add, remove) in [(3, 0), (0, 3), (1, 0)] {
        let bridge = spawn_bridge(60).await;
        let mut client = client_with(&bridge, paged(20));
        let d = onepassword::discover(&client).await.unwrap();
        client.set_base(d.base);
        // The second page is served after the directory changed.
        bridge.inject(FaultRule::on("/Users", Fault::Drift { add, remove }).skip(1));
        let s = client.list_users(|_, _| {}).await.unwrap();
        assert!(
            !s.is_complete_and_consistent(),
            "add {add} remove {remove}: {:?}",
            s.doubts
        );
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn wrong_token_is_auth_rejected_whatever_the_body() {
    for (status, body) in [
        (401, AuthBody::Scim),
        (401, AuthBody::Empty),
        (403, AuthBody::Text),
    ] {
        let bridge = spawn_bridge_with(|c| {
            c.auth_status = status;
            c.auth_body = body;
        })
        .await;
        let client = ScimClient::new(
            &bridge.url(),
            BearerToken::new("not-the-token").unwrap(),
            test_client_config(),
        )
        .unwrap();
        let err = onepassword::discover(&client).await.unwrap_err();
        assert_eq!(err.kind(), "auth_rejected", "{status} {body:?}: {err}");
        assert!(err.to_string().contains("update the integration's token"));
        assert!(!err.is_transient());
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn regenerated_token_is_auth_rejected_without_retries() {
    let bridge = spawn_bridge(10).await;
    let mut client = client_for(&bridge);
    discover_and_list(&mut client).await.unwrap();
    bridge.regenerate_token();
    bridge.clear_requests();
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "auth_rejected");
    assert_eq!(bridge.requests().len(), 1, "a 401 is never retried");
    bridge.assert_only_gets();
}

#[tokio::test]
async fn google_workspace_mode_is_recognised() {
    for scim_status in [404, 403, 501] {
        let bridge = spawn_bridge_with(|c| c.mode = Mode::GoogleWorkspace { scim_status }).await;
        let client = client_for(&bridge);
        let err = onepassword::discover(&client).await.unwrap_err();
        assert_eq!(
            err.kind(),
            "scim_api_disabled",
            "status {scim_status}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("Google Workspace") && msg.contains("another identity provider"),
            "{msg}"
        );
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn provisioning_off_500s_are_retried_then_reported() {
    let bridge = spawn_bridge_with(|c| c.mode = Mode::ProvisioningOff).await;
    let client = client_for(&bridge);
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "server_error");
    assert!(err.is_transient());
    let tries = bridge
        .requests()
        .iter()
        .filter(|r| r.path == "/scim/v2/Users")
        .count();
    assert_eq!(tries, 5, "first attempt and 4 retries");
    assert_eq!(ClientStats::get(&client.stats().retries), 4);
    bridge.assert_only_gets();
}

#[tokio::test]
async fn transient_failures_are_retried_and_succeed() {
    for fault in [
        Fault::status(502),
        Fault::status(503),
        Fault::Truncate,
        Fault::Drop,
        Fault::status(408),
    ] {
        let bridge = spawn_bridge(30).await;
        let mut client = client_with(&bridge, paged(10));
        let d = onepassword::discover(&client).await.unwrap();
        client.set_base(d.base);
        bridge.inject(FaultRule::on("/Users", fault.clone()).skip(1).times(2));
        let s = client
            .list_users(|_, _| {})
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(s.users.len(), 30, "{fault:?}");
        assert!(s.is_complete_and_consistent());
        assert_eq!(ClientStats::get(&client.stats().retries), 2, "{fault:?}");
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    let bridge = spawn_bridge(30).await;
    let mut client = client_for(&bridge);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    bridge.clear_requests();
    bridge.inject(FaultRule::on("/Users", Fault::status(400)));
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "client_error");
    assert_eq!(bridge.requests().len(), 1);
    bridge.assert_only_gets();
}

#[tokio::test]
async fn rate_limited_429_waits_for_retry_after() {
    for as_date in [false, true] {
        let retry_after = if as_date {
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2))
        } else {
            "1".to_string()
        };
        let bridge = spawn_bridge(30).await;
        let mut client = client_for(&bridge);
        client.set_base(onepassword::discover(&client).await.unwrap().base);
        bridge.clear_requests();
        bridge.inject(FaultRule::on(
            "/Users",
            Fault::Status {
                status: 429,
                retry_after: Some(retry_after.clone()),
                body: None,
                location: None,
            },
        ));
        let s = client.list_users(|_, _| {}).await.unwrap();
        assert_eq!(s.users.len(), 30);
        let log = bridge.requests();
        assert_eq!(log[0].status, 429);
        let gap = log[1].at_ms - log[0].at_ms;
        // An HTTP date has one-second resolution: at least 1 s remains of the 2 s asked.
        assert!(
            gap >= 950,
            "waited only {gap} ms for Retry-After {retry_after}"
        );
        assert_eq!(ClientStats::get(&client.stats().retry_after_waits), 1);
        bridge.assert_only_gets();
    }
}

#[tokio::test]
async fn persistent_429_becomes_rate_limited() {
    let bridge = spawn_bridge(5).await;
    let mut client = client_for(&bridge);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    bridge.inject(
        FaultRule::on(
            "/Users",
            Fault::Status {
                status: 429,
                retry_after: Some("0".into()),
                body: None,
                location: None,
            },
        )
        .times(100),
    );
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert!(err.is_transient());
    bridge.assert_only_gets();
}

#[tokio::test]
async fn request_rate_is_limited() {
    let bridge = spawn_bridge(50).await;
    let cfg = ClientConfig {
        rate_limit_per_sec: 20.0,
        ..paged(5)
    };
    let mut client = client_with(&bridge, cfg);
    let t0 = Instant::now();
    discover_and_list(&mut client).await.unwrap();
    // 1 discovery + 10 pages = 11 requests at 20/s: at least 10 intervals of 50 ms.
    assert!(
        t0.elapsed() >= Duration::from_millis(480),
        "{:?}",
        t0.elapsed()
    );
    assert!(ClientStats::get(&client.stats().rate_limit_waits) >= 9);
    let log = bridge.requests();
    assert!(
        log.windows(2).all(|w| w[1].at_ms + 5 >= w[0].at_ms + 50),
        "requests closer than the rate allows"
    );
    bridge.assert_only_gets();
}

#[tokio::test]
async fn oversize_body_is_refused() {
    let bridge = spawn_bridge(5).await;
    let cfg = ClientConfig {
        max_response_bytes: 256 * 1024,
        ..test_client_config()
    };
    let mut client = client_with(&bridge, cfg);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    bridge.inject(FaultRule::on(
        "/Users",
        Fault::Oversize {
            bytes: 4 * 1024 * 1024,
        },
    ));
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "response_too_large");
    assert!(!err.is_transient());
    bridge.assert_only_gets();
}

#[tokio::test]
async fn malformed_body_is_a_protocol_error() {
    let bridge = spawn_bridge(5).await;
    let mut client = client_for(&bridge);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    bridge.inject(FaultRule::on("/Users", Fault::Malformed));
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "protocol_error");
    bridge.assert_only_gets();
}

#[tokio::test]
async fn http_and_loopback_are_refused_without_the_allow_settings() {
    let bridge = spawn_bridge(5).await;
    let token = || BearerToken::new(bridge.token()).unwrap();
    let strict = ClientConfig::default();
    let err = ScimClient::new(&bridge.url(), token(), strict.clone()).unwrap_err();
    assert_eq!(err.kind(), "insecure_url");
    let http_only = ClientConfig {
        allow_http: true,
        ..ClientConfig::default()
    };
    let err = ScimClient::new(&bridge.url(), token(), http_only.clone()).unwrap_err();
    assert_eq!(err.kind(), "address_blocked");
    // A name that resolves to loopback is refused at connect time, after DNS.
    let by_name = bridge.url().replace("127.0.0.1", "localhost");
    let client = ScimClient::new(
        &by_name,
        token(),
        ClientConfig {
            retry: test_client_config().retry,
            ..http_only
        },
    )
    .unwrap();
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "address_blocked", "{err}");
    assert!(
        bridge.requests().is_empty(),
        "nothing may reach a blocked address"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_named() {
    let bridge = spawn_bridge(5).await;
    let mut client = client_for(&bridge);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    bridge.clear_requests();
    bridge.inject(FaultRule::on(
        "/Users",
        Fault::Status {
            status: 302,
            retry_after: None,
            body: Some(String::new()),
            location: Some("https://evil.example.net/steal".into()),
        },
    ));
    let err = client.list_users(|_, _| {}).await.unwrap_err();
    assert_eq!(err.kind(), "redirected");
    assert!(
        err.to_string().contains("https://evil.example.net/steal"),
        "{err}"
    );
    assert_eq!(bridge.requests().len(), 1);
    bridge.assert_only_gets();
}

#[tokio::test]
async fn not_a_bridge_unreachable_tls_and_timeout() {
    // A web server that is not a bridge: 404 everywhere, no /ping.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "<html>nope</html>") });
        axum::serve(listener, app).await.unwrap();
    });
    let token = || BearerToken::new("t0ken-abc").unwrap();
    let client = ScimClient::new(&format!("http://{addr}"), token(), test_client_config()).unwrap();
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "not_a_scim_bridge", "{err}");

    // Nothing listens on this port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = ScimClient::new(&format!("http://{free}"), token(), test_client_config()).unwrap();
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "bridge_unreachable", "{err}");
    assert!(err.is_transient());

    // TLS spoken to a plain-HTTP server.
    let bridge = spawn_bridge(1).await;
    let https = bridge.url().replace("http://", "https://");
    let client = ScimClient::new(&https, token(), test_client_config()).unwrap();
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "tls_error", "{err}");

    // A bridge slower than the request timeout.
    let cfg = ClientConfig {
        request_timeout: Duration::from_millis(200),
        ..test_client_config()
    };
    let client = client_with(&bridge, cfg);
    bridge.inject(FaultRule::on("/Users", Fault::Delay { ms: 1500 }).times(10));
    let err = onepassword::discover(&client).await.unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    bridge.assert_only_gets();
}

#[tokio::test]
async fn get_user_by_id_and_404() {
    let bridge = spawn_bridge(5).await;
    let mut client = client_for(&bridge);
    client.set_base(onepassword::discover(&client).await.unwrap().base);
    let first = bridge.users()[0].clone();
    let u = client.get_user(&first.id).await.unwrap().unwrap();
    assert_eq!(u.email.as_deref(), Some(first.email.as_str()));
    bridge.delete(&first.id);
    assert_eq!(client.get_user(&first.id).await.unwrap(), None);
    bridge.assert_only_gets();
}

#[tokio::test]
async fn lists_100_000_users() {
    let t0 = Instant::now();
    let bridge = spawn_bridge(100_000).await;
    let generated = t0.elapsed();
    let mut client = client_with(&bridge, paged(1000));
    let t1 = Instant::now();
    let s = discover_and_list(&mut client).await.unwrap();
    let listed = t1.elapsed();
    assert_eq!(s.users.len(), 100_000);
    assert!(s.is_complete_and_consistent());
    eprintln!(
        "100,000 users: generated in {generated:?}, listed in {listed:?} ({} pages)",
        s.pages
    );
    bridge.assert_only_gets();
}

#[tokio::test]
async fn address_policy_allows_loopback_only_when_asked() {
    let bridge = spawn_bridge(2).await;
    let cfg = ClientConfig {
        address_policy: AddressPolicy {
            allow_private: true,
        },
        allow_http: true,
        ..test_client_config()
    };
    let by_name = bridge.url().replace("127.0.0.1", "localhost");
    let client = ScimClient::new(&by_name, BearerToken::new(bridge.token()).unwrap(), cfg).unwrap();
    assert!(onepassword::discover(&client).await.is_ok());
    bridge.assert_only_gets();
}
