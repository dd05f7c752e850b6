//! token-kms against a real KMS API: the `moto` server (a local AWS KMS emulator from PyPI),
//! driven through the real `aws-sdk-kms` client. No mocks: every call is HTTP to moto.
//!
//! The fixture (`token_testkit::moto`) starts `moto_server` from the Python virtual environment
//! named by `TOKEN_SERVICE_VENV`, or else `<target dir>/venv`, and creates the environment
//! there first when it is missing; when that fails the tests fail and say why.
//!
//! What moto cannot check is tested in the crate's unit tests against the KMS specification
//! instead (see `src/kms/signer.rs`): `MessageType=DIGEST` (moto hashes the digest again) and
//! RSASSA-PSS (moto uses the maximum salt length, JWS PS256 needs 32 bytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers: clippy.toml allows unwrap and expect in #[test] functions only; \
              the child test process reports on stdout"
)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use token_jwt::{
    AccessTokenBuilder, Algorithm, AsyncJwsSigner, JwkSet, JwsEncoder, KeySet, Policy,
    RustCryptoProvider,
};
use token_kms::{
    BreakerConfig, BreakerState, Error, KeyRing, KmsClient, KmsConfig, KmsSigner, Schedule,
    WrappedKey, WrappedKeyBlob, wrap_new_key,
};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://api.example";

use token_testkit::Venv;
use token_testkit::moto::{Moto, admin, create_key, create_p256_signing_key};

/// The library's client: dummy credentials and region in the SDK config (not the process
/// environment), short timeouts, and a breaker that opens after 3 failures for 2 s.
fn config(url: &str) -> KmsConfig {
    KmsConfig::builder()
        .endpoint_url(url)
        .region("us-east-1")
        .static_credentials("test", "test", None)
        .connect_timeout(Duration::from_millis(500))
        .attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(3))
        .max_attempts(2)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .breaker(BreakerConfig::new(3, Duration::from_secs(2)))
        .build()
}

async fn client(url: &str) -> KmsClient {
    KmsClient::connect(&config(url)).await.unwrap()
}

#[allow(
    clippy::disallowed_methods,
    reason = "PyJWT checks exp and iat against the real clock, so the tokens must use it too"
)]
fn wall_clock() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

async fn mint(signer: &dyn AsyncJwsSigner, sub: &str, now: i64) -> token_jwt::Result<String> {
    let claims = AccessTokenBuilder::new(ISSUER, 900)
        .subject(sub)
        .audience([AUDIENCE])
        .client_id("client-1")
        .build(now)
        .unwrap();
    JwsEncoder::for_signer(signer, "at+jwt")
        .encode_async(&claims, signer)
        .await
}

fn policy() -> Policy {
    Policy::builder().issuer(ISSUER).audience(AUDIENCE).build()
}

/// Verifies tokens with PyJWT (an independent implementation) against a JWK Set. Returns, per
/// token, `ok:<sub>` or `error:<exception class>`.
fn pyjwt_verify(jwks_json: &str, tokens: &[String]) -> Vec<String> {
    const SCRIPT: &str = r#"
import json, sys
import jwt
data = json.load(sys.stdin)
jwks = jwt.PyJWKSet.from_dict(data["jwks"])
out = []
for token in data["tokens"]:
    try:
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwks[kid]
        claims = jwt.decode(token, key=key.key, algorithms=[key.algorithm_name],
                            audience=data["aud"], issuer=data["iss"],
                            options={"require": ["exp", "iat", "sub"]})
        out.append("ok:" + claims["sub"])
    except Exception as e:
        out.append("error:" + type(e).__name__)
print(json.dumps(out))
"#;
    let input = serde_json::json!({
        "jwks": serde_json::from_str::<serde_json::Value>(jwks_json).unwrap(),
        "tokens": tokens,
        "aud": AUDIENCE,
        "iss": ISSUER,
    });
    let mut child = Command::new(Venv::ready().unwrap().python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kms_error(err: &token_jwt::Error) -> &Error {
    let source = std::error::Error::source(err).expect("a KMS signing error has a source");
    source.downcast_ref::<Error>().expect("token_kms::Error")
}

// ---- signing -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_sign_tokens_that_token_jwt_and_pyjwt_verify() {
    let moto = Moto::start().unwrap();
    let admin = admin(&moto.url());
    let p256 = create_key(&admin, KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let p384 = create_key(&admin, KeySpec::EccNistP384, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let rsa = create_key(&admin, KeySpec::Rsa2048, KeyUsageType::SignVerify)
        .await
        .unwrap();
    // An alias works like a key id.
    admin
        .create_alias()
        .alias_name("alias/token-signing")
        .target_key_id(&p256)
        .send()
        .await
        .unwrap();

    let client = client(&moto.url()).await;
    let es256 = KmsSigner::connect(&client, "alias/token-signing")
        .await
        .unwrap();
    let es384 = KmsSigner::connect(&client, &p384).await.unwrap();
    let rs256 = KmsSigner::connect(&client, &rsa).await.unwrap();
    assert_eq!(AsyncJwsSigner::algorithm(&es256), Algorithm::ES256);
    assert_eq!(AsyncJwsSigner::algorithm(&es384), Algorithm::ES384);
    assert_eq!(AsyncJwsSigner::algorithm(&rs256), Algorithm::RS256);
    // kid = RFC 7638 thumbprint of the public key.
    for s in [&es256, &es384, &rs256] {
        assert_eq!(s.key_id(), s.public_jwk().thumbprint());
        assert!(!format!("{s:?}").is_empty());
    }
    assert!(es256.kms_key_arn().ends_with(&p256) || es256.kms_key_arn() == p256);

    // The three keys in a key ring; the JWK Set is what a JWKS endpoint would publish.
    let ring = KeyRing::new(Schedule::default(), Arc::new(RustCryptoProvider::new())).unwrap();
    let now = wall_clock();
    let signers: Vec<Arc<dyn AsyncJwsSigner>> =
        vec![Arc::new(es256), Arc::new(es384), Arc::new(rs256)];
    for s in &signers {
        ring.add_retiring(Arc::clone(s), now).unwrap();
    }
    let jwks_json = JwkSet::new(ring.published()).to_json();

    let mut tokens = Vec::new();
    for (i, s) in signers.iter().enumerate() {
        tokens.push(mint(s.as_ref(), &format!("user-{i}"), now).await.unwrap());
    }
    // RS256 signatures are as long as the modulus.
    let rs_sig = tokens[2].rsplit('.').next().unwrap();
    assert_eq!(token_jwt::base64url::decode(rs_sig).unwrap().len(), 256);

    // token-jwt, from the published JWK Set as a verifier would parse it.
    let keys = KeySet::from_jwks(
        &JwkSet::from_json(jwks_json.as_bytes()).unwrap(),
        &RustCryptoProvider::new(),
    )
    .unwrap();
    for (i, t) in tokens.iter().enumerate() {
        let verified = policy().verify(t, &keys, now + 1).unwrap();
        assert_eq!(
            verified.claims().sub.as_deref(),
            Some(format!("user-{i}").as_str())
        );
        // The ring resolves its own tokens too.
        policy().verify(t, &ring, now + 1).unwrap();
    }

    // PyJWT, an independent implementation, from the same JWK Set; one tampered token too.
    let mut tampered = tokens[0].clone();
    let flip = tampered.len() - 5;
    let c = if &tampered[flip..=flip] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(flip..=flip, c);
    let mut all = tokens.clone();
    all.push(tampered);
    assert_eq!(
        pyjwt_verify(&jwks_json, &all),
        vec![
            "ok:user-0",
            "ok:user-1",
            "ok:user-2",
            "error:InvalidSignatureError"
        ]
    );
}

/// The key ARN of a key id, from the emulator (`create_key` answers bare key ids).
async fn key_arn(admin: &aws_sdk_kms::Client, key_id: &str) -> String {
    let out = admin.describe_key().key_id(key_id).send().await.unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_owned()
}

/// An alias re-pointed to another KMS key while a signer runs: the signer keeps signing with
/// the key it resolved at start-up (its tokens keep verifying with its own JWK), while
/// `resolve_key` reports the new target, and a signer connected afterwards has the new key's
/// `kid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_pointed_alias_does_not_change_a_running_signers_key() {
    const ALIAS: &str = "alias/test-rotating";
    let moto = Moto::start().unwrap();
    let admin = admin(&moto.url());
    let key_a = create_key(&admin, KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let key_b = create_key(&admin, KeySpec::EccNistP256, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let (arn_a, arn_b) = (key_arn(&admin, &key_a).await, key_arn(&admin, &key_b).await);
    admin
        .create_alias()
        .alias_name(ALIAS)
        .target_key_id(&key_a)
        .send()
        .await
        .unwrap();

    let client = client(&moto.url()).await;
    let provider = RustCryptoProvider::new();
    // Each key's JWK, from signers connected to the keys themselves.
    let direct_a = KmsSigner::connect(&client, &key_a).await.unwrap();
    let direct_b = KmsSigner::connect(&client, &key_b).await.unwrap();
    assert_ne!(direct_a.key_id(), direct_b.key_id());
    let keys_a =
        KeySet::from_jwks(&JwkSet::new(vec![direct_a.public_jwk().clone()]), &provider).unwrap();
    let keys_b =
        KeySet::from_jwks(&JwkSet::new(vec![direct_b.public_jwk().clone()]), &provider).unwrap();
    let now = 1_700_000_000;

    let signer = KmsSigner::connect(&client, ALIAS).await.unwrap();
    assert_eq!(signer.kms_key_id(), ALIAS);
    assert!(signer.signs_with(&arn_a) && signer.signs_with(&key_a));
    assert!(!signer.signs_with(&arn_b));
    assert_eq!(signer.key_id(), direct_a.key_id());
    let before = mint(&signer, "before", now).await.unwrap();
    policy().verify(&before, &keys_a, now).unwrap();
    assert_eq!(client.resolve_key(ALIAS).await.unwrap(), arn_a);
    // Any reference to a key resolves to its ARN.
    assert_eq!(client.resolve_key(&key_a).await.unwrap(), arn_a);
    assert_eq!(client.resolve_key(&arn_b).await.unwrap(), arn_b);

    admin
        .update_alias()
        .alias_name(ALIAS)
        .target_key_id(&key_b)
        .send()
        .await
        .unwrap();

    // The running signer still signs with A: its tokens verify with its own (A's) JWK.
    let after = mint(&signer, "after", now).await.unwrap();
    let own =
        KeySet::from_jwks(&JwkSet::new(vec![signer.public_jwk().clone()]), &provider).unwrap();
    for t in [&before, &after] {
        policy().verify(t, &own, now).unwrap();
        policy().verify(t, &keys_a, now).unwrap();
    }
    assert_eq!(signer.kms_key_id(), ALIAS);
    assert!(signer.signs_with(signer.kms_key_arn()) && signer.signs_with(&arn_a));

    // The alias now names B: what a poller sees, and what a new signer gets.
    let resolved = client.resolve_key(ALIAS).await.unwrap();
    assert_eq!(resolved, arn_b);
    assert!(!signer.signs_with(&resolved));
    let renewed = KmsSigner::connect(&client, ALIAS).await.unwrap();
    assert_eq!(renewed.key_id(), direct_b.key_id());
    assert!(renewed.signs_with(&resolved));
    let token_b = mint(&renewed, "renewed", now).await.unwrap();
    policy().verify(&token_b, &keys_b, now).unwrap();
    assert!(policy().verify(&token_b, &keys_a, now).is_err());

    // An unknown alias is classified like the other calls.
    let err = client
        .resolve_key("alias/does-not-exist")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyNotFound { ref key_id } if key_id == "alias/does-not-exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_unusable_keys_with_clear_errors() {
    let moto = Moto::start().unwrap();
    let admin = admin(&moto.url());
    let client = client(&moto.url()).await;

    let missing = KmsSigner::connect(&client, "alias/does-not-exist")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::KeyNotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("alias/does-not-exist"));

    let symmetric = create_key(
        &admin,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
    .unwrap();
    let err = KmsSigner::connect(&client, &symmetric).await.unwrap_err();
    // moto refuses GetPublicKey on a symmetric key, as KMS does; either way start-up fails
    // with the key named or its usage stated.
    assert!(
        matches!(
            err,
            Error::Kms { .. } | Error::WrongKeyUsage(_) | Error::UnsupportedKeySpec(_)
        ),
        "{err}"
    );

    let k256 = create_key(&admin, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let err = KmsSigner::connect(&client, &k256).await.unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedKeySpec(ref s) if s == "ECC_SECG_P256K1"),
        "{err}"
    );

    let p384 = create_key(&admin, KeySpec::EccNistP384, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let err = KmsSigner::builder(&client, &p384)
        .algorithm(Algorithm::ES256)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedKeySpec(_)), "{err}");

    // PS256: moto signs RSASSA_PSS_SHA_256 with the maximum salt length, not the 32 bytes of
    // JWS PS256 (which real KMS uses). The start-up self-test catches exactly this kind of
    // signer: it refuses to start rather than mint tokens no verifier accepts. (PS256 itself is
    // tested against the specification in the unit tests.)
    let rsa = create_key(&admin, KeySpec::Rsa2048, KeyUsageType::SignVerify)
        .await
        .unwrap();
    let err = KmsSigner::builder(&client, &rsa)
        .algorithm(Algorithm::PS256)
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SelfTestFailed {
                alg: Algorithm::PS256
            }
        ),
        "{err}"
    );
}

/// `AWS_ENDPOINT_URL_KMS`, `AWS_REGION` and credentials from the environment, read by the AWS
/// SDK's standard chain: checked in a child process (the test binary re-run with only
/// [`env_chain_child`]) so the test process's own environment stays untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_region_and_credentials_from_the_environment() {
    let moto = Moto::start().unwrap();
    let key = create_p256_signing_key(&moto.url()).await.unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_chain_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TOKEN_KMS_TEST_CHILD_KEY", &key)
        .env("AWS_ENDPOINT_URL_KMS", moto.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("env-chain-child: signed"), "{stdout}");
}

/// The child half of [`endpoint_region_and_credentials_from_the_environment`]; does nothing
/// unless that test started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_chain_child() {
    let Ok(key) = std::env::var("TOKEN_KMS_TEST_CHILD_KEY") else {
        return;
    };
    // No endpoint, region or credentials in the config: all from the environment.
    let client = KmsClient::connect(&KmsConfig::default()).await.unwrap();
    assert_eq!(client.region(), "us-east-1");
    let signer = KmsSigner::connect(&client, key).await.unwrap();
    mint(&signer, "env", 1_700_000_000).await.unwrap();
    println!("env-chain-child: signed");
}

// ---- envelope mode -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_keys_survive_a_restart_and_refuse_the_wrong_key_or_tampering() {
    let moto = Moto::start().unwrap();
    let admin = admin(&moto.url());
    let wrapping = create_key(
        &admin,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
    .unwrap();
    let other = create_key(
        &admin,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
    .unwrap();
    let provider = RustCryptoProvider::new();

    let mut stored = Vec::new();
    {
        // "Before the restart": wrap keys and keep only the blob files' text.
        let client = client(&moto.url()).await;
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let blob = wrap_new_key(&client, &wrapping, alg).await.unwrap();
            assert_eq!(blob.algorithm(), alg);
            let json = blob.to_json();
            assert!(!json.contains("PRIVATE"), "only ciphertext at rest");
            stored.push((alg, json));
        }
        assert!(matches!(
            wrap_new_key(&client, &wrapping, Algorithm::RS256).await,
            Err(Error::Jwt(_))
        ));
    }

    // "After the restart": new client, blobs read back, unwrapped, used.
    let client = client(&moto.url()).await;
    let now = 1_700_000_000;
    for (alg, json) in &stored {
        let blob = WrappedKeyBlob::from_json(json.as_bytes()).unwrap();
        let key = WrappedKey::unwrap(&client, &blob, &wrapping, &provider)
            .await
            .unwrap();
        assert_eq!(token_jwt::JwsSigner::algorithm(&key), *alg);
        assert_eq!(token_jwt::JwsSigner::key_id(&key), blob.key_id());
        let dbg = format!("{key:?}");
        assert!(dbg.contains(blob.key_id()) && !dbg.contains("PRIVATE"));
        let token = mint(&key, "wrapped", now).await.unwrap();
        let keys = KeySet::from_jwks(
            &JwkSet::new(vec![token_jwt::JwsSigner::public_jwk(&key).clone()]),
            &provider,
        )
        .unwrap();
        policy().verify(&token, &keys, now).unwrap();
    }

    let (_, es256_json) = &stored[0];
    let blob = WrappedKeyBlob::from_json(es256_json.as_bytes()).unwrap();

    // The wrong KMS key.
    let err = WrappedKey::unwrap(&client, &blob, &other, &provider)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongWrappingKey { .. }), "{err}");
    assert!(err.to_string().contains(&other));

    // A changed kid or alg: the encryption context no longer matches, KMS refuses.
    let (_, es384_json) = &stored[1];
    let es384 = WrappedKeyBlob::from_json(es384_json.as_bytes()).unwrap();
    let swapped_kid = es256_json.replace(blob.key_id(), es384.key_id());
    let swapped_alg = es256_json.replace("\"ES256\"", "\"ES384\"");
    for tampered in [swapped_kid, swapped_alg] {
        let t = WrappedKeyBlob::from_json(tampered.as_bytes()).unwrap();
        let err = WrappedKey::unwrap(&client, &t, &wrapping, &provider)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TamperedBlob(_)), "{err}");
    }

    // A flipped ciphertext byte: the KMS AEAD tag fails.
    let value: serde_json::Value = serde_json::from_str(es256_json).unwrap();
    let ct = value["ciphertext"].as_str().unwrap();
    use base64::Engine as _;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(ct)
        .unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let flipped = es256_json.replace(ct, &base64::engine::general_purpose::STANDARD.encode(raw));
    let t = WrappedKeyBlob::from_json(flipped.as_bytes()).unwrap();
    let err = WrappedKey::unwrap(&client, &t, &wrapping, &provider)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TamperedBlob(_)), "{err}");

    // Not a blob at all.
    assert!(matches!(
        WrappedKeyBlob::from_json(b"{\"format\":\"x\"}"),
        Err(Error::InvalidBlob(_))
    ));
}

// ---- KMS going away ----------------------------------------------------------------------------

/// Signs until the breaker opens; returns the errors seen.
async fn sign_until_open(signer: &KmsSigner) -> Vec<String> {
    let mut reasons = Vec::new();
    for _ in 0..10 {
        let err = mint(signer, "down", 1_700_000_000).await.unwrap_err();
        let e = kms_error(&err);
        reasons.push(e.reason().to_owned());
        if matches!(e, Error::CircuitOpen { .. }) {
            break;
        }
    }
    reasons
}

/// moto killed mid-run and a new moto started on the same port.
///
/// What this verifies: calls to a dead endpoint fail with "unreachable" (connection refused,
/// after the configured retries); after 3 of them the breaker opens and calls fail at once
/// (far below the 3 s operation timeout) with an error saying so; after the 2 s cool-down one
/// probe goes through to the new moto, which answers, so the breaker closes.
///
/// What it cannot verify: signing again with the same key. moto keeps keys in memory only, so
/// the new process does not know the key, and KMS key ids cannot be chosen at creation. The
/// probe therefore gets a clear "KMS key not found" error, and signing keeps failing with it
/// (fast, because KMS answers). Recovery with the same key is verified in
/// [`breaker_recovers_when_the_network_path_to_kms_returns`], which cuts the connection to a
/// moto that keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_killed_mid_run_fails_fast_then_probes_the_new_kms() {
    let mut moto = Moto::start().unwrap();
    let port = moto.port();
    let key = create_p256_signing_key(&moto.url()).await.unwrap();
    let client = client(&moto.url()).await;
    let signer = KmsSigner::connect(&client, &key).await.unwrap();
    mint(&signer, "up", 1_700_000_000).await.unwrap();
    assert_eq!(signer.breaker_state(), BreakerState::Closed);

    moto.kill();
    let err = mint(&signer, "down", 1_700_000_000).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("signing failed: KMS Sign failed: KMS is unreachable"),
        "{err}"
    );
    let reasons = sign_until_open(&signer).await;
    assert_eq!(
        reasons,
        vec!["unreachable", "unreachable", "circuit_open"],
        "three failed calls open the breaker"
    );
    assert_eq!(signer.breaker_state(), BreakerState::Open);

    // Open: fails fast, with a clear message.
    let start = Instant::now();
    let err = mint(&signer, "down", 1_700_000_000).await.unwrap_err();
    let fail_fast = start.elapsed();
    assert!(
        fail_fast < Duration::from_millis(50),
        "fail-fast took {fail_fast:?} (operation timeout 3 s)"
    );
    assert!(err.to_string().contains("circuit breaker is open"), "{err}");
    assert!(matches!(
        kms_error(&err),
        Error::CircuitOpen { failures: 3, .. }
    ));

    // A new KMS on the same port; after the cool-down the breaker is half-open.
    let moto2 = Moto::start_on(port).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(signer.breaker_state(), BreakerState::HalfOpen);
    // The probe reaches the new moto, which does not know the key (in-memory state).
    let err = mint(&signer, "probe", 1_700_000_000).await.unwrap_err();
    assert!(
        matches!(kms_error(&err), Error::KeyNotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("KMS key not found"), "{err}");
    // KMS answered, so the breaker is closed again: errors now come from KMS, not the breaker.
    assert_eq!(signer.breaker_state(), BreakerState::Closed);
    let err = mint(&signer, "again", 1_700_000_000).await.unwrap_err();
    assert!(
        matches!(kms_error(&err), Error::KeyNotFound { .. }),
        "{err}"
    );
    drop(moto2);
}

/// A TCP forwarder on a fixed port: the network path between the signer and KMS.
struct Path {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Path {
    async fn open(port: u16, target: u16) -> Path {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task drops them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Path { port, task }
    }

    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The network path to KMS cut and restored (the moto process keeps running, with its keys):
/// fail fast while cut, then, after the cool-down, a probe succeeds, the breaker closes, and
/// signing resumes with the same key; tokens from before and after verify with the same kid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_recovers_when_the_network_path_to_kms_returns() {
    let moto = Moto::start().unwrap();
    let key = create_p256_signing_key(&moto.url()).await.unwrap();
    let path = Path::open(0, moto.port()).await;
    let port = path.port;
    let client = client(&format!("http://127.0.0.1:{port}")).await;
    let signer = KmsSigner::connect(&client, &key).await.unwrap();
    let keys = KeySet::from_jwks(
        &JwkSet::new(vec![signer.public_jwk().clone()]),
        &RustCryptoProvider::new(),
    )
    .unwrap();
    let now = 1_700_000_000;
    let before = mint(&signer, "before", now).await.unwrap();

    path.cut().await;
    let reasons = sign_until_open(&signer).await;
    assert_eq!(reasons.last().map(String::as_str), Some("circuit_open"));
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(signer.breaker_state(), BreakerState::Open);

    // Restored before the cool-down ends: still failing fast until then (no call made).
    let path = Path::open(port, moto.port()).await;
    let err = mint(&signer, "early", now).await.unwrap_err();
    assert!(matches!(kms_error(&err), Error::CircuitOpen { .. }));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(signer.breaker_state(), BreakerState::HalfOpen);
    let after = mint(&signer, "after", now).await.unwrap();
    assert_eq!(signer.breaker_state(), BreakerState::Closed);
    for t in [&before, &after] {
        policy().verify(t, &keys, now).unwrap();
    }
    path.cut().await;
}
