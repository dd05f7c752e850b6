//! Callers have names and rights, over the real gRPC API: a caller beyond its rights gets
//! `PERMISSION_DENIED` naming the missing right, and nothing is issued, spent or changed for
//! the victim (on the in-memory store, on Redis and on a Redis Cluster); the refusals are
//! counted by caller and right; `CALLER_TOKEN_SHA256` callers keep every right; with a callers
//! file, a client certificate is a caller only when the file names it (by digest or SAN).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

use token_proto::revoke_token_request::Target;
use token_proto::token_service_client::TokenServiceClient;
use token_proto::{
    GenerateTokensRequest, IntrospectTokenRequest, RefreshTokensRequest, RevokeTokenRequest,
    TokenResponse,
};
use token_testkit::{RedisCluster, RedisServer};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use common::{Harness, authed, caller_digest, certificates, dpop, generate, proof_builder};

const WEB: &str = "web-caller-token";
const READER: &str = "reader-caller-token";
const SUPPORT: &str = "support-caller-token";
const PAYMENTS: &str = "https://payments.example";

/// The callers of these tests: `web` mints for client `web` and the default audience only;
/// `reader` may only introspect; `support` may revoke by subject, nothing else. The
/// `CALLER_TOKEN_SHA256` caller of `common` keeps every right.
fn callers_file() -> tempfile::NamedTempFile {
    let text = format!(
        r#"
[[caller]]
name = "web"
token_sha256 = "{web}"
rpcs = ["GenerateTokens", "RefreshTokens", "RevokeToken"]
client_ids = ["web"]
audiences = ["https://api.example"]

[[caller]]
name = "reader"
token_sha256 = "{reader}"
rpcs = ["IntrospectToken"]

[[caller]]
name = "support"
token_sha256 = "{support}"
rpcs = ["RevokeToken"]
revoke_by_subject = true
"#,
        web = caller_digest(WEB),
        reader = caller_digest(READER),
        support = caller_digest(SUPPORT),
    );
    common::temp_file(text.as_bytes())
}

/// `msg` with the bearer token `token`.
fn as_caller<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Asserts a `PERMISSION_DENIED` that names `caller` and `right`.
fn assert_denied(result: Result<impl std::fmt::Debug, Status>, caller: &str, right: &str) {
    let e = result.expect_err("the request must be refused");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let want = format!("caller \"{caller}\" lacks the right {right}");
    assert_eq!(e.message(), want, "{e:?}");
}

fn refresh(token: &str, client_id: &str) -> RefreshTokensRequest {
    RefreshTokensRequest {
        refresh_token: token.into(),
        client_id: client_id.into(),
        ..Default::default()
    }
}

/// The victim's family still rotates for its own client (through the all-rights caller).
async fn still_rotates(h: &mut Harness, tokens: &TokenResponse, client_id: &str) -> TokenResponse {
    h.client
        .refresh_tokens(authed(refresh(&tokens.refresh_token, client_id)))
        .await
        .expect("the victim's family is untouched")
        .into_inner()
}

/// How many families `subject` has, counted by revoking them (the all-rights caller).
async fn families_of(h: &mut Harness, subject: &str) -> u32 {
    h.client
        .revoke_token(authed(RevokeTokenRequest {
            target: Some(Target::Subject(subject.into())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .families_revoked
}

/// Every right, refused and allowed, on the store of `h`.
async fn rights_hold(h: &mut Harness) {
    // GenerateTokens for another client: refused before the proof is spent, nothing issued.
    let builder = proof_builder();
    let proof = dpop(&builder, None);
    let other_client = GenerateTokensRequest {
        client_id: "mobile".into(),
        dpop: Some(proof.clone()),
        ..generate("rights-victim")
    };
    assert_denied(
        h.client
            .generate_tokens(as_caller(WEB, other_client.clone()))
            .await,
        "web",
        "client_ids: \"mobile\"",
    );
    // The same proof still works: its jti was not spent by the refused request.
    let mobile = h.generate_ok(other_client).await;
    assert_eq!(mobile.token_type, "DPoP");
    assert_eq!(families_of(h, "rights-victim").await, 1, "one family only");

    // Another audience than its own: refused, nothing issued.
    let payments = GenerateTokensRequest {
        audience: vec!["https://api.example".into(), PAYMENTS.into()],
        ..generate("rights-audience")
    };
    assert_denied(
        h.client
            .generate_tokens(as_caller(WEB, payments.clone()))
            .await,
        "web",
        &format!("audiences: \"{PAYMENTS}\""),
    );
    assert_eq!(families_of(h, "rights-audience").await, 0);

    // Within its rights: issued, refreshed, revoked by its own token.
    let own = h
        .client
        .generate_tokens(as_caller(WEB, generate("rights-own")))
        .await
        .unwrap()
        .into_inner();
    let own = h
        .client
        .refresh_tokens(as_caller(WEB, refresh(&own.refresh_token, "web")))
        .await
        .unwrap()
        .into_inner();

    // Refreshing another client's family: refused, the family untouched.
    // (the subject also has a family of client `web`, revoked with it further down)
    h.generate_ok(generate("rights-refresh-victim")).await;
    let victim = GenerateTokensRequest {
        client_id: "mobile".into(),
        ..generate("rights-refresh-victim")
    };
    let victim = h.generate_ok(victim).await;
    assert_denied(
        h.client
            .refresh_tokens(as_caller(WEB, refresh(&victim.refresh_token, "mobile")))
            .await,
        "web",
        "client_ids: \"mobile\"",
    );
    let victim = still_rotates(h, &victim, "mobile").await;

    // Refreshing a grant of its own client for an audience it may not mint: refused (the
    // stored audience is checked), the family untouched.
    let wide = h
        .generate_ok(GenerateTokensRequest {
            audience: vec![PAYMENTS.into()],
            ..generate("rights-wide")
        })
        .await;
    assert_denied(
        h.client
            .refresh_tokens(as_caller(WEB, refresh(&wide.refresh_token, "web")))
            .await,
        "web",
        &format!("audiences: \"{PAYMENTS}\""),
    );
    let narrowed = RefreshTokensRequest {
        audience: vec![PAYMENTS.into()],
        ..refresh(&wide.refresh_token, "web")
    };
    assert_denied(
        h.client.refresh_tokens(as_caller(WEB, narrowed)).await,
        "web",
        &format!("audiences: \"{PAYMENTS}\""),
    );
    still_rotates(h, &wide, "web").await;

    // Operator revocations without the right: refused, the victim's family still works.
    assert_denied(
        h.client
            .revoke_token(as_caller(
                WEB,
                RevokeTokenRequest {
                    target: Some(Target::Subject("rights-refresh-victim".into())),
                    ..Default::default()
                },
            ))
            .await,
        "web",
        "revoke_by_subject",
    );
    assert_denied(
        h.client
            .revoke_token(as_caller(
                WEB,
                RevokeTokenRequest {
                    target: Some(Target::FamilyId(victim.family_id.clone())),
                    ..Default::default()
                },
            ))
            .await,
        "web",
        "revoke_by_family",
    );
    // By refresh token for another client: refused before the token is looked at.
    assert_denied(
        h.client
            .revoke_token(as_caller(
                WEB,
                RevokeTokenRequest {
                    target: Some(Target::RefreshToken(victim.refresh_token.clone())),
                    client_id: "mobile".into(),
                    ..Default::default()
                },
            ))
            .await,
        "web",
        "client_ids: \"mobile\"",
    );
    let victim = still_rotates(h, &victim, "mobile").await;

    // RPCs outside `rpcs`: refused before the request is read.
    assert_denied(
        h.client
            .introspect_token(as_caller(
                WEB,
                IntrospectTokenRequest {
                    token: own.access_token.clone(),
                },
            ))
            .await,
        "web",
        "rpcs: IntrospectToken",
    );
    assert_denied(
        h.client
            .generate_tokens(as_caller(READER, generate("rights-reader")))
            .await,
        "reader",
        "rpcs: GenerateTokens",
    );
    assert_eq!(families_of(h, "rights-reader").await, 0);
    let active = h
        .client
        .introspect_token(as_caller(
            READER,
            IntrospectTokenRequest {
                token: own.access_token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);

    // The support caller revokes by subject, and may do nothing else.
    let revoked = h
        .client
        .revoke_token(as_caller(
            SUPPORT,
            RevokeTokenRequest {
                target: Some(Target::Subject("rights-refresh-victim".into())),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.families_revoked, 2);
    let gone = h
        .client
        .refresh_tokens(authed(refresh(&victim.refresh_token, "mobile")))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated);
    assert_denied(
        h.client
            .revoke_token(as_caller(
                SUPPORT,
                RevokeTokenRequest {
                    target: Some(Target::FamilyId(own.family_id.clone())),
                    ..Default::default()
                },
            ))
            .await,
        "support",
        "revoke_by_family",
    );

    // The refusals are counted by caller and right (names only, never a credential).
    let metrics = common::http_get(h.server.admin_addr, "/metrics", "").await;
    for (caller, right) in [
        ("web", "client_ids"),
        ("web", "audiences"),
        ("web", "revoke_by_subject"),
        ("web", "revoke_by_family"),
        ("web", "rpcs"),
        ("reader", "rpcs"),
        ("support", "revoke_by_family"),
    ] {
        let series =
            format!("token_service_caller_denied_total{{caller=\"{caller}\",right=\"{right}\"}}");
        assert!(metrics.contains(&series), "{series} missing");
    }
    for secret in [WEB, READER, SUPPORT] {
        assert!(!metrics.contains(secret));
        assert!(!metrics.contains(&caller_digest(secret)));
    }
}

async fn harness_with_callers(extra: &[(&str, &str)]) -> (Harness, tempfile::NamedTempFile) {
    let file = callers_file();
    let path = file.path().to_string_lossy().into_owned();
    let mut vars = vec![("CALLERS_FILE", path.as_str())];
    vars.extend_from_slice(extra);
    (common::harness(&vars).await, file)
}

/// [`rights_hold`] on a server with the callers file and `extra` variables.
async fn rights_hold_with(extra: &[(&str, &str)]) {
    let (mut h, _file) = harness_with_callers(extra).await;
    rights_hold(&mut h).await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn callers_have_rights_in_memory() {
    rights_hold_with(&[]).await;
}

#[tokio::test]
async fn callers_have_rights_on_redis() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    rights_hold_with(&common::on_redis(&redis.url(), &[])).await;
}

#[tokio::test]
async fn callers_have_rights_on_a_redis_cluster() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    rights_hold_with(&common::on_redis(&cluster.url(), &[])).await;
}

// ---- client certificates ---------------------------------------------------------------------

/// The hex SHA-256 of a PEM certificate's DER.
fn certificate_digest(dir: &std::path::Path, pem: &str) -> String {
    let der = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-in", pem, "-outform", "der"])
        .output()
        .unwrap()
        .stdout;
    use sha2::Digest as _;
    sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn client_certificates_are_callers_only_when_the_file_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates(
        dir,
        &[
            (
                "spiffe",
                "extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/web/sa/frontend",
            ),
            ("pinned", "extendedKeyUsage=clientAuth"),
            (
                "stranger",
                "extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/other",
            ),
        ],
    );
    let callers = format!(
        r#"
[[caller]]
name = "frontend"
mtls_san = "spiffe://example.org/ns/web/sa/frontend"
client_ids = ["web"]
audiences = ["*"]

[[caller]]
name = "pinned"
mtls_cert_sha256 = "{}"
rpcs = ["IntrospectToken"]
"#,
        certificate_digest(dir, "pinned.pem")
    );
    std::fs::write(dir.join("callers.toml"), callers).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let server = token_server::start(common::config(&[
        ("TLS_CERT_FILE", &path("server.pem")),
        ("TLS_KEY_FILE", &path("server.key")),
        ("TLS_CLIENT_CA_FILE", &path("ca.pem")),
        ("CALLERS_FILE", &path("callers.toml")),
    ]))
    .await
    .unwrap();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let client = |name: &str| {
        let url = format!("https://localhost:{}", server.grpc_addr.port());
        let tls = tonic::transport::ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")))
            .identity(tonic::transport::Identity::from_pem(
                read(&format!("{name}.pem")),
                read(&format!("{name}.key")),
            ));
        async move {
            let channel = Channel::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap();
            TokenServiceClient::new(channel)
        }
    };

    // By its SPIFFE id: the caller `frontend`, with its rights.
    let mut frontend = client("spiffe").await;
    let issued = frontend
        .generate_tokens(generate("mtls-frontend"))
        .await
        .unwrap()
        .into_inner();
    assert_denied(
        frontend
            .generate_tokens(GenerateTokensRequest {
                client_id: "mobile".into(),
                ..generate("mtls-frontend")
            })
            .await,
        "frontend",
        "client_ids: \"mobile\"",
    );

    // By its digest: the caller `pinned`, which may only introspect.
    let mut pinned = client("pinned").await;
    let active = pinned
        .introspect_token(IntrospectTokenRequest {
            token: issued.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(active.active);
    assert_denied(
        pinned.generate_tokens(generate("mtls-pinned")).await,
        "pinned",
        "rpcs: GenerateTokens",
    );

    // A certificate the CA signed but the file does not name: refused, even with a valid
    // caller token beside it.
    let mut stranger = client("stranger").await;
    let e = stranger
        .generate_tokens(authed(generate("mtls-stranger")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("matches no caller"), "{e:?}");
    server.shutdown().await.unwrap();
}
