//! The AWS KMS client configuration, shared by [`KmsSigner`] and the wrapped-key functions.

use std::fmt;
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::breaker::BreakerConfig;
use crate::error::{Error, Result};

mod signer;
mod wrap;

pub use signer::{KmsSigner, KmsSignerBuilder};
pub use wrap::{WrappedKey, WrappedKeyBlob, wrap_new_key};

/// Static AWS credentials, for emulators and tests. Never printed.
#[derive(Clone)]
struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// How to reach AWS KMS. Build with [`KmsConfig::builder`]; every field has a default.
///
/// Region and credentials come from the standard AWS chain (environment variables, shared
/// config and credentials files, web identity (EKS), ECS and EC2 instance metadata) unless set
/// here. The endpoint comes from `AWS_ENDPOINT_URL_KMS` (or `AWS_ENDPOINT_URL`), as the AWS SDK
/// reads it, unless [`KmsConfigBuilder::endpoint_url`] sets one.
#[derive(Clone)]
#[non_exhaustive]
pub struct KmsConfig {
    /// An endpoint that overrides the SDK's (a VPC endpoint, a FIPS endpoint, an emulator).
    pub endpoint_url: Option<String>,
    /// The AWS region; `None` asks the standard chain.
    pub region: Option<String>,
    /// Time to establish a connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Time for one attempt of a call. Default 2 s.
    pub attempt_timeout: Duration,
    /// Time for a whole call, retries included. Default 5 s.
    pub operation_timeout: Duration,
    /// Attempts per call (1 = no retry), with exponential backoff and jitter between them, and
    /// the SDK's retry quota (a token bucket) on top. Default 3.
    pub max_attempts: u32,
    /// Backoff before the first retry. Default 50 ms.
    pub initial_backoff: Duration,
    /// Longest backoff between retries. Default 1 s.
    pub max_backoff: Duration,
    /// The circuit breaker of each [`KmsSigner`].
    pub breaker: BreakerConfig,
    credentials: Option<StaticCredentials>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            endpoint_url: None,
            region: None,
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            credentials: None,
        }
    }
}

impl fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsConfig")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("breaker", &self.breaker)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "static (redacted)"),
            )
            .finish()
    }
}

impl KmsConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> KmsConfigBuilder {
        KmsConfigBuilder(KmsConfig::default())
    }
}

/// Builds a [`KmsConfig`].
#[derive(Debug, Clone)]
pub struct KmsConfigBuilder(KmsConfig);

impl KmsConfigBuilder {
    /// Sends every call to this endpoint (for example `http://127.0.0.1:4566`).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.0.endpoint_url = Some(url.into());
        self
    }

    /// Uses this AWS region instead of asking the standard chain.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.0.region = Some(region.into());
        self
    }

    /// Uses these credentials instead of the standard chain (emulators, tests). Prefer the
    /// standard chain (roles) in production.
    #[must_use]
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.0.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        });
        self
    }

    /// Connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.0.connect_timeout = d;
        self
    }

    /// Timeout of one attempt.
    #[must_use]
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.0.attempt_timeout = d;
        self
    }

    /// Timeout of a whole call, retries included.
    #[must_use]
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.0.operation_timeout = d;
        self
    }

    /// Attempts per call (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.0.max_attempts = n.max(1);
        self
    }

    /// Backoff before the first retry and the longest backoff.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.0.initial_backoff = initial;
        self.0.max_backoff = max.max(initial);
        self
    }

    /// The circuit breaker of each signer.
    #[must_use]
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.0.breaker = breaker;
        self
    }

    /// The configuration.
    pub fn build(self) -> KmsConfig {
        self.0
    }
}

/// A configured AWS KMS client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct KmsClient {
    inner: aws_sdk_kms::Client,
    breaker: BreakerConfig,
    region: String,
}

impl fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsClient")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl KmsClient {
    /// Resolves region, credentials and endpoint (see [`KmsConfig`]) and builds the client.
    /// No call is made yet; credentials are fetched on the first call.
    ///
    /// Set the region (here or in `AWS_REGION`) outside AWS: otherwise the chain ends by asking
    /// the EC2 instance metadata service.
    ///
    /// # Errors
    /// [`Error::NoRegion`] when no region is found.
    pub async fn connect(config: &KmsConfig) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(c) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "token-kms-static",
            ));
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(ToString::to_string)
            .ok_or(Error::NoRegion)?;
        let mut builder = aws_sdk_kms::config::Builder::from(&sdk)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts.max(1))
                    .with_initial_backoff(config.initial_backoff)
                    .with_max_backoff(config.max_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.attempt_timeout)
                    .operation_timeout(config.operation_timeout)
                    .build(),
            );
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        Ok(KmsClient {
            inner: aws_sdk_kms::Client::from_conf(builder.build()),
            breaker: config.breaker,
            region,
        })
    }

    /// The region the client calls.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The ARN of the KMS key that `key_id` (key id, key ARN, alias name `alias/…` or alias
    /// ARN) names now: one KMS `DescribeKey` call, answering `KeyMetadata.Arn` (or its `KeyId`
    /// when an endpoint sends no ARN; some emulators).
    ///
    /// A [`KmsSigner`] resolves its key once, at start-up, and signs with that key from then on
    /// (see [`KmsSigner::kms_key_arn`]). This call is how to notice that an alias was re-pointed
    /// to another key since: poll it with the signer's configured id
    /// ([`KmsSigner::kms_key_id`]) and compare the answer with [`KmsSigner::signs_with`]; when
    /// it differs, connect a new signer (new key, new `kid`) and rotate it in through the key
    /// ring. The call goes through the client's timeouts and retries, not through a circuit
    /// breaker.
    ///
    /// # Errors
    /// KMS errors classified as for signing ([`Error::KeyNotFound`] for an unknown key or
    /// alias, [`Error::AccessDenied`] without `kms:DescribeKey`, [`Error::Unreachable`],
    /// [`Error::Timeout`], [`Error::Throttled`], …); [`Error::Kms`] when KMS answers without
    /// key metadata.
    pub async fn resolve_key(&self, key_id: &str) -> Result<String> {
        let out = self
            .inner
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| classify("DescribeKey", key_id, e))?;
        let meta = out.key_metadata().ok_or_else(|| Error::Kms {
            operation: "DescribeKey",
            code: "InvalidResponse".to_owned(),
            message: "DescribeKey returned no key metadata".to_owned(),
        })?;
        Ok(meta.arn().unwrap_or(meta.key_id()).to_owned())
    }

    pub(crate) fn sdk(&self) -> &aws_sdk_kms::Client {
        &self.inner
    }
}

/// Maps an SDK error to this crate's error. Service errors are classified by their AWS error
/// code, so the mapping is the same for every operation.
pub(crate) fn classify<E>(operation: &'static str, key_id: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => Error::Timeout { operation },
        SdkError::DispatchFailure(f) if f.is_timeout() => Error::Timeout { operation },
        SdkError::DispatchFailure(_) => Error::Unreachable {
            operation,
            detail: DisplayErrorContext(&err).to_string(),
        },
        SdkError::ResponseError(_) => Error::Unavailable {
            operation,
            code: "ResponseError".to_owned(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().unwrap_or_default().to_owned();
            let status = service.raw().status().as_u16();
            match code.as_str() {
                "NotFoundException" => Error::KeyNotFound {
                    key_id: key_id.to_owned(),
                },
                "DisabledException" | "KMSInvalidStateException" => Error::KeyDisabled {
                    key_id: key_id.to_owned(),
                    message,
                },
                "AccessDeniedException" | "AccessDenied" => Error::AccessDenied {
                    operation,
                    key_id: key_id.to_owned(),
                    message,
                },
                "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
                    Error::Throttled { operation }
                }
                "KMSInternalException"
                | "DependencyTimeoutException"
                | "KeyUnavailableException" => Error::Unavailable {
                    operation,
                    code,
                    message,
                },
                _ if status >= 500 => Error::Unavailable {
                    operation,
                    code,
                    message,
                },
                _ => Error::Kms {
                    operation,
                    code,
                    message,
                },
            }
        }
        _ => Error::RequestConstruction {
            operation,
            source: Box::new(err),
        },
    }
}

/// Whether two KMS key references name the same key: equal, or equal key ids after `key/` in
/// an ARN (KMS answers with ARNs; a key may be configured by bare id).
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    fn id(s: &str) -> &str {
        s.rsplit_once(":key/").map_or(s, |(_, id)| id)
    }
    a == b || id(a) == id(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_references() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(same_key(arn, "1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(same_key(arn, arn));
        assert!(!same_key(arn, "alias/x"));
        assert!(!same_key(
            arn,
            "arn:aws:kms:eu-west-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"
        ));
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = KmsConfig::builder()
            .static_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None)
            .build();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AKIDEXAMPLE"));
        assert!(!dbg.contains("wJalrXUtnFEMI"));
        assert!(dbg.contains("redacted"));
    }
}
