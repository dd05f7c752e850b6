//! Model-based testing: random sequences of issue / rotate / reuse / grace retry / forge /
//! revoke (token, family, subject) / clock advance, applied both to a small reference model
//! (written independently of [`decide`](crate::decide): it tracks every token by generation)
//! and to a [`Rotator`] over the backend under test, which must agree at every step.
//! Families are issued with arbitrary grants (audiences, custom claims, access-token
//! lifetime) that every returned and stored state must keep; refreshes narrow scopes and
//! audiences, and refreshes and revocations by token come now and then from another client
//! (refused, with nothing changed).
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
    Error, Family, FamilyId, GracePolicy, GraceState, GrantDetails, MAX_ROTATED_HASHES,
    RefreshOutcome, RefreshToken, Revocation, RevocationEvent, RevocationReason, RevokeOutcome,
    RevokeRequest, RotateRequest, Rotator, RotatorConfig, SealedSuccessor, TokenHash,
};

/// Scopes a family may be granted (an issue picks a non-empty subset).
pub const SCOPES: [&str; 4] = ["a", "b", "c", "d"];
/// A scope never granted (requested to test `invalid_scope`).
const UNGRANTED: &str = "e";
const SUBJECTS: [&str; 3] = ["s0", "s1", "s2"];
/// Audiences a family may be granted (an issue picks any subset, the empty one included).
pub const AUDIENCES: [&str; 3] = ["https://a.example", "https://b.example/api", "urn:c:é"];
/// An audience never granted (requested to test `invalid_target`).
const UNGRANTED_AUDIENCE: &str = "https://never.example";
/// Custom claims a family may be granted: none, or the text of a JSON object that a store
/// must keep byte for byte (`/`, `"`, an escaped NUL, `é`, a number beyond a double's
/// precision, empty containers).
pub const CLAIMS: [Option<&str>; 5] = [
    None,
    Some("{}"),
    Some(r#"{"p":"a/b","q":"\"x\"","z":"\u0000","e":"é"}"#),
    Some(r#"{"n":12345678901234567890,"f":1.10,"e":[],"o":{}}"#),
    Some(r#"{ "nested" : { "l" : [ 1 , "é/\\" ] } }"#),
];
/// The client the families are granted to.
const CLIENT: &str = "client";
/// Another client.
const OTHER_CLIENT: &str = "client-other";
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

/// Which client presents a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The family's own client.
    Right,
    /// Another client.
    Other,
}

impl Client {
    fn id(self) -> &'static str {
        match self {
            Client::Right => CLIENT,
            Client::Other => OTHER_CLIENT,
        }
    }
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
    /// (bits over [`SCOPES`]) and the audiences of the mask (bits over [`AUDIENCES`]).
    Issue {
        /// Subject number.
        subject: u8,
        /// Bound to a DPoP key.
        bound: bool,
        /// Scope mask (non-zero).
        scopes: u8,
        /// Audience mask (may be zero: no audience).
        audience: u8,
        /// Index into [`CLAIMS`].
        claims: u8,
        /// The access-token lifetime asked for (`Some(0)` is kept as none).
        access_ttl: Option<u32>,
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
        /// Requested audiences as a mask (bit 3 is an audience never granted), or all.
        audience: Option<u8>,
        /// The client presenting the token.
        client: Client,
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
        /// The client presenting the token.
        client: Client,
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
    let audience = prop_oneof![3 => Just(None), 1 => (0u8..16).prop_map(Some)];
    let client = || prop_oneof![6 => Just(Client::Right), 1 => Just(Client::Other)];
    let access_ttl = prop::option::of(prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(u32::MAX),
        any::<u32>()
    ]);
    let claims = 0..u8::try_from(CLAIMS.len()).unwrap();
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
        3 => (0u8..3, any::<bool>(), 1u8..16, 0u8..8, claims, access_ttl).prop_map(
            |(subject, bound, scopes, audience, claims, access_ttl)| Op::Issue {
                subject,
                bound,
                scopes,
                audience,
                claims,
                access_ttl,
            }
        ),
        8 => (any::<u8>(), back(), dpop, scopes, audience, client()).prop_map(
            |(family, back, dpop, scopes, audience, client)| Op::Refresh {
                family,
                back,
                dpop,
                scopes,
                audience,
                client,
            }
        ),
        1 => (any::<u8>(), 60u8..70).prop_map(|(family, times)| Op::RotateMany { family, times }),
        1 => any::<u8>().prop_map(|family| Op::Forge { family }),
        1 => (any::<u8>(), back(), client())
            .prop_map(|(family, back, client)| Op::RevokeToken { family, back, client }),
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

fn mask_audience(mask: u8) -> Vec<String> {
    AUDIENCES
        .iter()
        .chain(std::iter::once(&UNGRANTED_AUDIENCE))
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
    audience: Vec<String>,
    claims_json: Option<String>,
    access_ttl: Option<u32>,
    bound: bool,
    absolute: i64,
    idle: i64,
    /// Every token, by generation.
    tokens: Vec<RefreshToken>,
    /// (rotated_at, uses) of the last rotation, when grace was on for it.
    grace: Option<(i64, u32)>,
    revoked: Tri,
    listing: Listing,
    /// The state the backend last returned or stored, while the family is live (`None`
    /// once that is not known: after a revocation of an expired family).
    last: Option<Family>,
}

impl ModelFamily {
    fn generation(&self) -> usize {
        self.tokens.len() - 1
    }
    fn expired(&self, now: i64) -> bool {
        now >= self.absolute || now >= self.idle
    }
    /// Whether the family is certainly on the revocation list at `now`.
    fn surely_listed(&self, now: i64) -> bool {
        matches!(self.listing, Listing::Until(t) if now < t)
    }
    /// Whether a token `back` generations old is remembered by the backend.
    fn remembers(&self, back: usize) -> bool {
        back <= MAX_ROTATED_HASHES
    }
    /// `state` keeps the family's whole grant.
    fn assert_grant(&self, state: &Family, ctx: &str) {
        assert_eq!(state.id, self.id, "{ctx}: id");
        assert_eq!(
            state.subject,
            SUBJECTS[usize::from(self.subject)],
            "{ctx}: subject"
        );
        assert_eq!(state.client_id, CLIENT, "{ctx}: client");
        assert_eq!(state.scopes, self.scopes, "{ctx}: scopes");
        assert_eq!(state.dpop_jkt.is_some(), self.bound, "{ctx}: binding");
        assert_eq!(state.audience, self.audience, "{ctx}: audience");
        assert_eq!(
            state.claims_json.as_deref().map(str::as_bytes),
            self.claims_json.as_deref().map(str::as_bytes),
            "{ctx}: claims"
        );
        assert_eq!(
            state.access_ttl, self.access_ttl,
            "{ctx}: access-token lifetime"
        );
    }
}

/// What a refresh presents.
#[derive(Clone, Copy, Debug)]
struct Presented {
    /// Generations back from the current token.
    back: usize,
    dpop: Dpop,
    scopes: Option<u8>,
    audience: Option<u8>,
    client: Client,
}

impl Presented {
    /// The current token, as its client with its key, asking for the whole grant.
    fn current() -> Self {
        Presented {
            back: 0,
            dpop: Dpop::Right,
            scopes: None,
            audience: None,
            client: Client::Right,
        }
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
    Audience,
    ClientMismatch,
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
            Err(Error::AudienceExceeded) => Got::Audience,
            Err(Error::ClientMismatch) => Got::ClientMismatch,
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
                audience,
                claims,
                access_ttl,
            } => {
                let details = GrantDetails {
                    audience: mask_audience(audience & 0x07),
                    claims_json: CLAIMS[usize::from(claims) % CLAIMS.len()].map(str::to_owned),
                    access_ttl,
                };
                self.issue(subject, bound, scopes, &details, ctx).await;
            }
            Op::Refresh {
                family,
                back,
                dpop,
                scopes,
                audience,
                client,
            } => {
                if let Some(i) = self.pick(family) {
                    let req = Presented {
                        back: usize::from(back),
                        dpop,
                        scopes,
                        audience,
                        client,
                    };
                    self.refresh(i, req, ctx).await;
                }
            }
            Op::RotateMany { family, times } => {
                if let Some(i) = self.pick(family) {
                    for k in 0..times {
                        let ctx = format!("{ctx} (rotation {k})");
                        if !self.refresh(i, Presented::current(), &ctx).await {
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
            Op::RevokeToken {
                family,
                back,
                client,
            } => {
                if let Some(i) = self.pick(family) {
                    self.revoke(i, Some((usize::from(back), client)), ctx).await;
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

    async fn issue(
        &mut self,
        subject: u8,
        bound: bool,
        mask: u8,
        details: &GrantDetails,
        ctx: &str,
    ) {
        if self.families.len() >= MAX_FAMILIES {
            return;
        }
        let scopes = mask_scopes(mask & 0x0f);
        let jkt = bound.then_some(JKT);
        let subject_name = SUBJECTS[usize::from(subject) % SUBJECTS.len()];
        let (token, family) = self
            .rotator
            .issue_with(subject_name, CLIENT, &scopes, jkt, details, self.now)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: issue failed: {e:?}"));
        let absolute = self.now + self.cfg.lifetime();
        let idle = (self.now + self.cfg.idle()).min(absolute);
        assert_eq!(family.absolute_expires_at, absolute, "{ctx}");
        assert_eq!(family.idle_expires_at, idle, "{ctx}");
        assert_eq!(family.scopes, scopes, "{ctx}");
        assert_eq!(family.generation, 0, "{ctx}");
        assert_eq!(token.family_id(), family.id, "{ctx}");
        let f = ModelFamily {
            id: family.id,
            subject: subject % 3,
            scopes,
            audience: details.audience.clone(),
            claims_json: details.claims_json.clone(),
            access_ttl: details.access_ttl.filter(|ttl| *ttl > 0),
            bound,
            absolute,
            idle,
            tokens: vec![token],
            grace: None,
            revoked: Tri::No,
            listing: Listing::No,
            last: Some(family.clone()),
        };
        f.assert_grant(&family, &format!("{ctx}: issued"));
        self.families.push(f);
        self.assert_unchanged(self.families.len() - 1, ctx).await;
    }

    /// The stored family is the last one seen (a refusal changed nothing); only for a live
    /// family.
    async fn assert_unchanged(&self, i: usize, ctx: &str) {
        let f = &self.families[i];
        let Some(last) = &f.last else { return };
        let stored = self
            .backend
            .store
            .get(&f.id)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: get failed: {e:?}"))
            .unwrap_or_else(|| panic!("{ctx}: live family not stored"));
        assert_eq!(&stored, last, "{ctx}: the stored family changed");
    }

    /// Reads the stored family back as the last one seen, checking its grant.
    async fn resync(&mut self, i: usize, ctx: &str) -> Option<Family> {
        let id = self.families[i].id;
        let stored = self
            .backend
            .store
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: get failed: {e:?}"));
        let f = &mut self.families[i];
        if let Some(state) = &stored {
            f.assert_grant(state, &format!("{ctx}: stored"));
        }
        f.last.clone_from(&stored);
        stored
    }

    async fn refresh(&mut self, i: usize, req: Presented, ctx: &str) -> bool {
        let Presented {
            back,
            dpop,
            scopes,
            audience,
            client,
        } = req;
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
        let requested_audience = audience.map(mask_audience);
        let got = Got::from(
            self.rotator
                .refresh(
                    token.as_str(),
                    client.id(),
                    jkt,
                    requested.as_deref(),
                    requested_audience.as_deref(),
                    now,
                )
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
            f.last = None;
            return false;
        }
        if !f.remembers(back) {
            assert!(
                matches!(got, Got::Forged),
                "{ctx}: expected Forged, got {got:?}"
            );
            self.assert_unchanged(i, ctx).await;
            return false;
        }
        assert_ne!(f.revoked, Tri::Maybe, "{ctx}: model invariant");
        if f.revoked == Tri::Yes {
            assert!(
                matches!(got, Got::Revoked),
                "{ctx}: expected Revoked, got {got:?}"
            );
            self.assert_unchanged(i, ctx).await;
            return false;
        }
        if client != Client::Right {
            // Whatever token, key or narrowing: refused, and not reuse.
            assert!(
                matches!(got, Got::ClientMismatch),
                "{ctx}: expected ClientMismatch, got {got:?}"
            );
            self.assert_unchanged(i, ctx).await;
            return false;
        }
        if f.bound && dpop != Dpop::Right {
            let ok = match dpop {
                Dpop::Missing => matches!(got, Got::DpopMissing),
                _ => matches!(got, Got::DpopOther),
            };
            assert!(ok, "{ctx}: expected a DPoP refusal, got {got:?}");
            self.assert_unchanged(i, ctx).await;
            return false;
        }
        let scope_ok = requested
            .as_ref()
            .is_none_or(|r| r.iter().all(|s| f.scopes.contains(s)));
        let audience_ok = requested_audience
            .as_ref()
            .is_none_or(|r| r.iter().all(|a| f.audience.contains(a)));
        // Scopes are checked first.
        type Refusal = (&'static str, fn(&Got) -> bool);
        let narrowing_refused: Option<Refusal> = if !scope_ok {
            Some(("Scope", |got| matches!(got, Got::Scope)))
        } else if !audience_ok {
            Some(("Audience", |got| matches!(got, Got::Audience)))
        } else {
            None
        };
        let expected_scopes = requested.clone().unwrap_or_else(|| f.scopes.clone());
        let grace_on = window > 0;
        let grace_retry = back == 1
            && grace_on
            && f.grace
                .is_some_and(|(at, uses)| now < at + window && uses < max_uses);
        if back == 0 || grace_retry {
            // A rotation or a grace retry, unless the narrowing is refused.
            if let Some((expected, refused)) = narrowing_refused {
                assert!(refused(&got), "{ctx}: expected {expected}, got {got:?}");
                self.assert_unchanged(i, ctx).await;
                return false;
            }
            let what = if grace_retry {
                "grace retry"
            } else {
                "rotation"
            };
            let Got::Ok(out) = got else {
                panic!("{ctx}: expected a {what}, got {got:?}")
            };
            f.assert_grant(&out.family, &format!("{ctx}: {what}"));
            f.last = Some(out.family.clone());
            assert_eq!(out.is_grace_retry, grace_retry, "{ctx}");
            assert_eq!(out.scopes, expected_scopes, "{ctx}");
            if grace_retry {
                assert_eq!(
                    &out.token, &f.tokens[generation],
                    "{ctx}: not the same successor"
                );
                assert_eq!(out.family.generation, generation as u64, "{ctx}");
                if let Some((_, uses)) = f.grace.as_mut() {
                    *uses += 1;
                    assert_eq!(
                        out.family.grace.as_ref().map(|g| g.uses),
                        Some(*uses),
                        "{ctx}"
                    );
                }
            } else {
                assert_eq!(out.family.generation, generation as u64 + 1, "{ctx}");
                assert_eq!(out.family.absolute_expires_at, f.absolute, "{ctx}");
                f.idle = (now + idle_ttl).min(f.absolute);
                assert_eq!(out.family.idle_expires_at, f.idle, "{ctx}");
                assert_eq!(out.family.scopes, f.scopes, "{ctx}");
                assert_eq!(out.token.family_id(), f.id, "{ctx}");
                assert!(!f.tokens.contains(&out.token), "{ctx}: token repeated");
                f.tokens.push(out.token);
                f.grace = grace_on.then_some((now, 0));
            }
        } else {
            assert!(
                matches!(got, Got::Reuse),
                "{ctx}: expected Reuse, got {got:?}"
            );
            f.revoked = Tri::Yes;
            f.grace = None;
            f.listing = Listing::Until(now + ttl);
            f.last = None;
        }
        // The stored state agrees.
        let succeeded = f.revoked == Tri::No;
        let (generation, revoked) = (f.generation() as u64, f.revoked == Tri::Yes);
        let returned = f.last.take();
        let stored = self
            .resync(i, ctx)
            .await
            .unwrap_or_else(|| panic!("{ctx}: live family not stored"));
        assert_eq!(stored.generation, generation, "{ctx}");
        assert_eq!(stored.revoked.is_some(), revoked, "{ctx}");
        if let Some(returned) = returned {
            assert_eq!(stored, returned, "{ctx}: stored and returned states differ");
        }
        succeeded
    }

    async fn forge(&mut self, i: usize, ctx: &str) {
        let f = &self.families[i];
        let forged = RefreshToken::generate(f.id).unwrap();
        let got = Got::from(
            self.rotator
                .refresh(forged.as_str(), CLIENT, Some(JKT), None, None, self.now)
                .await,
        );
        let ok =
            matches!(got, Got::Forged) || (f.expired(self.now) && matches!(got, Got::NotFound));
        assert!(ok, "{ctx}: forged token: got {got:?}");
        if !f.expired(self.now) {
            self.assert_unchanged(i, ctx).await;
        }
    }

    /// Revokes by token (`back` generations before the current one, presented by `client`)
    /// or, with `None`, by family id.
    async fn revoke(&mut self, i: usize, by_token: Option<(usize, Client)>, ctx: &str) {
        let now = self.now;
        let ttl = self.cfg.ttl();
        let f = &self.families[i];
        let outcome = match by_token {
            Some((back, client)) => {
                let back = back.min(f.generation());
                let token = f.tokens[f.generation() - back].clone();
                let out = self
                    .rotator
                    .revoke_token(token.as_str(), client.id(), now)
                    .await;
                (out, f.remembers(back))
            }
            None => (self.rotator.revoke_family(&f.id, now).await, true),
        };
        let (out, known) = outcome;
        // Only a revocation by token names a client.
        let wrong_client = by_token.is_some_and(|(_, client)| client != Client::Right);
        let out = out.unwrap_or_else(|e| panic!("{ctx}: revoke failed: {e:?}"));
        let f = &mut self.families[i];
        if f.expired(now) {
            // The backend may have forgotten the family: then a token proves nothing
            // (`NotFound`), and a revocation by id lists a tombstone unless the family is
            // listed already.
            match out {
                RevokeOutcome::NotFound if by_token.is_some() => {}
                RevokeOutcome::Tombstoned(entry) if by_token.is_none() && !f.surely_listed(now) => {
                    assert_eq!(
                        entry,
                        RevocationEvent {
                            family_id: f.id,
                            reason: RevocationReason::FamilyRevoked,
                            revoked_at: now,
                            listed_until: now + ttl,
                        },
                        "{ctx}: tombstone"
                    );
                    f.revoked = Tri::Yes;
                    f.listing = Listing::Until(now + ttl);
                }
                RevokeOutcome::Forged if !known => {}
                RevokeOutcome::ClientMismatch if known && wrong_client => {}
                RevokeOutcome::AlreadyRevoked if known && !wrong_client && f.revoked != Tri::No => {
                    // Revoked by one of the earlier subject revocations; which one (and so
                    // the listing's end) stays unknown.
                    f.revoked = Tri::Yes;
                }
                RevokeOutcome::Revoked(ref state)
                    if known && !wrong_client && f.revoked != Tri::Yes =>
                {
                    f.assert_grant(state, &format!("{ctx}: revoked"));
                    f.revoked = Tri::Yes;
                    f.listing = Listing::Until(now + ttl);
                }
                other => panic!("{ctx}: expired family: got {other:?}"),
            }
            f.last = None;
            return;
        }
        match (known, f.revoked, out) {
            (false, _, RevokeOutcome::Forged) => self.assert_unchanged(i, ctx).await,
            (true, _, RevokeOutcome::ClientMismatch) if wrong_client => {
                self.assert_unchanged(i, ctx).await;
            }
            (true, Tri::Yes, RevokeOutcome::AlreadyRevoked) if !wrong_client => {
                self.assert_unchanged(i, ctx).await;
            }
            (true, Tri::No, RevokeOutcome::Revoked(state)) if !wrong_client => {
                let reason = if by_token.is_some() {
                    RevocationReason::TokenRevoked
                } else {
                    RevocationReason::FamilyRevoked
                };
                assert_eq!(state.revoked, Some(Revocation { reason, at: now }), "{ctx}");
                f.assert_grant(&state, &format!("{ctx}: revoked"));
                f.revoked = Tri::Yes;
                f.grace = None;
                f.listing = Listing::Until(now + ttl);
                f.last = Some(state);
                self.assert_unchanged(i, ctx).await;
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
        let (mut already, mut newly) = (Vec::new(), Vec::new());
        for (i, f) in self.families.iter_mut().enumerate() {
            if f.subject != subject {
                continue;
            }
            if f.expired(now) {
                // The backend may have forgotten the family, but its subject index names it
                // until its absolute expiry at least: until then it is revoked if still stored
                // (counted) and listed as a tombstone if not (not counted), unless listed
                // already. Past the absolute expiry the index may have dropped it.
                let indexed = now < f.absolute;
                let listed_now = f.surely_listed(now);
                if f.revoked != Tri::Yes && !listed_now {
                    maybe += 1;
                }
                if !listed_now {
                    f.listing = if indexed && f.revoked == Tri::No {
                        Listing::Until(now + ttl)
                    } else {
                        // Not listed anew if still stored and revoked before (or no longer
                        // indexed).
                        let until = match f.listing {
                            Listing::Maybe(t) => t.max(now + ttl),
                            _ => now + ttl,
                        };
                        Listing::Maybe(until)
                    };
                }
                f.revoked = if indexed || f.revoked == Tri::Yes {
                    Tri::Yes
                } else {
                    Tri::Maybe
                };
                f.last = None;
            } else if f.revoked == Tri::No {
                min += 1;
                f.revoked = Tri::Yes;
                f.grace = None;
                f.listing = Listing::Until(now + ttl);
                newly.push(i);
            } else {
                already.push(i);
            }
        }
        assert!(
            (min..=min + maybe).contains(&count),
            "{ctx}: revoked {count}, expected {min}..={}",
            min + maybe
        );
        for i in already {
            self.assert_unchanged(i, ctx).await;
        }
        for i in newly {
            let stored = self
                .resync(i, ctx)
                .await
                .unwrap_or_else(|| panic!("{ctx}: live family not stored"));
            assert_eq!(
                stored.revoked,
                Some(Revocation {
                    reason: RevocationReason::SubjectRevoked,
                    at: now
                }),
                "{ctx}"
            );
            assert!(stored.grace.is_none(), "{ctx}");
        }
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
            if let Some(stored) = self.backend.store.get(&f.id).await.unwrap() {
                f.assert_grant(&stored, "at the end: stored");
            }
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

/// Audiences of the differential cases: characters JSON must escape, a `/` (which Redis's
/// `cjson` escapes), non-ASCII and a NUL (stores need not check what the `Rotator` does).
const ODD_AUDIENCES: [&str; 4] = [
    "https://a.example",
    "https://b.example/p",
    "urn:\"q\"",
    "é\u{0}",
];

/// The client id of the differential cases' families.
pub const CASE_CLIENT: &str = "c";

/// Custom claims text: none, JSON objects that a decoder would rewrite, and arbitrary text
/// (a store keeps it as a string and never parses it) made of the pieces JSON encoders treat
/// differently: `/`, `"`, `\`, NUL and other control characters, `é`, U+2028, an emoji,
/// long numbers.
fn claims_strategy() -> impl Strategy<Value = Option<String>> {
    let pieces = prop::sample::select(vec![
        "/",
        "\"",
        "\\",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "é",
        "\u{2028}",
        "\u{1F600}",
        "{",
        "}",
        "[]",
        "{}",
        ":",
        ",",
        "1.10",
        "12345678901234567890",
        "-0",
        "1e400",
        "a",
        " ",
        "\n",
    ]);
    prop_oneof![
        2 => Just(None),
        1 => Just(Some("{}".to_owned())),
        1 => Just(Some(
            r#"{"n":12345678901234567890,"e":[],"o":{},"p":"a/b","u":"é\u0000"}"#.to_owned()
        )),
        3 => prop::collection::vec(pieces, 0..12).prop_map(|v| Some(v.concat())),
    ]
}

/// An access-token lifetime: none, or any `u32` (0 and the largest included).
fn access_ttl_strategy() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()])
}

/// Arbitrary families around `now = 1000`, drawing hashes from a tiny alphabet (bytes 1 to 6)
/// so presented hashes often match; the current hash is never in the rotated list. The grant
/// is arbitrary too: audiences (maybe none), claims text, access-token lifetime; the client
/// is [`CASE_CLIENT`].
pub fn family_strategy() -> impl Strategy<Value = Family> {
    let audience = prop::sample::subsequence(ODD_AUDIENCES.to_vec(), 0..=ODD_AUDIENCES.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
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
        (
            scopes,
            jkt,
            audience,
            claims_strategy(),
            access_ttl_strategy(),
        ),
        995i64..1010,
        995i64..1010,
        0u64..100,
        prop::collection::vec(2u8..=6, 0..=MAX_ROTATED_HASHES + 2),
        grace,
        revoked,
    )
        .prop_map(
            |(
                (scopes, dpop_jkt, audience, claims_json, access_ttl),
                absolute,
                idle,
                generation,
                rotated,
                grace,
                revoked,
            )| Family {
                id: FamilyId::from_bytes([7; 16]),
                subject: "s".into(),
                client_id: CASE_CLIENT.into(),
                scopes,
                dpop_jkt,
                audience,
                claims_json,
                access_ttl,
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

/// A presenting client: mostly the family's ([`CASE_CLIENT`]), else another, the empty one
/// or one differing in case only.
pub fn case_client_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(CASE_CLIENT.to_owned()),
        2 => Just("c2".to_owned()),
        1 => Just(String::new()),
        1 => Just("C".to_owned()),
    ]
}

/// Arbitrary (family, rotation request) pairs at `now` 995 to 1010: feed both to
/// [`decide`](crate::decide) and to the backend's implementation and compare the outcomes
/// and new states. Requests come from any client (mostly the family's) and may narrow
/// scopes and audiences (to a subset, an empty list, or beyond the grant).
pub fn decide_cases() -> impl Strategy<Value = (Family, RotateRequest)> {
    let requested = prop::option::of(
        prop::sample::subsequence(vec!["a", "b", "c", "d"], 0..=4)
            .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>()),
    );
    let mut audiences = ODD_AUDIENCES.to_vec();
    audiences.push("https://other.example");
    let requested_audience = prop::option::of(
        prop::sample::subsequence(audiences.clone(), 0..=audiences.len())
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
        (
            case_client_strategy(),
            jkt,
            requested,
            requested_audience,
            any::<bool>(),
        ),
        995i64..1010,
        1i64..30,
        prop_oneof![Just(0i64), 1i64..15],
        0u32..4,
    )
        .prop_map(
            |(
                family,
                presented,
                (client_id, presented_jkt, requested_scopes, requested_audience, require_audience),
                now,
                idle_ttl,
                window,
                uses,
            )| {
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
                    client_id,
                    presented_jkt,
                    requested_scopes,
                    requested_audience,
                    require_audience,
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
/// [`decide_revoke`](crate::decide_revoke), with or without a presenting client (mostly the
/// family's when there is one).
pub fn revoke_cases() -> impl Strategy<Value = (Family, Option<TokenHash>, RevokeRequest)> {
    (
        family_strategy(),
        prop::option::of((0u8..=7).prop_map(hash)),
        prop::option::of(case_client_strategy()),
        0usize..4,
        995i64..1010,
    )
        .prop_map(|(family, presented, client_id, reason, now)| {
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
                    client_id,
                    now,
                    revocation_ttl: 300,
                },
            )
        })
}

/// Arbitrary (presented hash, revocation-list entry, revocation request) triples for
/// [`decide_revoke_absent`](crate::decide_revoke_absent): a revocation of a family of which
/// there is no record, by token (a presented hash, a client, or both) or by an operator
/// (neither), while the family is listed, was listed (lapsed around `now`) or never was.
/// The family is [`FamilyId::from_bytes`]`([7; 16])`, as in [`family_strategy`].
pub fn revoke_absent_cases()
-> impl Strategy<Value = (Option<TokenHash>, Option<RevocationEvent>, RevokeRequest)> {
    let reasons = [
        RevocationReason::ReuseDetected,
        RevocationReason::TokenRevoked,
        RevocationReason::FamilyRevoked,
        RevocationReason::SubjectRevoked,
    ];
    (
        prop::option::of((0u8..=7).prop_map(hash)),
        prop::option::of(case_client_strategy()),
        prop::option::of((0usize..4, 900i64..1000, 990i64..1020)),
        0usize..4,
        995i64..1010,
        prop_oneof![Just(1i64), 1i64..2000],
    )
        .prop_map(
            move |(presented, client, listed, reason, now, revocation_ttl)| {
                let listed = listed.map(|(reason, revoked_at, listed_until)| RevocationEvent {
                    family_id: FamilyId::from_bytes([7; 16]),
                    reason: reasons[reason],
                    revoked_at,
                    listed_until,
                });
                (
                    presented,
                    listed,
                    RevokeRequest {
                        reason: reasons[reason],
                        client_id: client,
                        now,
                        revocation_ttl,
                    },
                )
            },
        )
}
