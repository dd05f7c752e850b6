//! Model-based testing: random sequences of issue / rotate / reuse / grace retry / forge /
//! revoke (token, family, subject) / clock advance, applied both to a small reference model
//! (written independently of [`decide`](crate::decide): it tracks every token by generation)
//! and to a [`Rotator`] over the backend under test, which must agree at every step.
//!
//! Where a backend may legitimately differ (it may forget an expired family at any time after
//! its expiry) the model accepts every allowed answer and follows the backend's choice.
//!
//! ```text
//! proptest! {
//!     #[test]
//!     fn model(cfg in model::config_strategy(), ops in model::ops_strategy(60)) {
//!         runtime.block_on(model::run(&harness, &cfg, &ops));
//!     }
//! }
//! ```
//!
//! [`decide_cases`] and [`revoke_cases`] generate arbitrary (family, request) pairs for a
//! differential test of a backend's own implementation of the decision (a Lua script) against
//! [`decide`](crate::decide) and [`decide_revoke`](crate::decide_revoke).

use std::time::Duration;

use proptest::prelude::*;

use super::{Harness, T0, test_pepper};
use crate::{
    Error, Family, FamilyId, GracePolicy, GraceState, MAX_ROTATED_HASHES, RefreshOutcome,
    RefreshToken, Revocation, RevocationReason, RevokeOutcome, RevokeRequest, RotateRequest,
    Rotator, RotatorConfig, SealedSuccessor, TokenHash,
};

/// Scopes a family may be granted (an issue picks a non-empty subset).
pub const SCOPES: [&str; 4] = ["a", "b", "c", "d"];
/// A scope never granted (requested to test `invalid_scope`).
const UNGRANTED: &str = "e";
const SUBJECTS: [&str; 3] = ["s0", "s1", "s2"];
const JKT: &str = "jkt-right";
const OTHER_JKT: &str = "jkt-other";
/// At most this many families per run (more `Issue`s are skipped).
const MAX_FAMILIES: usize = 12;

/// The rotator settings of one run.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Family lifetime in seconds.
    pub family_lifetime: u64,
    /// Idle TTL in seconds.
    pub idle_ttl: u64,
    /// Grace window in seconds (0: off).
    pub grace_window: u64,
    /// Grace retries per rotation.
    pub grace_max_uses: u32,
    /// Longest access-token lifetime (revocation-list TTL) in seconds.
    pub access_token_lifetime: u64,
}

impl ModelConfig {
    fn rotator_config(&self) -> RotatorConfig {
        RotatorConfig::builder()
            .family_lifetime(Duration::from_secs(self.family_lifetime))
            .idle_ttl(Duration::from_secs(self.idle_ttl))
            .grace_window(Duration::from_secs(self.grace_window))
            .grace_max_uses(self.grace_max_uses)
            .max_access_token_lifetime(Duration::from_secs(self.access_token_lifetime))
            .build()
            .unwrap()
    }

    fn lifetime(&self) -> i64 {
        i64::try_from(self.family_lifetime).unwrap()
    }
    fn idle(&self) -> i64 {
        i64::try_from(self.idle_ttl).unwrap()
    }
    fn window(&self) -> i64 {
        i64::try_from(self.grace_window).unwrap()
    }
    fn ttl(&self) -> i64 {
        i64::try_from(self.access_token_lifetime).unwrap()
    }
}

/// Settings: 2000 s families, 600 s idle TTL, 300 s access tokens, grace off or 30 s with 1
/// to 3 retries.
pub fn config_strategy() -> impl Strategy<Value = ModelConfig> {
    (prop_oneof![Just(0u64), Just(30u64)], 1u32..=3).prop_map(|(window, uses)| ModelConfig {
        family_lifetime: 2000,
        idle_ttl: 600,
        grace_window: window,
        grace_max_uses: uses,
        access_token_lifetime: 300,
    })
}

/// Which DPoP key a refresh presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dpop {
    /// The key a bound family is bound to.
    Right,
    /// Another key.
    Other,
    /// No proof.
    Missing,
}

/// One step. Family and subject numbers are taken modulo what exists.
#[derive(Clone, Debug)]
pub enum Op {
    /// Issue a family for subject `subject`, DPoP-bound or not, with the scopes of the mask
    /// (bits over [`SCOPES`]).
    Issue {
        /// Subject number.
        subject: u8,
        /// Bound to a DPoP key.
        bound: bool,
        /// Scope mask (non-zero).
        scopes: u8,
    },
    /// Present the token `back` generations before the current one (0: current, 1: the
    /// previous one, a grace retry candidate; beyond the remembered history: forged).
    Refresh {
        /// Family number.
        family: u8,
        /// Generations back.
        back: u8,
        /// The DPoP key presented.
        dpop: Dpop,
        /// Requested scopes as a mask (bit 4 is a scope never granted), or all.
        scopes: Option<u8>,
    },
    /// Rotate the current token `times` times in a row (stopping at the first refusal).
    RotateMany {
        /// Family number.
        family: u8,
        /// How many rotations.
        times: u8,
    },
    /// Present a well-formed token of the family that was never issued.
    Forge {
        /// Family number.
        family: u8,
    },
    /// Revoke by the token `back` generations before the current one.
    RevokeToken {
        /// Family number.
        family: u8,
        /// Generations back.
        back: u8,
    },
    /// Revoke by family id.
    RevokeFamily {
        /// Family number.
        family: u8,
    },
    /// Revoke every family of a subject.
    RevokeSubject {
        /// Subject number.
        subject: u8,
    },
    /// Move the clock forward.
    Advance {
        /// Seconds.
        secs: u16,
    },
}

/// One random step.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let back = || prop_oneof![4 => Just(0u8), 3 => Just(1u8), 2 => 2u8..6, 1 => 60u8..70];
    let dpop =
        prop_oneof![6 => Just(Dpop::Right), 1 => Just(Dpop::Other), 1 => Just(Dpop::Missing)];
    let scopes = prop_oneof![3 => Just(None), 1 => (0u8..32).prop_map(Some)];
    let secs = prop_oneof![
        6 => Just(1u16),
        4 => Just(10),
        3 => Just(29),
        3 => Just(31),
        2 => Just(100),
        1 => Just(301),
        1 => Just(650),
        1 => Just(1500)
    ];
    prop_oneof![
        3 => (0u8..3, any::<bool>(), 1u8..16)
            .prop_map(|(subject, bound, scopes)| Op::Issue { subject, bound, scopes }),
        8 => (any::<u8>(), back(), dpop, scopes)
            .prop_map(|(family, back, dpop, scopes)| Op::Refresh { family, back, dpop, scopes }),
        1 => (any::<u8>(), 60u8..70).prop_map(|(family, times)| Op::RotateMany { family, times }),
        1 => any::<u8>().prop_map(|family| Op::Forge { family }),
        1 => (any::<u8>(), back()).prop_map(|(family, back)| Op::RevokeToken { family, back }),
        1 => any::<u8>().prop_map(|family| Op::RevokeFamily { family }),
        1 => (0u8..3).prop_map(|subject| Op::RevokeSubject { subject }),
        2 => secs.prop_map(|secs| Op::Advance { secs }),
    ]
}

/// Sequences of up to `max_len` steps.
pub fn ops_strategy(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op_strategy(), 1..=max_len.max(1))
}

fn mask_scopes(mask: u8) -> Vec<String> {
    SCOPES
        .iter()
        .chain(std::iter::once(&UNGRANTED))
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| (*s).to_owned())
        .collect()
}

/// Known, unknown, or not knowable (the backend may have forgotten the expired family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    No,
    Yes,
    Maybe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    No,
    Until(i64),
    Maybe(i64),
}

#[derive(Debug)]
struct ModelFamily {
    id: FamilyId,
    subject: u8,
    scopes: Vec<String>,
    bound: bool,
    absolute: i64,
    idle: i64,
    /// Every token, by generation.
    tokens: Vec<RefreshToken>,
    /// (rotated_at, uses) of the last rotation, when grace was on for it.
    grace: Option<(i64, u32)>,
    revoked: Tri,
    listing: Listing,
}

impl ModelFamily {
    fn generation(&self) -> usize {
        self.tokens.len() - 1
    }
    fn expired(&self, now: i64) -> bool {
        now >= self.absolute || now >= self.idle
    }
    /// Whether a token `back` generations old is remembered by the backend.
    fn remembers(&self, back: usize) -> bool {
        back <= MAX_ROTATED_HASHES
    }
}

/// A refresh result reduced to what the model predicts.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per step in a test driver")]
enum Got {
    Ok(RefreshOutcome),
    Reuse,
    Forged,
    Revoked,
    Expired,
    NotFound,
    DpopMissing,
    DpopOther,
    Scope,
    Other(#[allow(dead_code, reason = "shown by Debug in failure messages")] String),
}

impl From<crate::Result<RefreshOutcome>> for Got {
    fn from(r: crate::Result<RefreshOutcome>) -> Self {
        match r {
            Ok(out) => Got::Ok(out),
            Err(Error::ReuseDetected) => Got::Reuse,
            Err(Error::ForgedToken) => Got::Forged,
            Err(Error::Revoked) => Got::Revoked,
            Err(Error::Expired) => Got::Expired,
            Err(Error::UnknownFamily) => Got::NotFound,
            Err(Error::DpopProofRequired) => Got::DpopMissing,
            Err(Error::DpopKeyMismatch) => Got::DpopOther,
            Err(Error::ScopeExceeded) => Got::Scope,
            Err(e) => Got::Other(format!("{e:?}")),
        }
    }
}

struct Model<'a> {
    cfg: &'a ModelConfig,
    rotator: Rotator,
    backend: super::Backend,
    now: i64,
    families: Vec<ModelFamily>,
}

/// Runs `ops` against a fresh backend from `h` and the model; panics at the first
/// disagreement, naming the step.
pub async fn run(h: &dyn Harness, cfg: &ModelConfig, ops: &[Op]) {
    let backend = h.backend().await;
    let rotator = Rotator::new(backend.store.clone(), test_pepper(), cfg.rotator_config());
    let mut m = Model {
        cfg,
        rotator,
        backend,
        now: T0,
        families: Vec::new(),
    };
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} {op:?} at T0+{}", m.now - T0);
        m.apply(op, &ctx).await;
        m.check_listing(&ctx).await;
    }
    m.check_enumeration().await;
}

impl Model<'_> {
    fn pick(&self, n: u8) -> Option<usize> {
        if self.families.is_empty() {
            None
        } else {
            Some(usize::from(n) % self.families.len())
        }
    }

    async fn apply(&mut self, op: &Op, ctx: &str) {
        match *op {
            Op::Issue {
                subject,
                bound,
                scopes,
            } => self.issue(subject, bound, scopes, ctx).await,
            Op::Refresh {
                family,
                back,
                dpop,
                scopes,
            } => {
                if let Some(i) = self.pick(family) {
                    self.refresh(i, usize::from(back), dpop, scopes, ctx).await;
                }
            }
            Op::RotateMany { family, times } => {
                if let Some(i) = self.pick(family) {
                    for k in 0..times {
                        let ctx = format!("{ctx} (rotation {k})");
                        if !self.refresh(i, 0, Dpop::Right, None, &ctx).await {
                            break;
                        }
                    }
                }
            }
            Op::Forge { family } => {
                if let Some(i) = self.pick(family) {
                    self.forge(i, ctx).await;
                }
            }
            Op::RevokeToken { family, back } => {
                if let Some(i) = self.pick(family) {
                    self.revoke(i, Some(usize::from(back)), ctx).await;
                }
            }
            Op::RevokeFamily { family } => {
                if let Some(i) = self.pick(family) {
                    self.revoke(i, None, ctx).await;
                }
            }
            Op::RevokeSubject { subject } => self.revoke_subject(subject, ctx).await,
            Op::Advance { secs } => self.now += i64::from(secs),
        }
    }

    async fn issue(&mut self, subject: u8, bound: bool, mask: u8, ctx: &str) {
        if self.families.len() >= MAX_FAMILIES {
            return;
        }
        let scopes = mask_scopes(mask & 0x0f);
        let jkt = bound.then_some(JKT);
        let subject_name = SUBJECTS[usize::from(subject) % SUBJECTS.len()];
        let (token, family) = self
            .rotator
            .issue(subject_name, "client", &scopes, jkt, self.now)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: issue failed: {e:?}"));
        let absolute = self.now + self.cfg.lifetime();
        let idle = (self.now + self.cfg.idle()).min(absolute);
        assert_eq!(family.absolute_expires_at, absolute, "{ctx}");
        assert_eq!(family.idle_expires_at, idle, "{ctx}");
        assert_eq!(family.scopes, scopes, "{ctx}");
        assert_eq!(family.generation, 0, "{ctx}");
        assert_eq!(token.family_id(), family.id, "{ctx}");
        self.families.push(ModelFamily {
            id: family.id,
            subject: subject % 3,
            scopes,
            bound,
            absolute,
            idle,
            tokens: vec![token],
            grace: None,
            revoked: Tri::No,
            listing: Listing::No,
        });
    }

    async fn refresh(
        &mut self,
        i: usize,
        back: usize,
        dpop: Dpop,
        scopes: Option<u8>,
        ctx: &str,
    ) -> bool {
        let now = self.now;
        let window = self.cfg.window();
        let max_uses = self.cfg.grace_max_uses;
        let ttl = self.cfg.ttl();
        let idle_ttl = self.cfg.idle();
        let f = &self.families[i];
        let generation = f.generation();
        let back = back.min(generation);
        let token = f.tokens[generation - back].clone();
        let jkt = match dpop {
            Dpop::Right => Some(JKT),
            Dpop::Other => Some(OTHER_JKT),
            Dpop::Missing => None,
        };
        let requested = scopes.map(mask_scopes);
        let got = Got::from(
            self.rotator
                .refresh(token.as_str(), jkt, requested.as_deref(), now)
                .await,
        );
        let f = &mut self.families[i];

        // Where the backend may have forgotten the family, any refusal it can justify.
        if f.expired(now) {
            let ok = match got {
                Got::NotFound => true,
                Got::Forged => !f.remembers(back),
                Got::Revoked => f.remembers(back) && f.revoked != Tri::No,
                Got::Expired => f.remembers(back) && f.revoked != Tri::Yes,
                _ => false,
            };
            assert!(ok, "{ctx}: expired family: got {got:?}");
            return false;
        }
        if !f.remembers(back) {
            assert!(
                matches!(got, Got::Forged),
                "{ctx}: expected Forged, got {got:?}"
            );
            return false;
        }
        assert_ne!(f.revoked, Tri::Maybe, "{ctx}: model invariant");
        if f.revoked == Tri::Yes {
            assert!(
                matches!(got, Got::Revoked),
                "{ctx}: expected Revoked, got {got:?}"
            );
            return false;
        }
        if f.bound && dpop != Dpop::Right {
            let ok = match dpop {
                Dpop::Missing => matches!(got, Got::DpopMissing),
                _ => matches!(got, Got::DpopOther),
            };
            assert!(ok, "{ctx}: expected a DPoP refusal, got {got:?}");
            return false;
        }
        let scope_ok = requested
            .as_ref()
            .is_none_or(|r| r.iter().all(|s| f.scopes.contains(s)));
        let expected_scopes = requested.clone().unwrap_or_else(|| f.scopes.clone());
        let grace_on = window > 0;
        if back == 0 {
            if !scope_ok {
                assert!(
                    matches!(got, Got::Scope),
                    "{ctx}: expected Scope, got {got:?}"
                );
                return false;
            }
            let Got::Ok(out) = got else {
                panic!("{ctx}: expected a rotation, got {got:?}")
            };
            assert!(!out.is_grace_retry, "{ctx}");
            assert_eq!(out.family.generation, generation as u64 + 1, "{ctx}");
            assert_eq!(out.family.absolute_expires_at, f.absolute, "{ctx}");
            f.idle = (now + idle_ttl).min(f.absolute);
            assert_eq!(out.family.idle_expires_at, f.idle, "{ctx}");
            assert_eq!(out.scopes, expected_scopes, "{ctx}");
            assert_eq!(out.family.scopes, f.scopes, "{ctx}");
            assert_eq!(out.token.family_id(), f.id, "{ctx}");
            assert!(!f.tokens.contains(&out.token), "{ctx}: token repeated");
            f.tokens.push(out.token);
            f.grace = grace_on.then_some((now, 0));
        } else if back == 1
            && grace_on
            && f.grace
                .is_some_and(|(at, uses)| now < at + window && uses < max_uses)
        {
            if !scope_ok {
                assert!(
                    matches!(got, Got::Scope),
                    "{ctx}: expected Scope, got {got:?}"
                );
                return false;
            }
            let Got::Ok(out) = got else {
                panic!("{ctx}: expected a grace retry, got {got:?}")
            };
            assert!(out.is_grace_retry, "{ctx}");
            assert_eq!(
                &out.token, &f.tokens[generation],
                "{ctx}: not the same successor"
            );
            assert_eq!(out.family.generation, generation as u64, "{ctx}");
            assert_eq!(out.scopes, expected_scopes, "{ctx}");
            if let Some((_, uses)) = f.grace.as_mut() {
                *uses += 1;
                assert_eq!(
                    out.family.grace.as_ref().map(|g| g.uses),
                    Some(*uses),
                    "{ctx}"
                );
            }
        } else {
            assert!(
                matches!(got, Got::Reuse),
                "{ctx}: expected Reuse, got {got:?}"
            );
            f.revoked = Tri::Yes;
            f.grace = None;
            f.listing = Listing::Until(now + ttl);
        }
        // The stored state agrees.
        let succeeded = f.revoked == Tri::No;
        let (id, generation, revoked) = (f.id, f.generation() as u64, f.revoked == Tri::Yes);
        let stored = self
            .backend
            .store
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: get failed: {e:?}"))
            .unwrap_or_else(|| panic!("{ctx}: live family not stored"));
        assert_eq!(stored.generation, generation, "{ctx}");
        assert_eq!(stored.revoked.is_some(), revoked, "{ctx}");
        succeeded
    }

    async fn forge(&mut self, i: usize, ctx: &str) {
        let f = &self.families[i];
        let forged = RefreshToken::generate(f.id).unwrap();
        let got = Got::from(
            self.rotator
                .refresh(forged.as_str(), Some(JKT), None, self.now)
                .await,
        );
        let ok =
            matches!(got, Got::Forged) || (f.expired(self.now) && matches!(got, Got::NotFound));
        assert!(ok, "{ctx}: forged token: got {got:?}");
    }

    async fn revoke(&mut self, i: usize, back: Option<usize>, ctx: &str) {
        let now = self.now;
        let ttl = self.cfg.ttl();
        let f = &self.families[i];
        let outcome = match back {
            Some(back) => {
                let back = back.min(f.generation());
                let token = f.tokens[f.generation() - back].clone();
                let out = self.rotator.revoke_token(token.as_str(), now).await;
                (out, f.remembers(back))
            }
            None => (self.rotator.revoke_family(&f.id, now).await, true),
        };
        let (out, known) = outcome;
        let out = out.unwrap_or_else(|e| panic!("{ctx}: revoke failed: {e:?}"));
        let f = &mut self.families[i];
        if f.expired(now) {
            match out {
                RevokeOutcome::NotFound => {}
                RevokeOutcome::Forged if !known => {}
                RevokeOutcome::AlreadyRevoked if known && f.revoked != Tri::No => {
                    // Revoked by one of the earlier subject revocations; which one (and so
                    // the listing's end) stays unknown.
                    f.revoked = Tri::Yes;
                }
                RevokeOutcome::Revoked(_) if known && f.revoked != Tri::Yes => {
                    f.revoked = Tri::Yes;
                    f.listing = Listing::Until(now + ttl);
                }
                other => panic!("{ctx}: expired family: got {other:?}"),
            }
            return;
        }
        match (known, f.revoked, out) {
            (false, _, RevokeOutcome::Forged) => {}
            (true, Tri::Yes, RevokeOutcome::AlreadyRevoked) => {}
            (true, Tri::No, RevokeOutcome::Revoked(state)) => {
                let reason = if back.is_some() {
                    RevocationReason::TokenRevoked
                } else {
                    RevocationReason::FamilyRevoked
                };
                assert_eq!(state.revoked, Some(Revocation { reason, at: now }), "{ctx}");
                f.revoked = Tri::Yes;
                f.grace = None;
                f.listing = Listing::Until(now + ttl);
            }
            (known, revoked, out) => {
                panic!("{ctx}: known {known}, revoked {revoked:?}: got {out:?}")
            }
        }
    }

    async fn revoke_subject(&mut self, subject: u8, ctx: &str) {
        let now = self.now;
        let ttl = self.cfg.ttl();
        let name = SUBJECTS[usize::from(subject) % SUBJECTS.len()];
        let subject = subject % 3;
        let listed = self
            .rotator
            .families_of(name)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: families_of failed: {e:?}"));
        for f in &self.families {
            if f.subject == subject && !f.expired(now) {
                assert!(listed.contains(&f.id), "{ctx}: live family not listed");
            }
        }
        for id in &listed {
            assert!(
                self.families
                    .iter()
                    .any(|f| f.id == *id && f.subject == subject),
                "{ctx}: families_of lists a family of another subject"
            );
        }
        let count = self
            .rotator
            .revoke_subject(name, now)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: revoke_subject failed: {e:?}"));
        let mut min = 0;
        let mut maybe = 0;
        for f in self.families.iter_mut().filter(|f| f.subject == subject) {
            if f.expired(now) {
                if f.revoked != Tri::Yes {
                    maybe += 1;
                    f.revoked = Tri::Maybe;
                    let until = match f.listing {
                        Listing::Maybe(t) => t.max(now + ttl),
                        _ => now + ttl,
                    };
                    f.listing = Listing::Maybe(until);
                }
            } else if f.revoked == Tri::No {
                min += 1;
                f.revoked = Tri::Yes;
                f.grace = None;
                f.listing = Listing::Until(now + ttl);
            }
        }
        assert!(
            (min..=min + maybe).contains(&count),
            "{ctx}: revoked {count}, expected {min}..={}",
            min + maybe
        );
    }

    async fn check_listing(&self, ctx: &str) {
        for f in &self.families {
            let listed = self
                .backend
                .revocations
                .is_revoked(&f.id, self.now)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: is_revoked failed: {e:?}"));
            match f.listing {
                Listing::No => assert!(!listed, "{ctx}: {:?} listed but never revoked", f.id),
                Listing::Until(t) => {
                    assert_eq!(listed, self.now < t, "{ctx}: listing of {:?}", f.id)
                }
                Listing::Maybe(t) => {
                    if self.now >= t {
                        assert!(!listed, "{ctx}: {:?} listed after its TTL", f.id);
                    }
                }
            }
        }
    }

    async fn check_enumeration(&self) {
        let listed = self.backend.revocations.revoked(self.now).await.unwrap();
        for f in &self.families {
            let present = listed.iter().any(|e| e.family_id == f.id);
            match f.listing {
                Listing::No => assert!(!present, "enumeration lists {:?}", f.id),
                Listing::Until(t) => assert_eq!(present, self.now < t, "enumeration of {:?}", f.id),
                Listing::Maybe(t) => assert!(!present || self.now < t),
            }
        }
    }
}

// ---- differential cases for a backend's own decision code ---------------------------------

fn hash(n: u8) -> TokenHash {
    TokenHash::from_bytes([n; 32])
}

/// Arbitrary families around `now = 1000`, drawing hashes from a tiny alphabet (bytes 1 to 6)
/// so presented hashes often match; the current hash is never in the rotated list.
pub fn family_strategy() -> impl Strategy<Value = Family> {
    let scopes = prop::sample::subsequence(vec!["a", "b", "c"], 0..=3)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
    let jkt = prop_oneof![
        Just(None),
        Just(Some("k1".to_owned())),
        Just(Some("k2".to_owned()))
    ];
    let grace = prop::option::of((2u8..=6, 0u32..4, 990i64..1001)).prop_map(|g| {
        g.map(|(prev, uses, at)| GraceState {
            previous_hash: hash(prev),
            sealed_successor: SealedSuccessor::from_bytes(vec![1, 2, 3]).unwrap(),
            uses,
            rotated_at: at,
        })
    });
    let revoked = prop::option::of((0usize..4, 900i64..1000)).prop_map(|r| {
        r.map(|(i, at)| Revocation {
            reason: [
                RevocationReason::ReuseDetected,
                RevocationReason::TokenRevoked,
                RevocationReason::FamilyRevoked,
                RevocationReason::SubjectRevoked,
            ][i],
            at,
        })
    });
    (
        scopes,
        jkt,
        995i64..1010,
        995i64..1010,
        0u64..100,
        prop::collection::vec(2u8..=6, 0..=MAX_ROTATED_HASHES + 2),
        grace,
        revoked,
    )
        .prop_map(
            |(scopes, dpop_jkt, absolute, idle, generation, rotated, grace, revoked)| Family {
                id: FamilyId::from_bytes([7; 16]),
                subject: "s".into(),
                client_id: "c".into(),
                scopes,
                dpop_jkt,
                created_at: 0,
                absolute_expires_at: absolute,
                idle_expires_at: idle.min(absolute),
                generation,
                current_hash: hash(1),
                rotated: rotated.into_iter().map(hash).collect(),
                rotated_at: grace.as_ref().map(|g| g.rotated_at),
                grace,
                revoked,
            },
        )
}

/// Arbitrary (family, rotation request) pairs at `now` 995 to 1010: feed both to
/// [`decide`](crate::decide) and to the backend's implementation and compare the outcomes
/// and new states.
pub fn decide_cases() -> impl Strategy<Value = (Family, RotateRequest)> {
    let requested = prop::option::of(
        prop::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4)
            .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>()),
    );
    let jkt = prop_oneof![
        Just(None),
        Just(Some("k1".to_owned())),
        Just(Some("k2".to_owned()))
    ];
    (
        family_strategy(),
        0u8..=7,
        jkt,
        requested,
        995i64..1010,
        1i64..30,
        prop_oneof![Just(0i64), 1i64..15],
        0u32..4,
    )
        .prop_map(
            |(family, presented, presented_jkt, requested_scopes, now, idle_ttl, window, uses)| {
                let grace = if window > 0 && uses > 0 {
                    GracePolicy {
                        window,
                        max_uses: uses,
                    }
                } else {
                    GracePolicy::OFF
                };
                let req = RotateRequest {
                    family_id: family.id,
                    presented_hash: hash(presented),
                    presented_jkt,
                    requested_scopes,
                    new_hash: hash(200),
                    sealed_successor: grace
                        .is_enabled()
                        .then(|| SealedSuccessor::from_bytes(vec![9, 9, 9]).unwrap()),
                    now,
                    idle_ttl,
                    grace,
                    revocation_ttl: 300,
                };
                (family, req)
            },
        )
}

/// Arbitrary (family, presented hash, revocation request) triples for
/// [`decide_revoke`](crate::decide_revoke).
pub fn revoke_cases() -> impl Strategy<Value = (Family, Option<TokenHash>, RevokeRequest)> {
    (
        family_strategy(),
        prop::option::of((0u8..=7).prop_map(hash)),
        0usize..4,
        995i64..1010,
    )
        .prop_map(|(family, presented, reason, now)| {
            let reason = [
                RevocationReason::ReuseDetected,
                RevocationReason::TokenRevoked,
                RevocationReason::FamilyRevoked,
                RevocationReason::SubjectRevoked,
            ][reason];
            (
                family,
                presented,
                RevokeRequest {
                    reason,
                    now,
                    revocation_ttl: 300,
                },
            )
        })
}
