//! Managed keys: signing keys that a fleet of token services generates, shares and rotates by
//! itself, through a store every instance reads (Redis, or memory for a single instance).
//!
//! - [`KeyRecord`]: one key as stored: `kid`, algorithm, public JWK, the times it was created
//!   and starts signing, and the private key only **wrapped** ([`Wrapper`]: an AEAD under a
//!   [`KeyEncryptionKey`] shared by the fleet, or KMS envelope encryption with feature `aws`).
//! - [`plan`]: the pure function every instance applies to the same records and clock to agree,
//!   without talking to each other, on which key signs, which keys are published and when the
//!   next key is due ([`Timing`] says how the durations derive from the JWK Set's `max-age`).
//! - [`KeyStore`]: the seam to the store, a small map of opaque fields with an atomic
//!   insert-if-absent (exactly one instance creates each generation) and a change signal
//!   (pub/sub); [`MemoryKeyStore`] is the single-instance implementation, and
//!   `token-store-redis` provides the fleet's.
//! - [`ManagedKeys`]: the coordinator an instance runs: [`ManagedKeys::sync`] reads the store,
//!   unwraps new keys, creates the next one when it is due, and [`ManagedKeys::replan`] moves
//!   the states along with the clock between reads.
//!
//! The lifecycle of one generation `n`:
//!
//! ```text
//!  created ──── lead = max_age + margin ────► activates_at(n) ─── signs ───► activates_at(n+1)
//!  (published)                                (Active)                       (Retiring: published)
//!                                                   ... retain = access TTL + leeway + margin ...
//!                                                                            ──► gone from the JWK Set
//! ```

mod kek;
mod keys;
mod plan;
mod record;
mod store;

pub use kek::{KeyEncryptionKey, MIN_KEK_BYTES};
pub use keys::{ManagedKeys, SyncReport, Transition, Wrapper};
pub use plan::{KeyPlan, ManagedState, Plan, Timing, plan};
pub use record::{KeyRecord, MAX_RECORD_BYTES, Wrapped};
pub use store::{KeyStore, KeyStoreFuture, MemoryKeyStore};
