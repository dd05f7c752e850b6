//! `WatchRevocations` over the real gRPC API: the current list first, then each revocation as
//! it happens (from another instance too, through Redis), resuming with a cursor, the caller
//! right it needs, a cursor it did not make refused, and open streams that end at shutdown so
//! the drain is not held up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

use std::time::Duration;

use token_proto::revoke_token_request::Target;
use token_proto::{RevocationEvent, RevokeTokenRequest, WatchRevocationsRequest};
use token_testkit::RedisServer;
use tonic::{Code, Streaming};

use common::{Harness, KEK, PEPPER, authed, caller_digest, generate, harness, now};

async fn watch(h: &mut Harness, cursor: &str) -> Streaming<RevocationEvent> {
    h.client
        .watch_revocations(authed(WatchRevocationsRequest {
            cursor: cursor.into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

/// The next event, waiting at most `limit`.
async fn next_within(stream: &mut Streaming<RevocationEvent>, limit: Duration) -> RevocationEvent {
    tokio::time::timeout(limit, stream.message())
        .await
        .expect("an event in time")
        .unwrap()
        .expect("the stream is open")
}

/// No event within `wait`.
async fn quiet_for(stream: &mut Streaming<RevocationEvent>, wait: Duration) {
    if let Ok(got) = tokio::time::timeout(wait, stream.message()).await {
        panic!("unexpected: {got:?}");
    }
}

async fn revoke_family(h: &mut Harness, family_id: &str) {
    let n = h
        .client
        .revoke_token(authed(RevokeTokenRequest {
            target: Some(Target::FamilyId(family_id.into())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .families_revoked;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn the_list_first_then_each_revocation_then_resume_by_cursor() {
    let mut h = harness(&[]).await;
    let mut live = watch(&mut h, "").await;
    quiet_for(&mut live, Duration::from_millis(300)).await;

    let a = h.generate_ok(generate("watch-a")).await;
    revoke_family(&mut h, &a.family_id).await;
    let got = next_within(&mut live, Duration::from_secs(1)).await;
    assert_eq!(got.sid, a.family_id);
    // Listed at least as long as the access token could verify (TTL + leeway).
    assert!(got.listed_until >= now() + 900, "{got:?}");
    assert!(got.cursor.starts_with("v1."), "{got:?}");

    // A new stream gets the current list first.
    let mut fresh = watch(&mut h, "").await;
    let first = next_within(&mut fresh, Duration::from_secs(1)).await;
    assert_eq!(first.sid, a.family_id);
    quiet_for(&mut fresh, Duration::from_millis(200)).await;

    // Resumed with the cursor: what was revoked while away, then the live events.
    let b = h.generate_ok(generate("watch-b")).await;
    revoke_family(&mut h, &b.family_id).await;
    let mut resumed = watch(&mut h, &got.cursor).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_within(&mut resumed, Duration::from_secs(1)).await.sid);
    }
    seen.sort();
    let mut want = vec![a.family_id.clone(), b.family_id.clone()];
    want.sort();
    assert_eq!(seen, want, "nothing revoked since the cursor is missed");
    let c = h.generate_ok(generate("watch-c")).await;
    revoke_family(&mut h, &c.family_id).await;
    assert_eq!(
        next_within(&mut resumed, Duration::from_secs(1)).await.sid,
        c.family_id
    );

    // A cursor the service did not make is refused, naming the fix.
    let e = h
        .client
        .watch_revocations(authed(WatchRevocationsRequest {
            cursor: "from-elsewhere".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("empty one"), "{e:?}");

    // Shutdown ends the open streams instead of waiting for them.
    let started = std::time::Instant::now();
    h.server.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    // (`live` still holds the events of b and c, sent before the shutdown)
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = live.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the server");
}

#[tokio::test]
async fn a_revocation_on_another_instance_is_streamed_at_once() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let key = common::signing_key_file();
    let key_path = key.path().to_string_lossy().into_owned();
    let shared = [
        ("REDIS_URL", url.as_str()),
        ("REFRESH_TOKEN_PEPPER", PEPPER),
        ("KEY_ENCRYPTION_KEY", KEK),
        ("SIGNING_KEY_FILE", key_path.as_str()),
    ];
    let mut one = harness(&shared).await;
    let mut two = harness(&shared).await;
    let mut stream = watch(&mut one, "").await;
    let issued = one.generate_ok(generate("watch-fleet")).await;
    let started = std::time::Instant::now();
    revoke_family(&mut two, &issued.family_id).await;
    let got = next_within(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(got.sid, issued.family_id);
    assert!(started.elapsed() < Duration::from_secs(1));
    one.server.shutdown().await.unwrap();
    two.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn watching_needs_its_own_right() {
    let file = common::temp_file(
        format!(
            "[[caller]]\nname = \"minter\"\ntoken_sha256 = \"{}\"\nclient_ids = [\"*\"]\naudiences = [\"*\"]\n\n\
             [[caller]]\nname = \"resource-server\"\ntoken_sha256 = \"{}\"\nrpcs = [\"WatchRevocations\"]\n",
            caller_digest("minter-token"),
            caller_digest("rs-token"),
        )
        .as_bytes(),
    );
    let path = file.path().to_string_lossy().into_owned();
    let h = harness(&[("CALLERS_FILE", &path)]).await;
    let request = |token: &str| {
        let mut r = tonic::Request::new(WatchRevocationsRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let mut client = h.client.clone();
    // Every token RPC by default, but not this one.
    let e = client
        .watch_revocations(request("minter-token"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        e.message(),
        "caller \"minter\" lacks the right rpcs: WatchRevocations"
    );
    assert!(client.watch_revocations(request("rs-token")).await.is_ok());
    h.server.shutdown().await.unwrap();
}
