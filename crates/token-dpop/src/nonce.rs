//! Stateless server nonces (RFC 9449 sections 8 and 9).
//!
//! A nonce is `base64url(key_id[4] || step[8] || tag[16])`: `step` is `floor(now / step
//! length)` as a big-endian `i64`, `tag` the first 16 bytes of
//! HMAC-SHA-256(key, `"token-dpop nonce v1" || key_id || step`), and `key_id` four bytes
//! derived from the key itself (an HMAC of a fixed label), so instances that share a key agree
//! on its id without configuring one. Nothing is stored: any instance holding the key can
//! check a nonce another issued.
//!
//! A nonce issued at step `s` is accepted while the current step is in `s ..= s + N - 1`
//! ([`NonceIssuer::with_valid_steps`], default 3 steps of 60 s: a nonce lives between two and
//! three minutes), and also one step early, for instances whose clocks differ slightly.
//!
//! Keys rotate: [`NonceIssuer::rotate`] makes a new key current and keeps the old one as a
//! previous key (checking only), up to [`NonceIssuer::with_max_previous_keys`]. A nonce made
//! with a key that has left the set is refused as [`Error::NonceInvalid`]. Keys are zeroized on
//! drop and never printed; tags are compared in constant time.

use std::fmt;
use std::sync::{PoisonError, RwLock};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"token-dpop nonce v1";
const KEY_ID_LABEL: &[u8] = b"token-dpop nonce key id";
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
const NONCE_BYTES: usize = KEY_ID_LEN + 8 + TAG_LEN;
/// Length of a nonce in characters (base64url of 28 bytes).
pub const NONCE_LEN: usize = (NONCE_BYTES * 4).div_ceil(3);

/// Default step length in seconds.
pub const DEFAULT_STEP_SECONDS: u64 = 60;
/// Default number of steps a nonce is valid for.
pub const DEFAULT_VALID_STEPS: u32 = 3;
/// Default number of previous keys kept for checking after a rotation.
pub const DEFAULT_MAX_PREVIOUS_KEYS: usize = 1;

/// A 256-bit nonce key. Zeroized on drop; `Debug` shows only its id.
#[derive(Clone)]
pub struct NonceKey {
    id: [u8; KEY_ID_LEN],
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A new random key from the OS CSPRNG.
    ///
    /// # Errors
    /// [`Error::Random`] when the OS random number generator fails.
    pub fn generate() -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(secret.as_mut_slice()).map_err(|_| Error::Random)?;
        Ok(NonceKey::from_secret(secret))
    }

    /// A key from 32 secret bytes (for instance loaded from a secret store, to share between
    /// instances). The caller should zeroize its own copy.
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        NonceKey::from_secret(Zeroizing::new(*secret))
    }

    fn from_secret(secret: Zeroizing<[u8; 32]>) -> Self {
        let mut key = NonceKey {
            id: [0; KEY_ID_LEN],
            secret,
        };
        let mut mac = key.mac();
        mac.update(KEY_ID_LABEL);
        let digest = mac.finalize().into_bytes();
        for (d, s) in key.id.iter_mut().zip(digest.iter()) {
            *d = *s;
        }
        key
    }

    /// The key's public id as 8 hex digits (for logs).
    pub fn key_id(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(&self) -> HmacSha256 {
        match <HmacSha256 as KeyInit>::new_from_slice(self.secret.as_slice()) {
            Ok(mac) => mac,
            // HMAC takes keys of any length (RFC 2104 section 2).
            Err(_) => unreachable!("HMAC accepts a 32-byte key"),
        }
    }

    fn tagged(&self, step: i64) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(DOMAIN);
        mac.update(&self.id);
        mac.update(&step.to_be_bytes());
        mac
    }
}

struct Keys {
    current: NonceKey,
    previous: Vec<NonceKey>,
}

/// Issues and checks stateless nonces; see the [module docs](self).
pub struct NonceIssuer {
    step_seconds: i64,
    valid_steps: i64,
    max_previous: usize,
    keys: RwLock<Keys>,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let previous: Vec<String> = keys.previous.iter().map(NonceKey::key_id).collect();
        f.debug_struct("NonceIssuer")
            .field("step_seconds", &self.step_seconds)
            .field("valid_steps", &self.valid_steps)
            .field("current_key", &keys.current.key_id())
            .field("previous_keys", &previous)
            .finish()
    }
}

impl NonceIssuer {
    /// An issuer with `key` current, 60-second steps, nonces valid for 3 steps, and one
    /// previous key kept after a rotation.
    pub fn new(key: NonceKey) -> Self {
        NonceIssuer {
            step_seconds: DEFAULT_STEP_SECONDS.cast_signed(),
            valid_steps: i64::from(DEFAULT_VALID_STEPS),
            max_previous: DEFAULT_MAX_PREVIOUS_KEYS,
            keys: RwLock::new(Keys {
                current: key,
                previous: Vec::new(),
            }),
        }
    }

    /// Sets the step length in seconds (at least 1, at most a year).
    #[must_use]
    pub fn with_step_seconds(mut self, seconds: u64) -> Self {
        self.step_seconds = i64::try_from(seconds.clamp(1, 366 * 86_400)).unwrap_or(60);
        self
    }

    /// Sets the number of steps a nonce is valid for (at least 1).
    #[must_use]
    pub fn with_valid_steps(mut self, steps: u32) -> Self {
        self.valid_steps = i64::from(steps.max(1));
        self
    }

    /// Sets how many previous keys are kept for checking after rotations.
    #[must_use]
    pub fn with_max_previous_keys(mut self, n: usize) -> Self {
        self.max_previous = n;
        self.keys_mut().previous.truncate(n);
        self
    }

    /// Adds keys that are checked but no longer used to issue (newest first), for instance
    /// when a restarted instance loads the key set.
    #[must_use]
    pub fn with_previous_keys(mut self, keys: impl IntoIterator<Item = NonceKey>) -> Self {
        let max = self.max_previous;
        let k = self.keys_mut();
        k.previous.extend(keys);
        k.previous.truncate(max);
        self
    }

    fn keys_mut(&mut self) -> &mut Keys {
        self.keys.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `key` the current key. The old current key is kept for checking (the oldest
    /// previous key beyond the limit is dropped, and its nonces are refused from then on).
    pub fn rotate(&self, key: NonceKey) {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut keys.current, key);
        keys.previous.insert(0, old);
        keys.previous.truncate(self.max_previous);
    }

    /// Drops every previous key: only nonces of the current key are accepted from now on.
    pub fn retire_previous_keys(&self) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .previous
            .clear();
    }

    fn step(&self, now: i64) -> i64 {
        now.div_euclid(self.step_seconds)
    }

    /// A fresh nonce for the time `now` (Unix seconds).
    pub fn issue(&self, now: i64) -> String {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = &keys.current;
        let step = self.step(now);
        let step_bytes = step.to_be_bytes();
        let tag = key.tagged(step).finalize().into_bytes();
        let mut raw = [0u8; NONCE_BYTES];
        let parts = key
            .id
            .iter()
            .chain(step_bytes.iter())
            .chain(tag.iter().take(TAG_LEN));
        for (d, s) in raw.iter_mut().zip(parts) {
            *d = *s;
        }
        token_jwt::base64url::encode(raw)
    }

    /// Checks a nonce received in a proof at time `now`.
    ///
    /// # Errors
    /// [`Error::NonceInvalid`] (not made by a key of this issuer, or malformed) or
    /// [`Error::NonceStale`], each carrying a fresh nonce.
    pub fn check(&self, nonce: &str, now: i64) -> Result<()> {
        match self.verify(nonce, now) {
            Verdict::Valid => Ok(()),
            Verdict::Invalid => Err(Error::NonceInvalid {
                fresh_nonce: self.issue(now),
            }),
            Verdict::Stale => Err(Error::NonceStale {
                fresh_nonce: self.issue(now),
            }),
        }
    }

    fn verify(&self, nonce: &str, now: i64) -> Verdict {
        if nonce.len() != NONCE_LEN {
            return Verdict::Invalid;
        }
        let Some(raw) = token_jwt::base64url::decode_array::<NONCE_BYTES>(nonce) else {
            return Verdict::Invalid;
        };
        let (id, rest) = raw.split_at(KEY_ID_LEN);
        let (step_bytes, tag) = rest.split_at(8);
        let mut step = [0u8; 8];
        for (d, s) in step.iter_mut().zip(step_bytes) {
            *d = *s;
        }
        let step = i64::from_be_bytes(step);

        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let authentic = std::iter::once(&keys.current)
            .chain(keys.previous.iter())
            .filter(|k| k.id.as_slice() == id)
            .any(|k| k.tagged(step).verify_truncated_left(tag).is_ok());
        if !authentic {
            return Verdict::Invalid;
        }
        let current = self.step(now);
        if step > current.saturating_add(1) {
            // Made for a time further ahead than clock skew explains.
            Verdict::Invalid
        } else if current.saturating_sub(step) >= self.valid_steps {
            Verdict::Stale
        } else {
            Verdict::Valid
        }
    }
}

enum Verdict {
    Valid,
    Invalid,
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000;

    fn key(b: u8) -> NonceKey {
        NonceKey::from_bytes(&[b; 32])
    }

    #[test]
    fn round_trip_and_lifetime() {
        let issuer = NonceIssuer::new(key(1));
        let n = issuer.issue(T);
        assert_eq!(n.len(), NONCE_LEN);
        issuer.check(&n, T).unwrap();
        let step_start = T - T.rem_euclid(60);
        // valid through the end of the third step
        issuer.check(&n, step_start + 3 * 60 - 1).unwrap();
        let e = issuer.check(&n, step_start + 3 * 60).unwrap_err();
        assert!(matches!(e, Error::NonceStale { .. }), "{e:?}");
        // the fresh nonce of an error is itself valid
        issuer
            .check(e.fresh_nonce().unwrap(), step_start + 3 * 60)
            .unwrap();
        // one step early is tolerated, two are not
        issuer.check(&n, step_start - 1).unwrap();
        assert!(matches!(
            issuer.check(&n, step_start - 61),
            Err(Error::NonceInvalid { .. })
        ));
    }

    #[test]
    fn configurable_step_and_validity() {
        let issuer = NonceIssuer::new(key(1))
            .with_step_seconds(10)
            .with_valid_steps(1);
        let start = T - T.rem_euclid(10);
        let n = issuer.issue(start);
        issuer.check(&n, start + 9).unwrap();
        assert!(matches!(
            issuer.check(&n, start + 10),
            Err(Error::NonceStale { .. })
        ));
    }

    #[test]
    fn shared_key_across_instances() {
        let a = NonceIssuer::new(key(7));
        let b = NonceIssuer::new(key(7));
        b.check(&a.issue(T), T + 1).unwrap();
        a.check(&b.issue(T), T + 1).unwrap();
        let c = NonceIssuer::new(key(8));
        assert!(matches!(
            c.check(&a.issue(T), T),
            Err(Error::NonceInvalid { .. })
        ));
    }

    #[test]
    fn rotation() {
        let issuer = NonceIssuer::new(key(1));
        let n1 = issuer.issue(T);
        issuer.rotate(key(2));
        issuer.check(&n1, T).unwrap(); // previous key still checks
        let n2 = issuer.issue(T);
        assert_ne!(n1, n2);
        issuer.rotate(key(3)); // key 1 leaves the set
        assert!(matches!(
            issuer.check(&n1, T),
            Err(Error::NonceInvalid { .. })
        ));
        issuer.check(&n2, T).unwrap();
        issuer.retire_previous_keys();
        assert!(matches!(
            issuer.check(&n2, T),
            Err(Error::NonceInvalid { .. })
        ));
        let loaded = NonceIssuer::new(key(3))
            .with_max_previous_keys(2)
            .with_previous_keys([key(2), key(1)]);
        loaded.check(&n1, T).unwrap();
        loaded.check(&n2, T).unwrap();
    }

    #[test]
    fn tampering_and_garbage() {
        let issuer = NonceIssuer::new(key(1));
        let n = issuer.issue(T);
        let mut raw = token_jwt::base64url::decode(&n).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let tampered = token_jwt::base64url::encode(&raw);
            assert!(
                matches!(issuer.check(&tampered, T), Err(Error::NonceInvalid { .. })),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        for bad in [
            "",
            "x",
            &"A".repeat(NONCE_LEN),
            &format!("{n}A"),
            "eyJ7S_zG.eyJH0-Z.HX4w-7v",
        ] {
            assert!(matches!(
                issuer.check(bad, T),
                Err(Error::NonceInvalid { .. })
            ));
        }
        // negative times work too
        let old = issuer.issue(-1);
        issuer.check(&old, -1).unwrap();
    }

    #[test]
    fn debug_redacts_keys() {
        let k = key(0xAB);
        let text = format!("{k:?} {:?}", NonceIssuer::new(k.clone()));
        assert!(!text.contains("171"), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(text.contains(&k.key_id()));
    }
}
