//! [`Authenticated`]: the verified claims in the caller's type, and the axum extractor that
//! hands them to a handler.

use serde::de::DeserializeOwned;
use token_dpop::{Authorized, Scheme, ValidatedProof};

use crate::guard::Guard;
use crate::rejection::Rejection;

/// A request that passed the guard, with its access-token claims in the caller's `Deserialize`
/// type `C` (the registered and custom claims are one JSON object; a `serde_json::Value` takes
/// them all).
///
/// With the `axum` feature it is an extractor:
///
/// ```
/// # #[cfg(feature = "axum")]
/// # mod example {
/// use token_guard::Authenticated;
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims {
///     sub: String,
///     tenant: String,
/// }
///
/// async fn items(Authenticated { claims, .. }: Authenticated<MyClaims>) -> String {
///     format!("{} of {}", claims.sub, claims.tenant)
/// }
/// # }
/// ```
///
/// Claims that do not deserialize into `C` are refused with 401 `invalid_token`; a handler
/// that is not behind the guard's layer gets 500. For token-jwt's `Claims` as verified (which
/// is not `Deserialize`), extract the layer's extension instead:
/// `axum::Extension(authorized): axum::Extension<token_guard::Authorized>`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Authenticated<C> {
    /// The verified access-token claims.
    pub claims: C,
    /// The scheme the token was presented with.
    pub scheme: Scheme,
    /// For [`Scheme::Dpop`], the RFC 7638 thumbprint of the key the token is bound to
    /// (`cnf.jkt`), which the proof's key was checked to have; `None` for a Bearer token.
    pub jkt: Option<String>,
    /// For [`Scheme::Dpop`], the validated proof (recorded in the replay cache).
    pub proof: Option<ValidatedProof>,
}

#[cfg(feature = "axum")]
impl<S, C> axum::extract::FromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: serde::de::DeserializeOwned + Send + 'static,
{
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let stamp = parts.extensions.get::<crate::layer::Stamp>();
        let authorized = parts.extensions.get::<Authorized>();
        match (stamp, authorized) {
            (Some(stamp), Some(authorized)) => stamp.0.typed(authorized.clone()),
            _ => Err(Rejection::not_guarded()),
        }
    }
}

impl Guard {
    /// [`Guard::verify`], then the claims (registered and custom, as one JSON object)
    /// deserialized into the caller's type `C`.
    ///
    /// # Errors
    /// As [`Guard::verify`], and 401 `invalid_token` when the claims do not fit `C`.
    pub async fn verify_as<C: DeserializeOwned>(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Authenticated<C>, Rejection> {
        let authorized = self.verify(parts).await?;
        self.typed(authorized)
    }

    /// The claims in the caller's type, through their JSON form. The serde error is dropped:
    /// its message can quote claim values.
    pub(crate) fn typed<C: DeserializeOwned>(
        &self,
        a: Authorized,
    ) -> Result<Authenticated<C>, Rejection> {
        let unexpected = || {
            self.reject(
                self.verifier()
                    .reject(token_dpop::Error::UnexpectedClaims, Some(a.scheme)),
            )
        };
        let value = serde_json::to_value(&a.claims).map_err(|_| unexpected())?;
        let claims = serde_json::from_value(value).map_err(|_| unexpected())?;
        Ok(Authenticated {
            claims,
            scheme: a.scheme,
            jkt: a.jkt,
            proof: a.proof,
        })
    }
}
