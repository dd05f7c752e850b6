//! Library errors to gRPC statuses: the only place that knows both.
//!
//! The OAuth error code goes in the trailing metadata key `oauth-error`, a fresh DPoP nonce in
//! `dpop-nonce`. Messages are the libraries' short static descriptions: they never contain a
//! token, a proof or key material.

use tonic::{Code, Status};

/// Adds the `oauth-error` metadata.
pub fn with_oauth_error(mut status: Status, code: &'static str) -> Status {
    status.metadata_mut().insert(
        "oauth-error",
        tonic::metadata::MetadataValue::from_static(code),
    );
    status
}

/// `INVALID_ARGUMENT` with `invalid_request`.
pub fn invalid_request(message: impl Into<String>) -> Status {
    with_oauth_error(Status::invalid_argument(message), "invalid_request")
}

/// A DPoP failure on Generate/Refresh.
pub fn dpop(e: &token_dpop::Error) -> Status {
    if e.is_server_error() {
        metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "replay").increment(1);
        return with_oauth_error(
            Status::unavailable("the DPoP replay cache is unavailable"),
            "temporarily_unavailable",
        );
    }
    let mut status = with_oauth_error(
        Status::new(Code::Unauthenticated, e.description()),
        e.oauth_error(),
    );
    if let Some(nonce) = e.fresh_nonce()
        && let Ok(v) = tonic::metadata::MetadataValue::try_from(nonce)
    {
        status.metadata_mut().insert("dpop-nonce", v);
    }
    status
}

/// The one description of every `invalid_grant`: unknown, forged, malformed, reused,
/// revoked, expired, another client's or DPoP-mismatched tokens all read alike on the wire,
/// so a front end that forwards errors is no oracle. The reason is in the logs and in the
/// `outcome` label of the rotation metric.
pub const INVALID_GRANT: &str =
    "the refresh token is invalid, expired or revoked, or was issued to another client";

/// A refresh-token failure.
pub fn refresh(e: &token_refresh::Error) -> Status {
    use token_refresh::OAuthError;
    let code = e.oauth_error();
    let status = match code {
        OAuthError::InvalidGrant => {
            tracing::info!(reason = %e, "refresh token refused");
            Status::unauthenticated(INVALID_GRANT)
        }
        OAuthError::InvalidScope | OAuthError::InvalidTarget | OAuthError::InvalidRequest => {
            Status::invalid_argument(e.to_string())
        }
        OAuthError::TemporarilyUnavailable => {
            metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "family").increment(1);
            Status::unavailable("the token store is unavailable; nothing was issued")
        }
        _ => Status::internal("server error"),
    };
    with_oauth_error(status, code.as_str())
}

/// A signing failure: the signer (KMS) is unreachable or refused.
pub fn signing(e: &token_jwt::Error) -> Status {
    metrics::counter!(crate::metrics::SIGN_ERRORS).increment(1);
    tracing::error!(error = %e, "signing failed");
    with_oauth_error(
        Status::unavailable("the signer is unavailable; nothing was issued"),
        "temporarily_unavailable",
    )
}
