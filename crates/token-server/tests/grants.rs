//! Grant integrity over the real gRPC API: a refresh reproduces the grant exactly (audience,
//! custom claims, lifetime, scopes, client, DPoP key) on the in-memory store, on Redis and on a
//! Redis Cluster; a refresh may narrow the grant for one token, never widen it; refresh tokens
//! answer their own client only; every refused refresh reads alike; access tokens never outlive
//! their family; a grant without an audience is refused. Every refusal is checked for its
//! status, its `oauth-error`, and that the victim's family still works afterwards.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

use serde_json::Value;
use token_proto::revoke_token_request::Target;
use token_proto::{GenerateTokensRequest, RefreshTokensRequest, TokenResponse};
use token_testkit::{RedisCluster, RedisServer};
use tonic::{Code, Status};

use common::{
    Calls, Harness, answer, audiences, dpop, generate, harness, invalid_grant, oauth_error,
    on_redis, proof_builder, refresh_as, refusal, revocation,
};

const PAYMENTS: &str = "https://payments.example";
const LEDGER: &str = "https://ledger.example";

/// The grant of these tests: two audiences, a custom claim, a 120 s access-token lifetime.
fn grant(subject: &str) -> GenerateTokensRequest {
    GenerateTokensRequest {
        audience: vec![PAYMENTS.into(), LEDGER.into()],
        additional_claims_json: r#"{"tenant":"t-42","limits":{"daily":12345678901234567}}"#.into(),
        access_token_ttl_seconds: 120,
        ..generate(subject)
    }
}

/// The verified claims of an access token, as `IntrospectToken` reports them.
async fn claims(h: &mut Harness, token: &str) -> Value {
    let r = h.client.introspect(token).await.unwrap();
    assert!(r.active, "the access token is active");
    serde_json::from_str(&r.claims_json).unwrap()
}

/// The claims every access token of [`grant`] carries.
async fn assert_minted_from_the_grant(
    h: &mut Harness,
    tokens: &TokenResponse,
    audience: &[&str],
    scope: &str,
) -> Value {
    let c = claims(h, &tokens.access_token).await;
    assert_eq!(audiences(&c), audience, "{c}");
    assert_eq!(c["tenant"], "t-42", "{c}");
    assert_eq!(c["limits"]["daily"], 12_345_678_901_234_567_u64, "{c}");
    assert_eq!(c["scope"], scope, "{c}");
    assert_eq!(c["client_id"], "web", "{c}");
    assert_eq!(c["sid"], tokens.family_id.as_str(), "{c}");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        120,
        "{c}"
    );
    assert_eq!(tokens.expires_in, 120);
    c
}

async fn refreshed(h: &mut Harness, req: RefreshTokensRequest) -> TokenResponse {
    h.client.refresh(req).await.unwrap()
}

/// The status of a refused refresh.
async fn refused(h: &mut Harness, req: RefreshTokensRequest) -> Status {
    let r = h.client.refresh(req).await;
    r.expect_err("the refresh must be refused")
}

/// On a server with `vars`: issues [`grant`] and refreshes it twice; every access token
/// carries the whole grant.
async fn round_trip(vars: &[(&str, &str)]) {
    let mut h = harness(vars).await;
    let first = h.generate_ok(grant("grant-round-trip")).await;
    let sub = assert_minted_from_the_grant(&mut h, &first, &[PAYMENTS, LEDGER], "read write").await;
    let mut current = first.clone();
    for _ in 0..2 {
        let next = refreshed(&mut h, refresh_as(&current.refresh_token, "web")).await;
        let c =
            assert_minted_from_the_grant(&mut h, &next, &[PAYMENTS, LEDGER], "read write").await;
        assert_eq!(c["sub"], sub["sub"]);
        assert_eq!(next.family_id, first.family_id);
        current = next;
    }
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refresh_reproduces_the_grant_in_memory() {
    round_trip(&[]).await;
}

#[tokio::test]
async fn a_refresh_reproduces_the_grant_on_redis() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    round_trip(&on_redis(&redis.url(), &[])).await;
}

#[tokio::test]
async fn a_refresh_reproduces_the_grant_on_a_redis_cluster() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    round_trip(&on_redis(&cluster.url(), &[])).await;
}

#[tokio::test]
async fn a_refresh_narrows_the_grant_for_one_token_and_never_widens_it() {
    let mut h = harness(&[]).await;
    let first = h.generate_ok(grant("narrowing")).await;

    // Narrower scopes and audience, for this token only.
    let narrow = refreshed(
        &mut h,
        RefreshTokensRequest {
            scopes: vec!["read".into()],
            audience: vec![LEDGER.into()],
            ..refresh_as(&first.refresh_token, "web")
        },
    )
    .await;
    assert_eq!(narrow.scopes, ["read"]);
    assert_minted_from_the_grant(&mut h, &narrow, &[LEDGER], "read").await;
    // The next refresh gets the whole grant again.
    let whole = refreshed(&mut h, refresh_as(&narrow.refresh_token, "web")).await;
    assert_minted_from_the_grant(&mut h, &whole, &[PAYMENTS, LEDGER], "read write").await;

    // Wider: refused, and nothing changed (the same token still rotates).
    let wider_scope = refused(
        &mut h,
        RefreshTokensRequest {
            scopes: vec!["read".into(), "admin".into()],
            ..refresh_as(&whole.refresh_token, "web")
        },
    )
    .await;
    assert_eq!(
        refusal(&wider_scope),
        (Code::InvalidArgument, "invalid_scope")
    );
    let wider_audience = refused(
        &mut h,
        RefreshTokensRequest {
            audience: vec![PAYMENTS.into(), "https://elsewhere.example".into()],
            ..refresh_as(&whole.refresh_token, "web")
        },
    )
    .await;
    assert_eq!(
        refusal(&wider_audience),
        (Code::InvalidArgument, "invalid_target")
    );
    let after = refreshed(&mut h, refresh_as(&whole.refresh_token, "web")).await;
    assert_minted_from_the_grant(&mut h, &after, &[PAYMENTS, LEDGER], "read write").await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refresh_token_answers_its_own_client_only() {
    let mut h = harness(&[]).await;
    let first = h.generate_ok(grant("client-binding")).await;

    // Another client: invalid_grant, and the family is untouched.
    let e = refused(&mut h, refresh_as(&first.refresh_token, "evil")).await;
    assert_eq!(answer(&e), invalid_grant());
    let second = refreshed(&mut h, refresh_as(&first.refresh_token, "web")).await;

    // An old (rotated) token presented by another client is no reuse: nothing is revoked.
    let e = refused(&mut h, refresh_as(&first.refresh_token, "evil")).await;
    assert_eq!(answer(&e), invalid_grant());
    let third = refreshed(&mut h, refresh_as(&second.refresh_token, "web")).await;
    assert!(claims(&mut h, &third.access_token).await["sid"] == first.family_id.as_str());

    // RevokeToken by another client revokes nothing, answered as any token is.
    let third_token = Target::RefreshToken(third.refresh_token.clone());
    let revoked = h
        .client
        .revoke(revocation("evil", third_token, "attack"))
        .await;
    assert_eq!(revoked.unwrap().families_revoked, 0);
    let fourth = refreshed(&mut h, refresh_as(&third.refresh_token, "web")).await;

    // A refresh must say which client it is.
    let e = refused(&mut h, refresh_as(&fourth.refresh_token, "")).await;
    assert_eq!(refusal(&e), (Code::InvalidArgument, "invalid_request"));
    // The rightful client revokes it.
    let fourth_token = Target::RefreshToken(fourth.refresh_token.clone());
    let revoked = h
        .client
        .revoke(revocation("web", fourth_token, "logout"))
        .await;
    assert_eq!(revoked.unwrap().families_revoked, 1);
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_refused_refresh_reads_alike() {
    let mut h = harness(&[]).await;
    let victim = h.generate_ok(grant("one-description")).await;
    let token = victim.refresh_token.clone();
    // A forged secret in a real family, an unknown family, a malformed token, another client.
    let forged = format!(
        "{}{}",
        &token[..30],
        if &token[30..31] == "A" { "B" } else { "A" }
    ) + &token[31..];
    let unknown = token.replacen(&token[4..10], "AAAAAA", 1);
    let cases = [
        refresh_as(&forged, "web"),
        refresh_as(&unknown, "web"),
        refresh_as("rt1_not-a-token", "web"),
        refresh_as(&token, "evil"),
    ];
    for case in cases {
        let e = refused(&mut h, case).await;
        assert_eq!(answer(&e), invalid_grant());
    }
    // Reuse: the same answer (and now the family is revoked, which is the point of reuse).
    let next = refreshed(&mut h, refresh_as(&token, "web")).await;
    let e = refused(&mut h, refresh_as(&token, "web")).await;
    assert_eq!(answer(&e), invalid_grant());
    let e = refused(&mut h, refresh_as(&next.refresh_token, "web")).await;
    assert_eq!(answer(&e), invalid_grant(), "revoked by the reuse");
    // RevokeToken answers a malformed and a forged token alike: OK, nothing revoked.
    for target in ["rt1_not-a-token", forged.as_str()] {
        let req = revocation("web", Target::RefreshToken(target.into()), "");
        let r = h.client.revoke(req).await.unwrap();
        assert_eq!(r.families_revoked, 0);
    }
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_grant_without_an_audience_is_refused_and_nothing_is_issued() {
    let mut h = harness(&[("DEFAULT_AUDIENCE", "")]).await;
    let req = GenerateTokensRequest {
        audience: vec![],
        ..generate("no-audience")
    };
    let e = h.client.generate(req).await.unwrap_err();
    assert_eq!(refusal(&e), (Code::InvalidArgument, "invalid_target"));
    let subject = revocation("", Target::Subject("no-audience".into()), "");
    let revoked = h.client.revoke(subject).await.unwrap();
    assert_eq!(revoked.families_revoked, 0, "no family was created");
    // With an audience in the request, the same server issues.
    let tokens = h.generate_ok(grant("with-audience")).await;
    assert_minted_from_the_grant(&mut h, &tokens, &[PAYMENTS, LEDGER], "read write").await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refresh_refused_before_its_token_is_checked_does_not_spend_the_proof() {
    let mut h = harness(&[]).await;
    let key = proof_builder();
    let bound = h
        .generate_ok(GenerateTokensRequest {
            dpop: Some(dpop(&key, None)),
            ..grant("jti-not-spent")
        })
        .await;
    assert_eq!(bound.token_type, "DPoP");
    let proof = dpop(&key, None);
    for bad in [
        refresh_as(&bound.refresh_token, ""),
        refresh_as("rt1_malformed", "web"),
    ] {
        let e = refused(
            &mut h,
            RefreshTokensRequest {
                dpop: Some(proof.clone()),
                ..bad
            },
        )
        .await;
        assert_ne!(oauth_error(&e), "invalid_dpop_proof", "{e:?}");
    }
    // The same proof, in a correct request: accepted (its `jti` was not recorded).
    let next = refreshed(
        &mut h,
        RefreshTokensRequest {
            dpop: Some(proof),
            ..refresh_as(&bound.refresh_token, "web")
        },
    )
    .await;
    assert_eq!(next.token_type, "DPoP");
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_access_token_never_outlives_its_family() {
    let mut h = harness(&[
        ("ACCESS_TOKEN_TTL", "900"),
        ("REFRESH_TOKEN_TTL", "60"),
        ("REFRESH_FAMILY_LIFETIME", "100"),
    ])
    .await;
    let tokens = h
        .generate_ok(GenerateTokensRequest {
            access_token_ttl_seconds: 0,
            ..grant("lifetime-cap")
        })
        .await;
    assert!(tokens.expires_in <= 100, "{}", tokens.expires_in);
    let c = claims(&mut h, &tokens.access_token).await;
    let exp = c["exp"].as_i64().unwrap();
    assert!(exp - c["iat"].as_i64().unwrap() <= 100, "{c}");
    let next = refreshed(&mut h, refresh_as(&tokens.refresh_token, "web")).await;
    let c2 = claims(&mut h, &next.access_token).await;
    assert!(
        c2["exp"].as_i64().unwrap() <= exp + 1,
        "the refreshed token ends with the family: {c2}"
    );
    h.server.shutdown().await.unwrap();
}
