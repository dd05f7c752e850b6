//! The one error type of `token-kms`.
//!
//! No variant carries key material, plaintext, signatures or credentials: only key ids, names,
//! AWS error codes and the messages AWS returns with them (which never contain secrets).

use std::time::Duration;

/// Everything that can go wrong in `token-kms`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- configuration ---------------------------------------------------------------------
    /// No AWS region anywhere in the chain (environment, AWS profile, `KmsConfig::region`).
    #[error(
        "invalid configuration: no AWS region: set AWS_REGION, a region in the AWS profile, or \
         KmsConfig::region"
    )]
    NoRegion,
    /// The AWS SDK could not build a KMS request from the configuration.
    #[cfg(feature = "aws")]
    #[error(
        "invalid configuration: KMS {operation} request could not be built: {}",
        aws_sdk_kms::error::DisplayErrorContext(&**source)
    )]
    RequestConstruction {
        /// The KMS operation.
        operation: &'static str,
        /// The SDK's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    // ---- reaching KMS ----------------------------------------------------------------------
    /// The circuit breaker is open: KMS failed repeatedly, so calls fail at once instead of
    /// waiting for timeouts. A probe call goes through after the cool-down.
    #[error(
        "KMS is unavailable: the circuit breaker is open after {failures} consecutive failures; \
         failing fast, next probe in {retry_in:?}"
    )]
    CircuitOpen {
        /// Consecutive failures that opened the breaker.
        failures: u32,
        /// Time until a probe call is let through.
        retry_in: Duration,
    },
    /// KMS could not be reached (connection refused or reset, DNS, TLS).
    #[error("KMS {operation} failed: KMS is unreachable ({detail})")]
    Unreachable {
        /// The KMS operation (`Sign`, `GetPublicKey`, …).
        operation: &'static str,
        /// What the HTTP client reported.
        detail: String,
    },
    /// A KMS call did not complete within the configured connect or operation timeout.
    #[error("KMS {operation} timed out")]
    Timeout {
        /// The KMS operation.
        operation: &'static str,
    },
    /// KMS throttled the request (the request quota was exceeded) and retries did not help.
    #[error("KMS {operation} was throttled: request quota exceeded")]
    Throttled {
        /// The KMS operation.
        operation: &'static str,
    },
    /// KMS answered with a server-side failure (`KMSInternalException`, `KeyUnavailable`,
    /// `DependencyTimeout`, HTTP 5xx).
    #[error("KMS {operation} failed on the KMS side: {code}: {message}")]
    Unavailable {
        /// The KMS operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// The AWS error message.
        message: String,
    },

    // ---- the KMS key -----------------------------------------------------------------------
    /// KMS does not know the key (wrong id, alias, region or account, or a deleted key).
    #[error("KMS key not found: {key_id}")]
    KeyNotFound {
        /// The key id as configured.
        key_id: String,
    },
    /// The key is disabled, pending deletion or pending import.
    #[error("KMS key {key_id} is disabled or not in a usable state: {message}")]
    KeyDisabled {
        /// The key id as configured.
        key_id: String,
        /// The AWS error message.
        message: String,
    },
    /// The caller's AWS credentials may not use the key for this operation.
    #[error("KMS {operation} was denied for key {key_id}: {message}")]
    AccessDenied {
        /// The KMS operation.
        operation: &'static str,
        /// The key id as configured.
        key_id: String,
        /// The AWS error message.
        message: String,
    },
    /// Any other error KMS answered with.
    #[error("KMS {operation} failed: {code}: {message}")]
    Kms {
        /// The KMS operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// The AWS error message.
        message: String,
    },
    /// The key's spec is not one this crate signs with.
    #[error(
        "KMS key spec {0} is not supported (use ECC_NIST_P256, ECC_NIST_P384 or RSA_2048/3072/4096)"
    )]
    UnsupportedKeySpec(String),
    /// The key is not a signing key.
    #[error("KMS key usage is {0}, not SIGN_VERIFY")]
    WrongKeyUsage(String),
    /// The key does not allow the signing algorithm the JWS algorithm needs.
    #[error("KMS key does not allow the signing algorithm {0}")]
    SigningAlgorithmNotAllowed(String),
    /// The public key KMS returned is malformed or does not match the key spec.
    #[error("invalid public key from KMS: {0}")]
    InvalidPublicKey(&'static str),
    /// KMS returned a signature that is malformed (not DER ECDSA, wrong length).
    #[error("invalid signature from KMS: {0}")]
    InvalidSignature(&'static str),
    /// The start-up signature did not verify against the public key: the key, the algorithm
    /// or the KMS endpoint does not behave as JWS requires.
    #[error("start-up self-test failed: the first KMS signature does not verify as {alg}")]
    SelfTestFailed {
        /// The JWS algorithm the signature was checked as.
        alg: token_jwt::Algorithm,
    },
    /// KMS signed with a different key than the one whose public key was loaded at start-up
    /// (an alias was moved to another key): tokens would not verify, so signing stops.
    #[error(
        "KMS signed with key {actual}, not with {expected} loaded at start-up (was the alias moved?)"
    )]
    KeyChanged {
        /// The key ARN at start-up.
        expected: String,
        /// The key ARN KMS reported for this signature.
        actual: String,
    },

    // ---- wrapped keys ----------------------------------------------------------------------
    /// The wrapped-key blob is not a blob this crate wrote (bad format, version or encoding).
    #[error("invalid wrapped-key blob: {0}")]
    InvalidBlob(&'static str),
    /// KMS refused to decrypt the blob: it was encrypted under another KMS key than the one
    /// configured, or the caller may not use that key.
    #[error(
        "the wrapped key was not encrypted under KMS key {key_id}, or that key may not be used: {message}"
    )]
    WrongWrappingKey {
        /// The KMS key id as configured.
        key_id: String,
        /// The AWS error message.
        message: String,
    },
    /// The blob was altered: KMS rejected the ciphertext or its encryption context (which binds
    /// `alg` and `kid`), or the decrypted key does not match the blob's `alg` or `kid`.
    #[error("the wrapped key is corrupt or was tampered with: {0}")]
    TamperedBlob(&'static str),

    // ---- key ring --------------------------------------------------------------------------
    /// The key ring has no active key to sign with.
    #[error("the key ring has no active signing key")]
    NoActiveKey,
    /// A key with this `kid` is already in the key ring.
    #[error("a key with kid {0} is already in the key ring")]
    DuplicateKeyId(String),
    /// No key with this `kid` is in the key ring.
    #[error("no key with kid {0} is in the key ring")]
    UnknownKeyId(String),
    /// The schedule's durations do not satisfy the rotation rules.
    #[error("invalid rotation schedule: {0}")]
    InvalidSchedule(&'static str),

    // ---- managed keys ----------------------------------------------------------------------
    /// A stored managed-key record is malformed (size, JSON, version, a `kid` that is not the
    /// public key's thumbprint): it is neither published nor used.
    #[error("invalid managed key record: {0}")]
    InvalidKeyRecord(String),
    /// `KEY_ENCRYPTION_KEY` is not usable (never contains the key itself).
    #[error("invalid KEY_ENCRYPTION_KEY: {0}")]
    InvalidKeyEncryptionKey(String),
    /// The store's keys were wrapped under another key-encryption key than this instance's.
    #[error(
        "KEY_ENCRYPTION_KEY does not match the key that wrapped the stored signing keys: every \
         instance must be given the same KEY_ENCRYPTION_KEY"
    )]
    WrongKeyEncryptionKey,
    /// A stored key is wrapped one way (`kek`, `kms`) and this instance is configured for the
    /// other.
    #[error(
        "a stored signing key is wrapped by {stored} but this instance wraps with {configured}: \
         set the same KEY_ENCRYPTION_KEY or WRAPPING_KMS_KEY_ID on every instance"
    )]
    WrongWrapper {
        /// How the stored key is wrapped.
        stored: &'static str,
        /// How this instance wraps.
        configured: &'static str,
    },
    /// An early rotation was asked for while the next key already waits for its turn.
    #[error("a rotation is already under way: key {kid} signs from {activates_at} (Unix time)")]
    RotationPending {
        /// The pending key.
        kid: String,
        /// When it starts signing.
        activates_at: i64,
    },
    /// The managed-key store failed (nothing was changed by this instance).
    #[error("managed key store: {0}")]
    KeyStore(#[source] Box<dyn std::error::Error + Send + Sync>),

    // ---- from token-jwt --------------------------------------------------------------------
    /// A JWT/JWK operation failed (key loading, JWK encoding, verifier construction).
    #[error(transparent)]
    Jwt(#[from] token_jwt::Error),
}

impl Error {
    /// A short stable label for metrics (`reason` of `token_kms_sign_errors_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoRegion => "config",
            #[cfg(feature = "aws")]
            Error::RequestConstruction { .. } => "config",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::Unreachable { .. } => "unreachable",
            Error::Timeout { .. } => "timeout",
            Error::Throttled { .. } => "throttled",
            Error::Unavailable { .. } => "kms_unavailable",
            Error::KeyNotFound { .. } => "key_not_found",
            Error::KeyDisabled { .. } => "key_disabled",
            Error::AccessDenied { .. } => "access_denied",
            Error::Kms { .. } => "kms_error",
            Error::UnsupportedKeySpec(_)
            | Error::WrongKeyUsage(_)
            | Error::SigningAlgorithmNotAllowed(_) => "unsupported_key",
            Error::InvalidPublicKey(_) | Error::InvalidSignature(_) => "invalid_response",
            Error::SelfTestFailed { .. } => "self_test_failed",
            Error::KeyChanged { .. } => "key_changed",
            Error::InvalidBlob(_) | Error::TamperedBlob(_) | Error::WrongWrappingKey { .. } => {
                "wrapped_key"
            }
            Error::NoActiveKey
            | Error::DuplicateKeyId(_)
            | Error::UnknownKeyId(_)
            | Error::InvalidSchedule(_) => "key_ring",
            Error::Jwt(_) => "jwt",
            Error::InvalidKeyRecord(_)
            | Error::InvalidKeyEncryptionKey(_)
            | Error::WrongKeyEncryptionKey
            | Error::WrongWrapper { .. } => "managed_key",
            Error::RotationPending { .. } => "key_ring",
            Error::KeyStore(_) => "key_store",
        }
    }

    /// Whether this failure says KMS itself is unavailable (unreachable, timing out, throttling
    /// or failing on its side): the failures that count towards opening the circuit breaker.
    /// A key that is missing or disabled is a configuration problem of a KMS that answers.
    pub fn is_unavailability(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. }
                | Error::Timeout { .. }
                | Error::Throttled { .. }
                | Error::Unavailable { .. }
        )
    }

    /// This error as a [`token_jwt::Error::Signing`], with `self` as its source, for the
    /// signer traits. Callers can get it back with `source().downcast_ref::<token_kms::Error>()`.
    pub fn into_signing_error(self) -> token_jwt::Error {
        match self {
            Error::Jwt(e) => e,
            other => token_jwt::Error::Signing {
                reason: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
