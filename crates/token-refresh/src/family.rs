//! Refresh-token families and revocation records.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grace::SealedSuccessor;
use crate::token::{FamilyId, TokenHash};

/// How many rotated token hashes a family remembers (the most recent ones).
///
/// A rotated token within this many generations is recognised and its use is *reuse* (the
/// family is revoked). A token older than that is indistinguishable from a forged one: it is
/// refused as [`Error::ForgedToken`](crate::Error::ForgedToken) and the family is left alone.
/// With a 7-day idle TTL this only matters for a client that refreshes more than 64 times
/// between a theft and the attacker's first use.
pub const MAX_ROTATED_HASHES: usize = 64;

/// A refresh-token family: every token descended from one grant, of which exactly one (the
/// current one) is usable at a time.
///
/// It keeps the whole grant (subject, client, scopes, DPoP key, audiences, custom claims and
/// the access-token lifetime asked for), so every access token minted on a refresh carries
/// exactly what the first one did, or a subset the refresh asked for.
///
/// This struct is exhaustive on purpose: it is the state every [`FamilyStore`] keeps, and a new
/// field must be a breaking change for store implementations rather than a field one of them
/// silently drops. Its serde form (JSON field names below, hashes and the sealed successor as
/// base64url strings, times as integer seconds) is the storage format a store may use as is;
/// `Debug` prints no hash and no sealed value.
///
/// [`FamilyStore`]: crate::FamilyStore
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    /// The family id (`sid` of the access tokens minted from it).
    pub id: FamilyId,
    /// The subject (user) the grant was made to.
    pub subject: String,
    /// The OAuth client the grant was made to.
    pub client_id: String,
    /// The granted scopes; refreshes may ask for a subset, the family keeps all of them.
    #[serde(deserialize_with = "seq_or_empty_object")]
    pub scopes: Vec<String>,
    /// The RFC 7638 thumbprint of the DPoP key the family is bound to, if any.
    pub dpop_jkt: Option<String>,
    /// The audiences (`aud`) of the family's access tokens; refreshes may ask for a subset.
    /// Empty in families stored before the grant was kept whole: the server's default then.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "seq_or_empty_object"
    )]
    pub audience: Vec<String>,
    /// The custom claims of the family's access tokens: the text of a JSON object, kept as
    /// text (a Redis script decoding it as JSON would rewrite numbers and empty arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_json: Option<String>,
    /// The access-token lifetime the grant asked for, in seconds (`None`: the server's
    /// default); the server's cap in force at each mint applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_ttl: Option<u32>,
    /// When the family was created (seconds since the Unix epoch).
    pub created_at: i64,
    /// The family lifetime's end: never extended by rotation.
    pub absolute_expires_at: i64,
    /// The idle expiry: renewed on each rotation to `now + idle TTL`, capped at the absolute
    /// expiry.
    pub idle_expires_at: i64,
    /// How many times the family has rotated (0 for the first token).
    pub generation: u64,
    /// The hash of the one usable token.
    pub current_hash: TokenHash,
    /// Hashes of rotated tokens, oldest first, at most [`MAX_ROTATED_HASHES`].
    #[serde(deserialize_with = "seq_or_empty_object")]
    pub rotated: Vec<TokenHash>,
    /// When the family last rotated, if it has.
    pub rotated_at: Option<i64>,
    /// The grace state of the last rotation, when grace was enabled for it and the family is not
    /// revoked.
    pub grace: Option<GraceState>,
    /// Set once the family is revoked; never cleared.
    pub revoked: Option<Revocation>,
}

/// Deserializes a sequence, also accepting `{}` as an empty one: Lua's `cjson` (in Redis
/// scripts) encodes an empty table as an object.
fn seq_or_empty_object<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array (or an empty object)")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_ROTATED_HASHES));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            match map.next_key::<serde::de::IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(serde::de::Error::custom("expected an array")),
            }
        }
    }
    d.deserialize_any(Visitor(std::marker::PhantomData))
}

impl Family {
    /// Whether the family is past its absolute or idle expiry at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.absolute_expires_at || now >= self.idle_expires_at
    }

    /// When the family expires (the earlier of the idle and absolute expiry).
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether the family has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked.is_some()
    }

    /// The revocation-list entry for this family, if it is revoked: listed for `ttl` seconds
    /// from the revocation.
    pub fn revocation_event(&self, ttl: i64) -> Option<RevocationEvent> {
        self.revoked.as_ref().map(|r| RevocationEvent {
            family_id: self.id,
            reason: r.reason,
            revoked_at: r.at,
            listed_until: r.at.saturating_add(ttl),
        })
    }
}

impl fmt::Debug for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("dpop_jkt", &self.dpop_jkt)
            .field("audience", &self.audience)
            .field("claims_json", &self.claims_json.as_ref().map(String::len))
            .field("access_ttl", &self.access_ttl)
            .field("created_at", &self.created_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .field("generation", &self.generation)
            .field("rotated", &self.rotated.len())
            .field("rotated_at", &self.rotated_at)
            .field("grace", &self.grace)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// What a family remembers of its last rotation so a lost response can be retried.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceState {
    /// The hash of the token that was rotated (the immediately previous token).
    pub previous_hash: TokenHash,
    /// The current token, sealed under a key derived from the previous token.
    pub sealed_successor: SealedSuccessor,
    /// How many grace retries have been answered.
    pub uses: u32,
    /// When the rotation happened (the grace window starts here).
    pub rotated_at: i64,
}

impl fmt::Debug for GraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraceState")
            .field("uses", &self.uses)
            .field("rotated_at", &self.rotated_at)
            .finish_non_exhaustive()
    }
}

/// Why and when a family was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Why.
    pub reason: RevocationReason,
    /// When (seconds since the Unix epoch).
    pub at: i64,
}

/// Why a family was revoked. The serde form is `snake_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationReason {
    /// A rotated token was presented again.
    ReuseDetected,
    /// Revoked by presenting one of its tokens (RFC 7009 token revocation, logout).
    TokenRevoked,
    /// Revoked by family id (an administrator, a security response).
    FamilyRevoked,
    /// Revoked with every other family of the subject ("sign out everywhere").
    SubjectRevoked,
}

impl RevocationReason {
    /// The serde name, such as `"reuse_detected"` (a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::ReuseDetected => "reuse_detected",
            RevocationReason::TokenRevoked => "token_revoked",
            RevocationReason::FamilyRevoked => "family_revoked",
            RevocationReason::SubjectRevoked => "subject_revoked",
        }
    }
}

/// An entry of the revocation list, and the event published when it is added.
///
/// Access tokens carry the family id as `sid`; a verifier that sees a `sid` listed here refuses
/// the token. An entry is listed until `listed_until` (the revocation time plus the longest
/// access-token lifetime): after that no access token of the family can still be valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// The revoked family.
    pub family_id: FamilyId,
    /// Why it was revoked.
    pub reason: RevocationReason,
    /// When it was revoked.
    pub revoked_at: i64,
    /// When the list entry lapses.
    pub listed_until: i64,
}

/// The largest encoded revocation event accepted by [`RevocationEvent::from_json`].
pub const MAX_EVENT_BYTES: usize = 1024;

impl RevocationEvent {
    /// Whether the entry is still listed at `now`.
    pub fn is_listed(&self, now: i64) -> bool {
        now < self.listed_until
    }

    /// The JSON form (for a pub/sub message).
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and integers cannot fail; fall back to an empty
        // object (refused by `from_json`) rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses the JSON form; input is attacker-reachable (a shared channel), so it is
    /// size-limited and never panics.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] for oversized or malformed input.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(Error::InvalidEvent("too large"));
        }
        serde_json::from_slice(bytes).map_err(|_| Error::InvalidEvent("malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_json_round_trip_and_lua_empty_tables() {
        let f = Family {
            id: FamilyId::from_bytes([1; 16]),
            subject: "alice".into(),
            client_id: "app".into(),
            scopes: vec![],
            dpop_jkt: Some("jkt".into()),
            audience: vec![],
            claims_json: None,
            access_ttl: None,
            created_at: 1,
            absolute_expires_at: 3,
            idle_expires_at: 2,
            generation: 0,
            current_hash: TokenHash::from_bytes([2; 32]),
            rotated: vec![],
            rotated_at: None,
            grace: None,
            revoked: None,
        };
        let json = serde_json::to_string(&f).unwrap();
        assert!(!format!("{f:?}").contains(&f.current_hash.to_base64url()));
        assert_eq!(serde_json::from_str::<Family>(&json).unwrap(), f);
        let lua = json.replace("[]", "{}");
        assert_ne!(lua, json);
        assert_eq!(serde_json::from_str::<Family>(&lua).unwrap(), f);
        let bad = json.replacen("\"scopes\":[]", "\"scopes\":{\"a\":1}", 1);
        assert!(serde_json::from_str::<Family>(&bad).is_err());

        // A family stored before the grant was kept whole reads with an empty grant, and one
        // without those details is written exactly as before.
        for field in ["audience", "claims_json", "access_ttl"] {
            assert!(!json.contains(field), "{json}");
        }
        let mut whole = f.clone();
        whole.audience = vec!["https://api".into()];
        whole.claims_json =
            Some(r#"{"n":12345678901234567890,"e":[],"p":"a/b","q":"\"é\u0000"}"#.into());
        whole.access_ttl = Some(120);
        let json = serde_json::to_string(&whole).unwrap();
        assert_eq!(serde_json::from_str::<Family>(&json).unwrap(), whole);
        // As Redis's cjson writes it back: `/` escaped, an empty audience as `{}`.
        let lua = json.replace('/', "\\/");
        assert_eq!(serde_json::from_str::<Family>(&lua).unwrap(), whole);
        let mut empty = whole.clone();
        empty.audience.clear();
        let lua = serde_json::to_string(&empty)
            .unwrap()
            .replacen('{', "{\"audience\":{},", 1);
        assert_eq!(serde_json::from_str::<Family>(&lua).unwrap(), empty);
    }

    #[test]
    fn event_json_round_trip() {
        let e = RevocationEvent {
            family_id: FamilyId::from_bytes([3; 16]),
            reason: RevocationReason::ReuseDetected,
            revoked_at: 10,
            listed_until: 20,
        };
        let json = e.to_json();
        assert!(json.contains("\"reuse_detected\""));
        assert_eq!(RevocationEvent::from_json(json.as_bytes()).unwrap(), e);
        assert!(RevocationEvent::from_json(b"{}").is_err());
        assert!(RevocationEvent::from_json(&[b' '; 2000]).is_err());
        assert!(e.is_listed(19));
        assert!(!e.is_listed(20));
    }
}
