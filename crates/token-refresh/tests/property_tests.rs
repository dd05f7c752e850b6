//! Property tests: the model-based driver (`token_refresh::conformance::model`) against the
//! memory store, `decide` against its own specification on arbitrary states, and "never
//! panics" for the token parser.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

use std::sync::Arc;

use proptest::prelude::*;
use token_refresh::conformance::{Backend, Harness, model};
use token_refresh::{
    Family, FamilyId, FamilyStore, MemoryStore, RefreshToken, RevocationEvent, RevocationList,
    RevocationSubscription, RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest,
    StoreFuture, TokenHash, decide, decide_revoke, decide_revoke_absent,
};
use token_testkit::TokioHarness;

/// A fresh memory store per run.
fn memory() -> impl Harness {
    TokioHarness::new(|| async { Backend::new(Arc::new(MemoryStore::new())) })
}

/// Whether the presented hash is one the family knows (current, previous, rotated).
fn knows(family: &Family, hash: &token_refresh::TokenHash) -> bool {
    family.current_hash == *hash
        || family.rotated.contains(hash)
        || family
            .grace
            .as_ref()
            .is_some_and(|g| g.previous_hash == *hash)
}

fn subset(requested: Option<&[String]>, granted: &[String]) -> bool {
    requested.is_none_or(|r| r.iter().all(|x| granted.contains(x)))
}

/// `next` is `family` with only what a rotation, a grace retry or a revocation may change:
/// the grant (subject, client, scopes, DPoP key, audiences, claims text, access-token
/// lifetime) and the creation and absolute expiry times are kept exactly.
fn keeps_grant(family: &Family, next: &Family) -> bool {
    let mut same = next.clone();
    same.generation = family.generation;
    same.current_hash = family.current_hash;
    same.rotated.clone_from(&family.rotated);
    same.rotated_at = family.rotated_at;
    same.idle_expires_at = family.idle_expires_at;
    same.grace.clone_from(&family.grace);
    same.revoked = family.revoked;
    same == *family
}

/// The request passed every check before the narrowing ones (known token, live family, its
/// client, its key).
fn passes_binding(family: &Family, req: &RotateRequest) -> bool {
    knows(family, &req.presented_hash)
        && family.revoked.is_none()
        && !family.is_expired(req.now)
        && family.client_id == req.client_id
        && family
            .dpop_jkt
            .as_ref()
            .is_none_or(|k| req.presented_jkt.as_ref() == Some(k))
}

/// A memory store that forgets every family as soon as it has expired (a sweep at the `now`
/// of every write), as any store may: the model's answers about forgotten families
/// (tombstones by id and by subject, `NotFound` by token) all come up.
#[derive(Debug)]
struct Forgetful(MemoryStore);

impl FamilyStore for Forgetful {
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.0.purge_expired(family.created_at)?;
            self.0.create(family).await
        })
    }
    fn get<'a>(&'a self, id: &'a FamilyId) -> StoreFuture<'a, Option<Family>> {
        self.0.get(id)
    }
    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome> {
        Box::pin(async move {
            self.0.purge_expired(req.now)?;
            self.0.rotate(req).await
        })
    }
    fn revoke_family<'a>(
        &'a self,
        id: &'a FamilyId,
        presented: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome> {
        Box::pin(async move {
            self.0.purge_expired(req.now)?;
            self.0.revoke_family(id, presented, req).await
        })
    }
    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>> {
        self.0.families_of(subject)
    }
}

impl RevocationList for Forgetful {
    fn is_revoked<'a>(&'a self, id: &'a FamilyId, now: i64) -> StoreFuture<'a, bool> {
        self.0.is_revoked(id, now)
    }
    fn revoked<'a>(&'a self, now: i64) -> StoreFuture<'a, Vec<RevocationEvent>> {
        self.0.revoked(now)
    }
    fn subscribe(&self) -> RevocationSubscription {
        self.0.subscribe()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random operation sequences: the memory-store-backed rotator agrees with the model at
    /// every step.
    #[test]
    fn model_agrees_with_memory_store(cfg in model::config_strategy(), ops in model::ops_strategy(80)) {
        runtime().block_on(model::run(&memory(), &cfg, &ops));
    }

    /// The same against a store that forgets each family as soon as it has expired.
    #[test]
    fn model_agrees_with_a_store_that_forgets_at_once(
        cfg in model::config_strategy(),
        ops in model::ops_strategy(80),
    ) {
        let forgetful = TokioHarness::new(|| async {
            Backend::new(Arc::new(Forgetful(MemoryStore::new())))
        });
        runtime().block_on(model::run(&forgetful, &cfg, &ops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// `decide` on arbitrary states keeps its invariants: untouched families for refusals,
    /// the absolute expiry never moves, history stays bounded, only current tokens rotate,
    /// only the family's own client gets anything (or causes a reuse revocation), narrowing
    /// is checked scopes first and never stored, the grant is kept exactly.
    #[test]
    fn decide_invariants((family, req) in model::decide_cases()) {
        let outcome = decide(&family, &req);
        let scopes_ok = subset(req.requested_scopes.as_deref(), &family.scopes);
        // Within the grant, and (when required) naming at least one audience: the requested
        // ones, else the grant's.
        let next_audience = req.requested_audience.as_deref().unwrap_or(&family.audience);
        let audience_ok = subset(req.requested_audience.as_deref(), &family.audience)
            && !(req.require_audience && next_audience.is_empty());
        if let Some(next) = outcome.new_state() {
            prop_assert!(passes_binding(&family, &req), "{outcome:?}");
            prop_assert!(keeps_grant(&family, next), "{family:?} -> {next:?}");
            prop_assert_eq!(next.absolute_expires_at, family.absolute_expires_at);
        }
        match &outcome {
            RotateOutcome::Rotated(_) | RotateOutcome::GraceRetry { .. } => {
                prop_assert!(scopes_ok && audience_ok);
            }
            RotateOutcome::ClientMismatch => {
                prop_assert!(knows(&family, &req.presented_hash));
                prop_assert!(family.revoked.is_none() && !family.is_expired(req.now));
                prop_assert_ne!(&family.client_id, &req.client_id);
            }
            RotateOutcome::DpopMismatch => {
                prop_assert_eq!(&family.client_id, &req.client_id);
                prop_assert!(!passes_binding(&family, &req));
            }
            RotateOutcome::ScopeExceeded => {
                prop_assert!(passes_binding(&family, &req));
                prop_assert!(!scopes_ok);
            }
            RotateOutcome::AudienceExceeded => {
                prop_assert!(passes_binding(&family, &req));
                prop_assert!(scopes_ok && !audience_ok);
            }
            _ => {}
        }
        match &outcome {
            RotateOutcome::Rotated(next) => {
                prop_assert!(family.revoked.is_none());
                prop_assert!(!family.is_expired(req.now));
                prop_assert!(family.current_hash == req.presented_hash);
                prop_assert_eq!(next.generation, family.generation + 1);
                prop_assert!(next.current_hash == req.new_hash);
                prop_assert_eq!(next.absolute_expires_at, family.absolute_expires_at);
                prop_assert!(next.idle_expires_at <= next.absolute_expires_at);
                prop_assert!(next.rotated.len() <= token_refresh::MAX_ROTATED_HASHES);
                prop_assert!(next.rotated.last() == Some(&family.current_hash));
                prop_assert_eq!(next.grace.is_some(), req.grace.is_enabled());
                prop_assert_eq!(&next.scopes, &family.scopes);
            }
            RotateOutcome::GraceRetry { family: next, .. } => {
                prop_assert!(req.grace.is_enabled());
                let g = family.grace.as_ref().unwrap();
                prop_assert!(g.previous_hash == req.presented_hash);
                prop_assert!(req.now < g.rotated_at + req.grace.window);
                prop_assert_eq!(next.grace.as_ref().unwrap().uses, g.uses + 1);
                prop_assert_eq!(next.generation, family.generation);
                prop_assert!(next.current_hash == family.current_hash);
            }
            RotateOutcome::Reuse(next) => {
                prop_assert!(family.revoked.is_none());
                prop_assert!(family.current_hash != req.presented_hash);
                prop_assert!(next.revoked.is_some());
                prop_assert!(next.grace.is_none());
                prop_assert_eq!(next.generation, family.generation);
            }
            RotateOutcome::Forged => {
                prop_assert!(family.current_hash != req.presented_hash);
                prop_assert!(!family.rotated.contains(&req.presented_hash));
            }
            _ => prop_assert!(outcome.new_state().is_none()),
        }
    }

    /// `decide_revoke`: only a known token (or none) revokes, once, and only when presented
    /// by the family's own client (or by no client: an operator); the grant is kept.
    #[test]
    fn decide_revoke_invariants((family, presented, req) in model::revoke_cases()) {
        let known = presented.is_none_or(|h| knows(&family, &h));
        let own_client = req.client_id.as_ref().is_none_or(|c| *c == family.client_id);
        match decide_revoke(&family, presented.as_ref(), &req) {
            RevokeOutcome::Forged => prop_assert!(!known),
            RevokeOutcome::ClientMismatch => prop_assert!(known && !own_client),
            RevokeOutcome::AlreadyRevoked => {
                prop_assert!(known && own_client && family.revoked.is_some());
            }
            RevokeOutcome::Revoked(next) => {
                prop_assert!(known && own_client && family.revoked.is_none());
                prop_assert_eq!(next.revoked.unwrap().at, req.now);
                prop_assert_eq!(next.revoked.unwrap().reason, req.reason);
                prop_assert!(next.grace.is_none());
                prop_assert!(keeps_grant(&family, &next), "{family:?} -> {next:?}");
                let mut same = next.clone();
                same.revoked = family.revoked;
                same.grace.clone_from(&family.grace);
                prop_assert_eq!(same, family);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// `decide_revoke_absent`: a family without a record is listed (a tombstone) by an
    /// operator only, and only when it is not listed already; the entry is the one a
    /// revocation would list.
    #[test]
    fn decide_revoke_absent_invariants((presented, listed, req) in model::revoke_absent_cases()) {
        let id = FamilyId::from_bytes([7; 16]);
        let operator = presented.is_none() && req.client_id.is_none();
        let still_listed = listed.is_some_and(|e| req.now < e.listed_until);
        match decide_revoke_absent(&id, presented.as_ref(), listed.as_ref(), &req) {
            RevokeOutcome::NotFound => prop_assert!(!operator),
            RevokeOutcome::AlreadyRevoked => prop_assert!(operator && still_listed),
            RevokeOutcome::Tombstoned(entry) => {
                prop_assert!(operator && !still_listed);
                prop_assert_eq!(entry.family_id, id);
                prop_assert_eq!(entry.reason, req.reason);
                prop_assert_eq!(entry.revoked_at, req.now);
                prop_assert_eq!(entry.listed_until, req.now + req.revocation_ttl);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// The parser never panics and accepts exactly what it produced.
    #[test]
    fn parse_never_panics(input in ".{0,300}") {
        token_refresh::fuzzing::parse_refresh_token(input.as_bytes());
        let _ = RefreshToken::parse(&input);
    }

    /// Mutating one character of a valid token is always refused before any store lookup.
    #[test]
    fn single_character_changes_are_refused(pos in 0usize..77, c in prop::char::range('!', '~')) {
        let token = RefreshToken::generate(FamilyId::generate().unwrap()).unwrap();
        let mut text: Vec<char> = token.as_str().chars().collect();
        prop_assume!(text[pos] != c);
        text[pos] = c;
        let text: String = text.into_iter().collect();
        let err = RefreshToken::parse(&text).unwrap_err();
        prop_assert!(err.is_format_error());
    }

    /// Event decoding never panics.
    #[test]
    fn event_parse_never_panics(input in prop::collection::vec(any::<u8>(), 0..2000)) {
        token_refresh::fuzzing::parse_revocation_event(&input);
    }
}
