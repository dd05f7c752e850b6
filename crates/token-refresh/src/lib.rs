#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-refresh` depends on no other project crate: a DPoP key thumbprint is just a string
//! to it. `token-server` drives the [`Rotator`] and mints access tokens with `sid` = family id;
//! `token-store-redis` implements [`FamilyStore`] and [`RevocationList`] on Redis, mirroring
//! [`decide`], [`decide_revoke`] and [`decide_revoke_absent`] in Lua, and runs this crate's
//! conformance suite (feature `conformance`) against Redis standalone, Cluster and Sentinel.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod decide;
mod error;
mod events;
mod family;
mod grace;
mod memory;
mod rotator;
mod store;
mod token;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use decide::{
    GracePolicy, RevokeOutcome, RevokeRequest, RotateOutcome, RotateRequest, decide, decide_revoke,
    decide_revoke_absent,
};
pub use error::{Error, OAuthError, Result};
pub use events::{DEFAULT_EVENT_CAPACITY, RevocationBroadcaster, RevocationSubscription};
pub use family::{
    Family, GraceState, MAX_EVENT_BYTES, MAX_ROTATED_HASHES, Revocation, RevocationEvent,
    RevocationReason,
};
pub use grace::{MAX_SEALED_BYTES, SealedSuccessor};
pub use memory::MemoryStore;
pub use rotator::{
    DEFAULT_FAMILY_LIFETIME, DEFAULT_IDLE_TTL, DEFAULT_MAX_ACCESS_TOKEN_LIFETIME, GrantDetails,
    MAX_AUDIENCES, MAX_CLAIMS_BYTES, MAX_ID_BYTES, MAX_JKT_BYTES, MAX_SCOPE_BYTES, MAX_SCOPES,
    RefreshOutcome, Rotator, RotatorConfig, RotatorConfigBuilder,
};
pub use store::{FamilyStore, RevocationList, StoreFuture};
pub use token::{
    FamilyId, MAX_PEPPER_BYTES, MAX_TOKEN_BYTES, MIN_PEPPER_BYTES, Pepper, RefreshToken, TOKEN_LEN,
    TOKEN_PREFIX, TokenHash,
};

/// Entry points for `cargo fuzz` targets (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    /// Parses arbitrary bytes as a refresh token; never panics.
    pub fn parse_refresh_token(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data)
            && let Ok(token) = crate::RefreshToken::parse(text)
        {
            assert_eq!(token.as_str(), text, "a parsed token keeps its text");
        }
    }

    /// Parses arbitrary bytes as a revocation event (a pub/sub message); never panics.
    pub fn parse_revocation_event(data: &[u8]) {
        let _ = crate::RevocationEvent::from_json(data);
    }
}
