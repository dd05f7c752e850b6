//! What a refused request is answered with.

use std::fmt;
use std::sync::Arc;

use token_dpop::{INVALID_TOKEN, Scheme};

/// Why the guard refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A check of token-dpop's `RequestVerifier` failed (the header checks, the access token,
    /// its key binding, the DPoP proof, the scopes): see [`Rejection::dpop_error`].
    Request,
    /// The token's grant (`sid`) is on the revocation list: 401 `invalid_token`.
    Revoked,
    /// The revocation list cannot be relied on and the guard fails closed: 503.
    RevocationsUnavailable,
    /// The axum extractor found no verified claims: the handler is not behind the guard's
    /// layer, an integration error (500).
    NotGuarded,
}

/// Parameters the guard adds to every challenge, beyond token-dpop's.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// RFC 9728 section 5.1: where the protected-resource metadata is.
    pub(crate) resource_metadata: Option<String>,
}

#[derive(Debug)]
enum Cause {
    Request(token_dpop::Rejection),
    /// `base` is a rejection without an error code: its challenges carry the realm and `algs`.
    Revoked {
        base: token_dpop::Rejection,
        scheme: Scheme,
    },
    RevocationsUnavailable,
    #[cfg_attr(
        not(feature = "axum"),
        allow(
            dead_code,
            reason = "only the axum extractor finds a request unguarded"
        )
    )]
    NotGuarded,
}

/// A refused request: the status, the `WWW-Authenticate` challenges (RFC 6750 section 3, RFC
/// 9449 section 7.1, with RFC 9728's `resource_metadata` when configured) and the `DPoP-Nonce`
/// to answer with. [`Rejection::to_response`] builds the answer; the guard's layer sends it
/// without calling the inner service.
///
/// Nothing it renders comes from the request: codes and descriptions are fixed strings, and
/// the other parameters come from the guard's configuration.
#[derive(Debug)]
pub struct Rejection {
    cause: Cause,
    extra: Arc<Extra>,
}

/// The `error_description` of a revoked token.
const REVOKED: &str = "access token revoked";

impl Rejection {
    pub(crate) fn request(rejection: token_dpop::Rejection, extra: Arc<Extra>) -> Self {
        Rejection {
            cause: Cause::Request(rejection),
            extra,
        }
    }

    pub(crate) fn revoked(base: token_dpop::Rejection, scheme: Scheme, extra: Arc<Extra>) -> Self {
        Rejection {
            cause: Cause::Revoked { base, scheme },
            extra,
        }
    }

    pub(crate) fn revocations_unavailable(extra: Arc<Extra>) -> Self {
        Rejection {
            cause: Cause::RevocationsUnavailable,
            extra,
        }
    }

    #[cfg(feature = "axum")]
    pub(crate) fn not_guarded() -> Self {
        Rejection {
            cause: Cause::NotGuarded,
            extra: Arc::default(),
        }
    }

    /// Why the request was refused.
    pub fn kind(&self) -> RejectionKind {
        match &self.cause {
            Cause::Request(_) => RejectionKind::Request,
            Cause::Revoked { .. } => RejectionKind::Revoked,
            Cause::RevocationsUnavailable => RejectionKind::RevocationsUnavailable,
            Cause::NotGuarded => RejectionKind::NotGuarded,
        }
    }

    /// The failed check, for [`RejectionKind::Request`]: one token-dpop
    /// [`Error`](token_dpop::Error) variant per check, for logs and metrics.
    pub fn dpop_error(&self) -> Option<&token_dpop::Error> {
        match &self.cause {
            Cause::Request(r) => Some(r.error()),
            _ => None,
        }
    }

    /// The scheme the request used, when it got as far as naming an accepted one.
    pub fn scheme(&self) -> Option<Scheme> {
        match &self.cause {
            Cause::Request(r) => r.scheme(),
            Cause::Revoked { scheme, .. } => Some(*scheme),
            _ => None,
        }
    }

    /// The HTTP status: token-dpop's for a failed check (401, 400 `invalid_request`, 403
    /// `insufficient_scope`, 500 for a server-side failure), 401 for a revoked token, 503
    /// while revocations are unavailable and the guard fails closed, 500 when the extractor
    /// runs without the layer.
    pub fn status(&self) -> http::StatusCode {
        match &self.cause {
            Cause::Request(r) => http::StatusCode::from_u16(r.status())
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            Cause::Revoked { .. } => http::StatusCode::UNAUTHORIZED,
            Cause::RevocationsUnavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Cause::NotGuarded => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OAuth `error` code of the challenge, if it carries one.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match &self.cause {
            Cause::Request(r) => r.oauth_error(),
            Cause::Revoked { .. } => Some(INVALID_TOKEN),
            _ => None,
        }
    }

    /// The `error_description` of the challenge, if it carries one: a fixed text naming the
    /// check.
    pub fn error_description(&self) -> Option<&'static str> {
        match &self.cause {
            Cause::Request(r) => r.error_description(),
            Cause::Revoked { .. } => Some(REVOKED),
            _ => None,
        }
    }

    /// A nonce to send in a `DPoP-Nonce` header (with `use_dpop_nonce`, RFC 9449 section 9).
    pub fn dpop_nonce(&self) -> Option<&str> {
        match &self.cause {
            Cause::Request(r) => r.dpop_nonce(),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenges, one header value each, `Bearer` first when Bearer
    /// tokens are accepted. None for a 503 or 500 of the guard's own.
    pub fn challenges(&self) -> Vec<String> {
        let mut challenges = match &self.cause {
            Cause::Request(r) => r.challenges(),
            Cause::Revoked { base, scheme } => {
                let mut out = base.challenges();
                if let Some(challenge) = out
                    .iter_mut()
                    .find(|c| c.split(' ').next() == Some(scheme.as_str()))
                {
                    push_param(challenge, "error", INVALID_TOKEN);
                    push_param(challenge, "error_description", REVOKED);
                }
                out
            }
            Cause::RevocationsUnavailable | Cause::NotGuarded => return Vec::new(),
        };
        if let Some(url) = &self.extra.resource_metadata {
            for challenge in &mut challenges {
                push_param(challenge, "resource_metadata", url);
            }
        }
        challenges
    }

    /// The answer: the [status](Rejection::status), one `WWW-Authenticate` header per
    /// [challenge](Rejection::challenges), the [`DPoP-Nonce`](Rejection::dpop_nonce) header,
    /// `Cache-Control: no-store`, and an empty body.
    pub fn to_response<B: Default>(&self) -> http::Response<B> {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        for challenge in self.challenges() {
            // Visible ASCII by construction (token-dpop's rendering, configuration checked at
            // build time); a value that is not is left out rather than sent broken.
            if let Ok(value) = http::HeaderValue::try_from(challenge) {
                headers.append(http::header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(nonce) = self.dpop_nonce()
            && let Ok(value) = http::HeaderValue::from_str(nonce)
        {
            headers.insert(crate::DPOP_NONCE, value);
        }
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }
}

/// Appends `name="value"` to a rendered challenge: after a space when it has no parameter
/// yet (a bare scheme name), after `", "` otherwise. The value is written as a quoted-string
/// with `"` and `\` escaped and anything outside visible ASCII left out.
fn push_param(challenge: &mut String, name: &str, value: &str) {
    challenge.push_str(if challenge.contains(' ') { ", " } else { " " });
    challenge.push_str(name);
    challenge.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                challenge.push('\\');
                challenge.push(c);
            }
            ' '..='~' => challenge.push(c),
            _ => {}
        }
    }
    challenge.push('"');
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Request(r) => fmt::Display::fmt(r, f),
            Cause::Revoked { .. } => f.write_str("the access token's grant is revoked"),
            Cause::RevocationsUnavailable => {
                f.write_str("the revocation list is stale and the guard fails closed")
            }
            Cause::NotGuarded => f.write_str("the request did not pass through the guard's layer"),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Request(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_a_bare_scheme_after_a_space_and_others_after_a_comma() {
        let mut bare = "Bearer".to_owned();
        push_param(&mut bare, "error", "invalid_token");
        assert_eq!(bare, r#"Bearer error="invalid_token""#);
        let mut more = r#"DPoP algs="ES256""#.to_owned();
        push_param(&mut more, "resource_metadata", "https://a/\"x\"\u{e9}");
        assert_eq!(
            more,
            r#"DPoP algs="ES256", resource_metadata="https://a/\"x\"""#
        );
    }
}
