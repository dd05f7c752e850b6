//! The schedule of managed keys as a pure function of the stored records and the clock.
//!
//! Every instance of a fleet reads the same records and computes the same [`Plan`], so they
//! agree on the signing key and serve the same JWK Set (same bytes, same `ETag`) without any
//! message between them: the only coordination is the store's atomic creation of each
//! generation.

use std::collections::HashMap;

use crate::error::{Error, Result};

use super::record::KeyRecord;

/// The durations the schedule derives from, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timing {
    /// The JWK Set's `Cache-Control: max-age` (`JWKS_MAX_AGE`): how long a verifier may hold a
    /// copy that lacks a new key.
    pub max_age: u64,
    /// Added to every wait: the longest an instance may take to learn of a new record (its
    /// periodic read of the store), plus clock skew between instances.
    pub margin: u64,
    /// How long each key signs (`KEY_ROTATION_PERIOD`).
    pub rotation_period: u64,
    /// How long a key stays published after it stopped signing: the longest access-token
    /// lifetime plus the verifiers' leeway on `exp` (the margin is added by [`Timing::retain`]).
    pub token_lifetime: u64,
}

impl Timing {
    /// A timing; see the fields.
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`] when a key would sign for less than the pre-publication
    /// time of the next one (`rotation_period < max_age + margin`) or `rotation_period` is 0.
    pub fn new(
        max_age: u64,
        margin: u64,
        rotation_period: u64,
        token_lifetime: u64,
    ) -> Result<Self> {
        let t = Timing {
            max_age,
            margin,
            rotation_period,
            token_lifetime,
        };
        if rotation_period == 0 || rotation_period < t.lead() {
            return Err(Error::InvalidSchedule(
                "KEY_ROTATION_PERIOD must be at least JWKS_MAX_AGE plus the propagation margin",
            ));
        }
        Ok(t)
    }

    /// How long a new key is published before it signs: `max_age + margin`.
    pub fn lead(&self) -> u64 {
        self.max_age.saturating_add(self.margin)
    }

    /// How long a key stays published after it stopped signing:
    /// `token_lifetime + margin`.
    pub fn retain(&self) -> u64 {
        self.token_lifetime.saturating_add(self.margin)
    }
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Where one key is in its life at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManagedState {
    /// Published, not signing yet.
    Pending,
    /// Signing (and published).
    Active,
    /// Published, no longer signing: tokens it signed may still be in use.
    Retiring,
    /// Past its retention: no longer published, its record may be deleted.
    Expired,
    /// Retired by an operator (`keys retire`): not published, its tokens refused.
    Retired,
}

impl ManagedState {
    /// The lowercase name (`"pending"`, …), for logs, metrics and `keys list`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedState::Pending => "pending",
            ManagedState::Active => "active",
            ManagedState::Retiring => "retiring",
            ManagedState::Expired => "expired",
            ManagedState::Retired => "retired",
        }
    }

    /// Whether the key is in the JWK Set and verifies tokens.
    pub fn published(self) -> bool {
        matches!(
            self,
            ManagedState::Pending | ManagedState::Active | ManagedState::Retiring
        )
    }
}

/// One key in a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPlan {
    /// The record's generation.
    pub generation: u64,
    /// The key id.
    pub kid: String,
    /// The state at the plan's time.
    pub state: ManagedState,
    /// When it was created (and published).
    pub created_at: i64,
    /// When it starts (or started) signing.
    pub activates_at: i64,
    /// When it stops signing: the next key's `activates_at`, or the time of an emergency
    /// retirement; `None` while no next key exists.
    pub retires_at: Option<i64>,
    /// When it leaves the JWK Set.
    pub unpublished_at: Option<i64>,
}

/// What every instance does at one time, given the records.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The plan's time.
    pub now: i64,
    /// Every record's key, by generation.
    pub keys: Vec<KeyPlan>,
    /// The generation that signs now. Normally the [`ManagedState::Active`] key; after an
    /// emergency retirement left no active key, the oldest pending one (signing must go on;
    /// verifiers that refetch the JWK Set on an unknown `kid` accept it at once).
    pub signing: Option<u64>,
    /// When the next generation should be created (at or before `now`: now), and when it will
    /// then start signing.
    pub next_key: Option<(i64, i64)>,
    /// The next time the plan changes by the clock alone (a state boundary).
    pub next_change_at: Option<i64>,
}

impl Plan {
    /// The keys published now (pending, active, retiring), by generation.
    pub fn published(&self) -> impl Iterator<Item = &KeyPlan> {
        self.keys.iter().filter(|k| k.state.published())
    }

    /// The plan of one key.
    pub fn key(&self, kid: &str) -> Option<&KeyPlan> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Whether a new generation is due now.
    pub fn key_due(&self) -> bool {
        self.next_key.is_some_and(|(at, _)| at <= self.now)
    }
}

/// Computes the plan at `now` for `records` (any order) and the emergency retirements
/// `retired` (`kid` → time).
///
/// - Generation `n` signs from its `activates_at` until the next non-retired generation's
///   `activates_at`, and stays published `timing.retain()` after that.
/// - A retired key is neither published nor signing, from the time of its retirement on.
/// - The next generation is due `timing.lead()` before the newest key has signed for
///   `rotation_period`; it then signs at `max(now + lead, newest.activates_at + period)`, so
///   it has always been published for `lead` before it signs. With no key at all, or none
///   that can sign, a new one is due at once and signs at once.
pub fn plan(
    records: &[KeyRecord],
    retired: &HashMap<String, i64>,
    timing: &Timing,
    now: i64,
) -> Plan {
    let mut sorted: Vec<&KeyRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.generation);
    let live: Vec<&KeyRecord> = sorted
        .iter()
        .copied()
        .filter(|r| !retired.contains_key(&r.kid))
        .collect();
    let retain = secs(timing.retain());
    let mut boundaries = Vec::new();
    let keys: Vec<KeyPlan> = sorted
        .iter()
        .map(|r| {
            if let Some(&at) = retired.get(&r.kid) {
                return KeyPlan {
                    generation: r.generation,
                    kid: r.kid.clone(),
                    state: ManagedState::Retired,
                    created_at: r.created_at,
                    activates_at: r.activates_at,
                    retires_at: Some(at),
                    unpublished_at: Some(at),
                };
            }
            let retires_at = live
                .iter()
                .find(|n| n.generation > r.generation)
                .map(|n| n.activates_at.max(r.activates_at));
            let unpublished_at = retires_at.map(|at| at.saturating_add(retain));
            let state = if now < r.activates_at {
                ManagedState::Pending
            } else if retires_at.is_none_or(|at| now < at) {
                ManagedState::Active
            } else if unpublished_at.is_some_and(|at| now < at) {
                ManagedState::Retiring
            } else {
                ManagedState::Expired
            };
            boundaries.extend(
                [Some(r.activates_at), retires_at, unpublished_at]
                    .into_iter()
                    .flatten(),
            );
            KeyPlan {
                generation: r.generation,
                kid: r.kid.clone(),
                state,
                created_at: r.created_at,
                activates_at: r.activates_at,
                retires_at,
                unpublished_at,
            }
        })
        .collect();
    let signing = keys
        .iter()
        .find(|k| k.state == ManagedState::Active)
        .or_else(|| keys.iter().find(|k| k.state == ManagedState::Pending))
        .map(|k| k.generation);
    let newest = live.last();
    let has_active = keys.iter().any(|k| k.state == ManagedState::Active);
    let next_key = match newest {
        _ if !has_active && signing.is_none() => Some((now, now)),
        None => Some((now, now)),
        Some(newest) if newest.activates_at > now => None,
        Some(newest) => {
            let period_end = newest
                .activates_at
                .saturating_add(secs(timing.rotation_period));
            let due = period_end.saturating_sub(secs(timing.lead()));
            let at = if due <= now { now } else { due };
            Some((at, period_end.max(at.saturating_add(secs(timing.lead())))))
        }
    };
    boundaries.extend(next_key.map(|(at, _)| at));
    Plan {
        now,
        keys,
        signing,
        next_key,
        next_change_at: boundaries.into_iter().filter(|t| *t > now).min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::record::Wrapped;
    use proptest::prelude::*;
    use token_jwt::{Algorithm, PrivateKey};

    fn rec(generation: u64, created_at: i64, activates_at: i64) -> KeyRecord {
        let key = PrivateKey::generate(Algorithm::EdDSA).expect("key");
        KeyRecord::new(
            generation,
            key.public_jwk(),
            Algorithm::EdDSA,
            Wrapped::Kek(String::new()),
            created_at,
            activates_at,
        )
    }

    fn timing() -> Timing {
        // max-age 300, margin 60, a key per day, tokens of 15 min + 60 s leeway
        Timing::new(300, 60, 86_400, 960).expect("timing")
    }

    #[test]
    fn no_keys_means_one_is_due_now_and_signs_at_once() {
        let p = plan(&[], &HashMap::new(), &timing(), 1000);
        assert_eq!(p.next_key, Some((1000, 1000)));
        assert!(p.key_due());
        assert_eq!(p.signing, None);
    }

    #[test]
    fn a_full_rotation() {
        let t = timing();
        let first = rec(1, 0, 0);
        // Before the due time: nothing to do.
        let p = plan(std::slice::from_ref(&first), &HashMap::new(), &t, 1000);
        assert_eq!(p.signing, Some(1));
        assert_eq!(p.next_key, Some((86_400 - 360, 86_400)));
        assert!(!p.key_due());
        assert_eq!(p.next_change_at, Some(86_400 - 360));
        // The next key is created when due and signs after the lead.
        let second = rec(2, 86_040, 86_400);
        let both = [first.clone(), second.clone()];
        let p = plan(&both, &HashMap::new(), &t, 86_100);
        assert_eq!(p.signing, Some(1));
        assert_eq!(p.keys[1].state, ManagedState::Pending);
        assert_eq!(p.published().count(), 2);
        assert_eq!(p.next_key, None, "a pending key exists");
        // At its activation the old key retires and stays published for `retain`.
        let p = plan(&both, &HashMap::new(), &t, 86_400);
        assert_eq!(p.signing, Some(2));
        assert_eq!(p.keys[0].state, ManagedState::Retiring);
        assert_eq!(p.keys[0].unpublished_at, Some(86_400 + 1020));
        let p = plan(&both, &HashMap::new(), &t, 86_400 + 1020);
        assert_eq!(p.keys[0].state, ManagedState::Expired);
        assert_eq!(p.published().count(), 1);
    }

    #[test]
    fn a_late_claim_still_waits_for_the_lead() {
        // Every instance was down at the due time: the key created late still waits `lead`.
        let t = timing();
        let p = plan(&[rec(1, 0, 0)], &HashMap::new(), &t, 200_000);
        assert_eq!(p.next_key, Some((200_000, 200_360)));
    }

    #[test]
    fn retiring_the_active_key_makes_a_new_key_due_now() {
        let t = timing();
        let first = rec(1, 0, 0);
        let retired = HashMap::from([(first.kid.clone(), 500)]);
        let p = plan(&[first], &retired, &t, 600);
        assert_eq!(p.keys[0].state, ManagedState::Retired);
        assert_eq!(p.signing, None);
        assert_eq!(p.next_key, Some((600, 600)));
        assert_eq!(p.published().count(), 0);
    }

    #[test]
    fn retiring_the_active_key_signs_with_the_pending_one() {
        let t = timing();
        let (a, b) = (rec(1, 0, 0), rec(2, 86_040, 86_400));
        let retired = HashMap::from([(a.kid.clone(), 86_100)]);
        let p = plan(&[a, b], &retired, &t, 86_101);
        assert_eq!(p.signing, Some(2), "the pending key signs early");
        assert_eq!(p.next_key, None, "and is the next key: none is due");
    }

    #[test]
    fn refuses_a_period_shorter_than_the_lead() {
        assert!(Timing::new(300, 60, 359, 900).is_err());
        assert!(Timing::new(300, 60, 0, 900).is_err());
        assert!(Timing::new(2, 2, 4, 3).is_ok());
    }

    proptest! {
        /// Whatever the times, generations created by the plan's own `next_key` never sign
        /// before they were published for `lead`, exactly one key signs, and a key that signed
        /// stays published `retain` after it stopped.
        #[test]
        fn keys_made_by_the_plan_keep_the_invariants(
            period in 4u64..50, max_age in 0u64..10, margin in 0u64..5, life in 0u64..60,
            steps in proptest::collection::vec(1i64..40, 1..60),
        ) {
            prop_assume!(period >= max_age + margin);
            let t = Timing::new(max_age, margin, period, life).expect("timing");
            let mut records: Vec<KeyRecord> = Vec::new();
            let mut now = 0i64;
            let mut signed_until: HashMap<u64, i64> = HashMap::new();
            for step in steps {
                now += step;
                let p = plan(&records, &HashMap::new(), &t, now);
                if p.key_due() {
                    let (_, activates_at) = p.next_key.expect("due");
                    let g = records.len() as u64 + 1;
                    prop_assert!(records.is_empty() || activates_at >= now + t.lead() as i64);
                    records.push(rec(g, now, activates_at));
                }
                let p = plan(&records, &HashMap::new(), &t, now);
                let active = p.keys.iter().filter(|k| k.state == ManagedState::Active).count();
                prop_assert_eq!(active, 1);
                let s = p.signing.expect("a key signs");
                signed_until.insert(s, now);
                for (g, until) in &signed_until {
                    if now <= until + t.retain() as i64 {
                        prop_assert!(p.keys.iter().any(|k| k.generation == *g && k.state.published()),
                            "generation {} signed at {} and left before {}", g, until, now);
                    }
                }
            }
        }
    }
}
