//! Managed keys across a fleet (issue: keys that rotate without a failed verification): real
//! `token-service` processes on one real Redis, rotating every few seconds under continuous
//! `GenerateTokens` load, checked by verifiers that cache each instance's JWK Set for its
//! `Cache-Control: max-age` and never refetch early; restarts, a Redis outage in the middle of
//! a rotation, a wrong or tampered key-encryption key, and the operator commands.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use token_jwt::{JwkSet, KeySet, Policy, all_providers};
use token_proto::token_service_client::TokenServiceClient;
use token_testkit::RedisServer;
use token_testkit::port::free_port;
use tonic::transport::Channel;

mod common;
use common::{
    CALLER, Calls as _, ISSUER, KEK, PEPPER, binary, binary_command, caller_digest,
    connect_when_up, generate, http_get, now,
};

/// `JWKS_MAX_AGE` of the fleet under test, in seconds: the propagation margin is then
/// 2 × 1 + 1 = 3 s, so a new key is published 5 s before it signs.
const MAX_AGE: u64 = 2;
/// `KEY_ROTATION_PERIOD`: a new key signs every 6 s.
const PERIOD: u64 = 6;

/// A `token-service` process with managed keys on the Redis at `redis`.
struct Instance {
    child: tokio::process::Child,
    port: u16,
    admin: u16,
    client: TokenServiceClient<Channel>,
}

fn fleet_command(redis: &str, kek: &str, port: u16, admin: u16) -> tokio::process::Command {
    let mut cmd = binary_command(port, admin);
    cmd.env("REDIS_URL", redis)
        .env("REFRESH_TOKEN_PEPPER", PEPPER)
        .env("KEY_ENCRYPTION_KEY", kek)
        .env("KEY_ROTATION_PERIOD", PERIOD.to_string())
        .env("JWKS_MAX_AGE", MAX_AGE.to_string())
        .env("ISSUER", ISSUER)
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .env("CALLER_TOKEN_SHA256", caller_digest(CALLER))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

async fn instance(redis: &str) -> Instance {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let child = fleet_command(redis, KEK, port, admin).spawn().unwrap();
    let client = connect_when_up(port, "a fleet instance").await;
    Instance {
        child,
        port,
        admin,
        client,
    }
}

/// The JWK Set an instance serves: body, `ETag`, and the `max-age` it allows.
async fn jwks(admin: u16) -> (String, String, u64) {
    let reply = http_get(("127.0.0.1", admin), "/.well-known/jwks.json", "").await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} header in {head}"))
    };
    let max_age = header("cache-control")
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
        .unwrap();
    (body.to_owned(), header("etag"), max_age)
}

/// A resource server's view of one instance's JWK Set: fetched, then kept for exactly the
/// `max-age` the instance sent, never refetched early (not even on an unknown `kid`, which
/// token-jwks's fetcher would do: here an unknown `kid` is a failure).
struct CachedJwks {
    admin: u16,
    keys: KeySet,
    kids: BTreeSet<String>,
    until: Instant,
}

impl CachedJwks {
    async fn new(admin: u16) -> Self {
        let mut c = CachedJwks {
            admin,
            keys: KeySet::new(),
            kids: BTreeSet::new(),
            until: Instant::now(),
        };
        c.refresh().await;
        c
    }

    async fn refresh(&mut self) {
        let (body, _, max_age) = jwks(self.admin).await;
        let set = JwkSet::from_json(body.as_bytes()).unwrap();
        self.keys = KeySet::from_jwks(&set, &all_providers()[0]).unwrap();
        self.kids = set.keys.iter().filter_map(|k| k.kid.clone()).collect();
        self.until = Instant::now() + Duration::from_secs(max_age);
    }

    async fn current(&mut self) -> &Self {
        if Instant::now() >= self.until {
            self.refresh().await;
        }
        self
    }
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let json = token_jwt::base64url::decode(header).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISSUER)
        .audience("https://api.example")
        .build()
}

/// The generations in the store: `(generation, kid)` in order.
fn stored_generations(redis: &RedisServer) -> Vec<(u64, String)> {
    let reply = redis
        .command(&[
            "HGETALL",
            &format!("{}keys", token_store_redis::DEFAULT_KEY_PREFIX),
        ])
        .unwrap();
    let token_testkit::resp::Reply::Array(Some(items)) = reply else {
        panic!("HGETALL: {reply:?}")
    };
    let texts: Vec<String> = items.iter().map(|i| i.text().unwrap()).collect();
    let mut out: Vec<(u64, String)> = texts
        .chunks(2)
        .filter(|p| p[0].starts_with("gen:"))
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(&p[1]).unwrap();
            assert!(
                !p[1].contains("\"d\""),
                "a private JWK member in the store: {}",
                p[1]
            );
            (
                v["generation"].as_u64().unwrap(),
                v["kid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_rotate_under_load_and_every_token_verifies() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut a = instance(&url).await;
    let mut b = instance(&url).await;
    let tokens: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, client) in [a.client.clone(), b.client.clone()].into_iter().enumerate() {
        let (tokens, stop) = (tokens.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut client = client;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = client
                    .generate(generate(&format!("user-{i}-{n}")))
                    .await
                    .unwrap();
                tokens.lock().unwrap().push((i, t.access_token));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Resource servers: one caching A's JWK Set, one caching B's. Every token, from either
    // instance, must verify with either cache as it is at that moment.
    let mut caches = [
        CachedJwks::new(a.admin).await,
        CachedJwks::new(b.admin).await,
    ];
    let policy = policy();
    let (mut checked, mut failures, mut seen_kids) = (0usize, Vec::new(), BTreeSet::new());
    let started = Instant::now();
    // Four signing keys: three rotations.
    while seen_kids.len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "fewer than three rotations in 90 s: kids {seen_kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let batch: Vec<(usize, String)> = std::mem::take(&mut *tokens.lock().unwrap());
        for (from, token) in batch {
            let kid = kid_of(&token);
            seen_kids.insert(kid.clone());
            for cache in &mut caches {
                let cache = cache.current().await;
                checked += 1;
                if !cache.kids.contains(&kid) {
                    failures.push(format!(
                        "unknown kid {kid} (from instance {from}) at admin {}",
                        cache.admin
                    ));
                } else if let Err(e) = policy.verify(&token, &cache.keys, now()) {
                    failures.push(format!("{e} (from instance {from})"));
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} verifications failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(checked > 200, "only {checked} verifications");

    // Converged: the same bytes and ETag from both instances.
    let mut same = false;
    for _ in 0..40 {
        let (ja, ea, _) = jwks(a.admin).await;
        let (jb, eb, _) = jwks(b.admin).await;
        if ja == jb && ea == eb {
            same = true;
            // Every signing key seen is still published: every token still verifies.
            let set = JwkSet::from_json(ja.as_bytes()).unwrap();
            let published: BTreeSet<String> =
                set.keys.iter().filter_map(|k| k.kid.clone()).collect();
            assert!(
                seen_kids.is_subset(&published),
                "{seen_kids:?} ⊄ {published:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(same, "the two instances' JWK Sets did not converge");

    // One record per generation, consecutive, each kid once: no duplicate key was created.
    let generations = stored_generations(&redis);
    let numbers: Vec<u64> = generations.iter().map(|(g, _)| *g).collect();
    let expected: Vec<u64> = (numbers[0]..numbers[0] + numbers.len() as u64).collect();
    assert_eq!(numbers, expected);
    let kids: BTreeSet<&String> = generations.iter().map(|(_, k)| k).collect();
    assert_eq!(kids.len(), generations.len());
    for kid in &seen_kids {
        assert!(
            generations.iter().any(|(_, k)| k == kid),
            "{kid} signed but is not stored"
        );
    }
    let _ = (a.child.start_kill(), b.child.start_kill(), a.port, b.port);
    let _ = (&mut a.client, &mut b.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_rejoins_and_a_redis_outage_keeps_the_current_key() {
    let mut redis = RedisServer::start_persistent().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut a = instance(&url).await;
    let mut b = instance(&url).await;
    // Wait until a next key is pending (created, not yet signing).
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no pending key in 30 s"
        );
        if stored_generations(&redis).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stored_generations(&redis);
    // Restart B mid-rotation: it takes the pending key from the store and creates none.
    b.child.kill().await.unwrap();
    let mut b = instance(&url).await;
    let after = stored_generations(&redis);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the restart changed the stored keys"
    );
    assert!(
        after.len() <= before.len() + 1,
        "the restart created an extra key: {before:?} -> {after:?}"
    );
    let (ja, _, _) = jwks(a.admin).await;
    let (jb, _, _) = jwks(b.admin).await;
    assert_eq!(ja, jb, "the restarted instance publishes another JWK Set");

    // Redis stops: the instances keep their key set and the current key keeps signing (the
    // access token of a refused GenerateTokens is never seen, so read the JWK Set and the
    // signer through health: ready says the signer is ok).
    let kids_before: BTreeSet<String> = JwkSet::from_json(ja.as_bytes())
        .unwrap()
        .keys
        .iter()
        .filter_map(|k| k.kid.clone())
        .collect();
    redis.stop();
    tokio::time::sleep(Duration::from_secs(PERIOD + 2)).await;
    for admin in [a.admin, b.admin] {
        let (j, _, _) = jwks(admin).await;
        let kids: BTreeSet<String> = JwkSet::from_json(j.as_bytes())
            .unwrap()
            .keys
            .iter()
            .filter_map(|k| k.kid.clone())
            .collect();
        assert!(
            kids.is_subset(&kids_before),
            "a key appeared while the store was down: {kids_before:?} -> {kids:?}"
        );
        assert!(!kids.is_empty());
    }
    redis.restart().unwrap();
    // Back: rotation goes on (a new generation within a few periods) and tokens are issued.
    let started = Instant::now();
    let known = stored_generations(&redis).len();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no rotation after the outage"
        );
        if stored_generations(&redis).len() > known {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = a.client.generate(generate("after-outage")).await.unwrap();
    let set = JwkSet::from_json(jwks(a.admin).await.0.as_bytes()).unwrap();
    let keys = KeySet::from_jwks(&set, &all_providers()[0]).unwrap();
    policy().verify(&t.access_token, &keys, now()).unwrap();
    let _ = (a.child.start_kill(), b.child.start_kill());
}

/// Runs the binary with the fleet's settings and `kek`, expecting start-up to fail; stderr.
async fn refused_start(redis: &str, kek: &str) -> String {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        fleet_command(redis, kek, port, admin).output(),
    )
    .await
    .expect("start-up did not fail within 30 s")
    .unwrap();
    assert!(!out.status.success(), "start-up succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_encryption_key_or_a_tampered_key_is_refused() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut a = instance(&url).await;
    let first = a.client.generate(generate("alice")).await.unwrap();

    // Another KEY_ENCRYPTION_KEY: start-up refused, naming the variable; nothing changed.
    let wrong = "ab".repeat(32);
    let before = stored_generations(&redis);
    let err = refused_start(&url, &wrong).await;
    assert!(err.contains("KEY_ENCRYPTION_KEY"), "{err}");
    assert!(!err.contains(&wrong), "the key was printed: {err}");
    assert!(!err.contains(KEK), "the fleet's key was printed: {err}");
    assert_eq!(stored_generations(&redis), before);

    // Tamper with the signing key's wrapped private key: a new instance refuses that record
    // (neither publishes nor signs with it) and the fleet replaces it.
    let hash = format!("{}keys", token_store_redis::DEFAULT_KEY_PREFIX);
    let field = "gen:00000000000000000001";
    let record = redis
        .command(&["HGET", &hash, field])
        .unwrap()
        .text()
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&record).unwrap();
    let sealed = v["wrapped"]["kek"].as_str().unwrap().to_owned();
    let mut flipped = sealed.into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    v["wrapped"]["kek"] = String::from_utf8(flipped).unwrap().into();
    redis
        .command(&["HSET", &hash, field, &v.to_string()])
        .unwrap();
    let tampered_kid = v["kid"].as_str().unwrap().to_owned();
    let mut c = instance(&url).await;
    let t = c.client.generate(generate("bob")).await.unwrap();
    assert_ne!(
        kid_of(&t.access_token),
        tampered_kid,
        "signed with a tampered key"
    );
    let (jc, _, _) = jwks(c.admin).await;
    assert!(
        !jc.contains(&tampered_kid),
        "a tampered key is published: {jc}"
    );
    // The first instance unwrapped that key before the tampering and still trusts it; tokens
    // it signed earlier stay verifiable there.
    assert_eq!(kid_of(&first.access_token), tampered_kid);
    let _ = (a.child.start_kill(), c.child.start_kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_rotate_and_retire_keys() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let mut a = instance(&url).await;
    let run = |args: &'static [&'static str], extra: Option<String>| {
        let url = url.clone();
        async move {
            let mut cmd = binary();
            cmd.args(args)
                .env("REDIS_URL", &url)
                .env("REFRESH_TOKEN_PEPPER", PEPPER)
                .env("KEY_ENCRYPTION_KEY", KEK)
                .env("KEY_ROTATION_PERIOD", PERIOD.to_string())
                .env("JWKS_MAX_AGE", MAX_AGE.to_string());
            if let Some(kid) = extra {
                cmd.arg(kid);
            }
            let out = cmd.output().await.unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{args:?}: {}{text}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        }
    };
    let list = run(&["keys", "list"], None).await;
    let signing = kid_of(&a.client.generate(generate("x")).await.unwrap().access_token);
    assert!(list.contains(&signing) && list.contains("active"), "{list}");
    assert!(!list.contains(KEK));

    // An early rotation creates a pending key that every instance publishes at once.
    let rotated = run(&["keys", "rotate"], None).await;
    assert!(rotated.contains("created key"), "{rotated}");
    let new_kid = rotated.split_whitespace().nth(2).unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jwks(a.admin).await.0.contains(&new_kid));
    let list = run(&["keys", "list"], None).await;
    assert!(
        list.lines()
            .any(|l| l.contains(&new_kid) && l.contains("pending")),
        "{list}"
    );
    // Its public JWK, for PUBLISHED_KEY_FILES of a fleet that does not read this store yet.
    let public = run(&["keys", "public"], Some(new_kid.clone())).await;
    let jwk = token_jwt::Jwk::from_public_key_text(&public).unwrap();
    assert_eq!(jwk.kid.as_deref(), Some(new_kid.as_str()));
    assert!(!public.contains("\"d\""), "{public}");

    // Emergency retirement of the signing key: gone from the JWK Set within the bound, its
    // tokens refused by the service's own verification, and a new key signs at once.
    let old = a.client.generate(generate("y")).await.unwrap();
    assert_eq!(kid_of(&old.access_token), signing);
    let retired = run(&["keys", "retire"], Some(signing.clone())).await;
    assert!(retired.contains("retired key"), "{retired}");
    let started = Instant::now();
    while jwks(a.admin).await.0.contains(&signing) {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the retired key is still published after 4 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let introspected = a.client.introspect(&old.access_token).await.unwrap();
    assert!(
        !introspected.active,
        "a retired key's token is still active"
    );
    let fresh = a.client.generate(generate("z")).await.unwrap();
    assert_ne!(kid_of(&fresh.access_token), signing);
    // Every transition is counted, and each key's state is exported with its kid.
    let metrics = http_get(("127.0.0.1", a.admin), "/metrics", "").await;
    for want in [
        format!("token_service_signing_key_state{{kid=\"{signing}\",state=\"retired\"}} 1"),
        format!("token_service_signing_key_state{{kid=\"{signing}\",state=\"active\"}} 0"),
        "token_service_key_transitions_total{to=\"retired\"}".to_owned(),
        "token_service_key_rotation_due_seconds".to_owned(),
        "token_service_signing_key_age_seconds".to_owned(),
    ] {
        assert!(metrics.contains(&want), "no {want} in /metrics");
    }
    assert!(
        !metrics.contains(KEK),
        "the key-encryption key is in /metrics"
    );
    let _ = a.child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_material_in_the_logs_of_a_rotating_fleet() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut child = fleet_command(&url, KEK, port, admin)
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |pipe: Option<tokio::process::ChildStdout>| {
        tokio::spawn(async move {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut p, &mut s).await;
            }
            s
        })
    };
    let out_task = drain(child.stdout.take());
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut client = connect_when_up(port, "a fleet instance at TRACE").await;
    // Two rotations' worth of key creation, transitions and signing.
    let started = Instant::now();
    while stored_generations(&redis).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no rotation");
        client.generate(generate("trace")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    common::sigterm(&child);
    child.wait().await.unwrap();
    let log = out_task.await.unwrap() + &err_task.await.unwrap();
    assert!(
        log.contains("signing key transition"),
        "no transition logged"
    );

    // Every stored private key, unwrapped here with the fleet's key: none of it in the logs.
    let kek = token_kms::managed::KeyEncryptionKey::from_hex(KEK).unwrap();
    let hash = format!("{}keys", token_store_redis::DEFAULT_KEY_PREFIX);
    let mut secrets = vec![KEK.to_owned()];
    for (generation, _) in stored_generations(&redis) {
        let field = format!("gen:{generation:020}");
        let json = redis
            .command(&["HGET", &hash, &field])
            .unwrap()
            .text()
            .unwrap();
        let record = token_kms::managed::KeyRecord::from_json(json.as_bytes()).unwrap();
        let token_kms::managed::Wrapped::Kek(sealed) = &record.wrapped else {
            panic!("not wrapped by the key-encryption key")
        };
        let key = kek.unwrap(record.alg, &record.kid, sealed).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        secrets.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        );
        secrets.push(token_jwt::base64url::encode(key.pkcs8_der()));
    }
    for secret in &secrets {
        // Any 24-character window of a secret would be a leak.
        for start in (0..secret.len().saturating_sub(24)).step_by(8) {
            let window = &secret[start..start + 24];
            assert!(
                !log.contains(window),
                "key material in the logs: …{window}…"
            );
        }
    }
}
