//! Configuration from the environment, validated as a whole at start-up.
//!
//! One table, [`VARIABLES`], names every variable the server reads with what it accepts, its
//! default and its meaning. Everything else is derived from it: the parser takes each default
//! and range from the table, [`markdown_table`] renders the README's configuration table (and
//! `token-service config table` prints it), and [`Config::effective`] reports the value in
//! force for each variable (`token-service config check`).
//!
//! Every variable is read here and nowhere else, and every check of a value happens here, so a
//! configuration that [`Config::from_vars`] accepts starts (or fails only on what cannot be
//! known without I/O: a file's contents, a reachable Redis, a KMS key). Every error names its
//! variable. Secrets (the refresh-token pepper, the DPoP nonce key) are held in their zeroizing
//! library types and never printed by `Debug` or [`Config::effective`].

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use token_dpop::NonceKey;
use token_refresh::Pepper;
use token_store_redis::RedisConfig;

use crate::callers::{CallerSpec, Credential};
use zeroize::Zeroizing;

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it, and how to fix it where that is not obvious.
    pub reason: String,
}

impl ConfigError {
    /// An error about `var`.
    pub fn new(var: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            var,
            reason: reason.into(),
        }
    }
}

fn err(var: &Variable, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(var.name, reason)
}

/// What a variable accepts, and its default.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Accepts {
    /// A whole number from `min` to `max`; `unit` is printed after it in the table.
    Number {
        /// The value when the variable is unset.
        default: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
        /// `"seconds"`, `"ms"`, `""`…
        unit: &'static str,
    },
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Flag {
        /// The value when the variable is unset.
        default: bool,
    },
    /// One of `choices`, spelt exactly.
    Choice {
        /// The value when the variable is unset.
        default: &'static str,
        /// Every value accepted.
        choices: &'static [&'static str],
    },
    /// Text of the form `form` (an address, a URL, a path, a list…); `default` says what an
    /// unset variable means, as the table shows it (`-`: nothing).
    Text {
        /// What the variable holds when unset.
        default: &'static str,
        /// The form of an accepted value.
        form: &'static str,
    },
    /// A secret key in hexadecimal of `min_bytes` to `max_bytes` bytes; `default` says what
    /// an unset variable means.
    HexKey {
        /// What an unset variable means.
        default: &'static str,
        /// The shortest key accepted, in bytes.
        min_bytes: usize,
        /// The longest key accepted, in bytes.
        max_bytes: usize,
    },
}

/// One environment variable the server reads.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Variable {
    /// The variable's name.
    pub name: &'static str,
    /// What it accepts and its default.
    pub accepts: Accepts,
    /// What it means (Markdown, one line).
    pub description: &'static str,
}

impl Variable {
    /// The default as the README's table shows it.
    pub fn default_text(&self) -> String {
        match self.accepts {
            Accepts::Number { default, .. } => default.to_string(),
            Accepts::Flag { default } => default.to_string(),
            Accepts::Choice { default, .. } => default.to_owned(),
            Accepts::Text { default, .. } | Accepts::HexKey { default, .. } => default.to_owned(),
        }
    }

    /// What the variable accepts, as the README's table shows it.
    pub fn accepts_text(&self) -> String {
        match self.accepts {
            Accepts::Number { min, max, unit, .. } => {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                format!("{min} to {max}{unit}")
            }
            Accepts::Flag { .. } => "`true` or `false`".to_owned(),
            Accepts::Choice { choices, .. } => choices
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Accepts::Text { form, .. } => form.to_owned(),
            Accepts::HexKey {
                min_bytes,
                max_bytes,
                ..
            } if min_bytes == max_bytes => {
                format!("{min_bytes} bytes in hex ({} digits)", 2 * min_bytes)
            }
            Accepts::HexKey {
                min_bytes,
                max_bytes,
                ..
            } => format!("{min_bytes} to {max_bytes} bytes in hex"),
        }
    }
}

/// The variables, one constant each, so the parser and [`VARIABLES`] name the same values.
pub mod vars {
    use super::{Accepts, Variable};

    const DAY: u64 = 86_400;

    const fn number(
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
        unit: &'static str,
        description: &'static str,
    ) -> Variable {
        Variable {
            name,
            accepts: Accepts::Number {
                default,
                min,
                max,
                unit,
            },
            description,
        }
    }

    const fn text(
        name: &'static str,
        default: &'static str,
        form: &'static str,
        description: &'static str,
    ) -> Variable {
        Variable {
            name,
            accepts: Accepts::Text { default, form },
            description,
        }
    }

    /// `HOST`.
    pub const HOST: Variable = text(
        "HOST",
        "0.0.0.0",
        "an IPv4 or IPv6 address",
        "Bind address of the gRPC and admin ports",
    );
    /// `PORT`.
    pub const PORT: Variable = number("PORT", 50052, 0, 65_535, "", "gRPC port (0: any free port)");
    /// `ADMIN_PORT`.
    pub const ADMIN_PORT: Variable = number(
        "ADMIN_PORT",
        9090,
        0,
        65_535,
        "",
        "Admin HTTP port: /metrics, /healthz, /readyz, /.well-known/jwks.json; must differ from `PORT`",
    );
    /// `REDIS_URL`.
    pub const REDIS_URL: Variable = text(
        "REDIS_URL",
        "-",
        "`redis://`, `rediss://`, `redis-cluster://`, `redis-sentinel://` (or `valkey…`) URL",
        "Redis store; unset: in-memory store, one instance only. With it, `REFRESH_TOKEN_PEPPER` is required",
    );
    /// `REDIS_POOL_SIZE`.
    pub const REDIS_POOL_SIZE: Variable = number(
        "REDIS_POOL_SIZE",
        4,
        1,
        64,
        "",
        "Redis connections per instance",
    );
    /// `REDIS_COMMAND_TIMEOUT_MS`.
    pub const REDIS_COMMAND_TIMEOUT_MS: Variable = number(
        "REDIS_COMMAND_TIMEOUT_MS",
        1000,
        10,
        60_000,
        "ms",
        "A Redis command slower than this fails with UNAVAILABLE (nothing is issued)",
    );
    /// `KMS_KEY_ID`.
    pub const KMS_KEY_ID: Variable = text(
        "KMS_KEY_ID",
        "-",
        "a KMS key id, ARN or `alias/…`",
        "AWS KMS key to sign with; an alias is re-read periodically, and re-pointing it rotates the key (published at once, signing after `JWKS_MAX_AGE` and the margin)",
    );
    /// `SIGNING_KEY_FILE`.
    pub const SIGNING_KEY_FILE: Variable = text(
        "SIGNING_KEY_FILE",
        "-",
        "a path",
        "PKCS#8 PEM, private JWK or wrapped-key file to sign with (not with `KMS_KEY_ID`); neither: managed keys, generated and rotated by the fleet through the store",
    );
    /// `KMS_ENDPOINT_URL`.
    pub const KMS_ENDPOINT_URL: Variable = text(
        "KMS_ENDPOINT_URL",
        "-",
        "a URL",
        "KMS endpoint override (private endpoints, emulators); the AWS SDK also reads `AWS_ENDPOINT_URL_KMS`. Region and credentials come from the standard AWS chain",
    );
    /// `WRAPPING_KMS_KEY_ID`.
    pub const WRAPPING_KMS_KEY_ID: Variable = text(
        "WRAPPING_KMS_KEY_ID",
        "-",
        "a KMS key id or ARN",
        "Symmetric KMS key that wraps managed keys in the store (envelope encryption), or unwraps a wrapped `SIGNING_KEY_FILE` (made by `token-service keys wrap`; required with one: the key the blob names is never used unless it is this one)",
    );
    /// `KEY_ENCRYPTION_KEY`.
    pub const KEY_ENCRYPTION_KEY: Variable = Variable {
        name: "KEY_ENCRYPTION_KEY",
        accepts: Accepts::HexKey {
            default: "with `REDIS_URL` and managed keys: this or `WRAPPING_KMS_KEY_ID`; else random",
            min_bytes: 32,
            max_bytes: 1024,
        },
        description: "Wraps the managed signing keys kept in the store (XChaCha20-Poly1305), shared by all instances (`openssl rand -hex 32`)",
    };
    /// `KEY_ROTATION_PERIOD`.
    pub const KEY_ROTATION_PERIOD: Variable = number(
        "KEY_ROTATION_PERIOD",
        30 * DAY,
        4,
        3 * 365 * DAY,
        "seconds",
        "How long a managed key signs before the next takes over (at least `JWKS_MAX_AGE` plus the margin; a warning below a day); provided keys are only reported due",
    );
    /// `JWKS_MAX_AGE`.
    pub const JWKS_MAX_AGE: Variable = number(
        "JWKS_MAX_AGE",
        300,
        1,
        DAY,
        "seconds",
        "`Cache-Control: max-age` of the JWK Set; a new key is published this long plus a margin (`2 × min(max(JWKS_MAX_AGE/4, 1), 30) + 1` s) before it signs",
    );
    /// `PUBLISHED_KEY_FILES`.
    pub const PUBLISHED_KEY_FILES: Variable = text(
        "PUBLISHED_KEY_FILES",
        "-",
        "comma-separated paths",
        "Public keys (JWK or PEM) published and accepted for verification, never used to sign: tokens of a key being migrated away from",
    );
    /// `SIGNING_ALG`.
    pub const SIGNING_ALG: Variable = Variable {
        name: "SIGNING_ALG",
        accepts: Accepts::Choice {
            default: "ES256",
            choices: &["ES256", "EdDSA"],
        },
        description: "Algorithm of a generated key",
    };
    /// `ISSUER`.
    pub const ISSUER: Variable = text(
        "ISSUER",
        "http://localhost:<PORT>",
        "text without control characters",
        "`iss` of every token",
    );
    /// `DEFAULT_AUDIENCE`.
    pub const DEFAULT_AUDIENCE: Variable = text(
        "DEFAULT_AUDIENCE",
        "-",
        "a comma-separated list",
        "`aud` when a request names none (a request naming none without it is refused: every token has an `aud`)",
    );
    /// `ACCESS_TOKEN_TTL`.
    pub const ACCESS_TOKEN_TTL: Variable = number(
        "ACCESS_TOKEN_TTL",
        900,
        1,
        DAY,
        "seconds",
        "Access token lifetime; also the cap of per-request TTLs",
    );
    /// `REFRESH_TOKEN_TTL`.
    pub const REFRESH_TOKEN_TTL: Variable = number(
        "REFRESH_TOKEN_TTL",
        604_800,
        1,
        365 * DAY,
        "seconds",
        "Refresh token idle lifetime, renewed by each rotation",
    );
    /// `REFRESH_FAMILY_LIFETIME`.
    pub const REFRESH_FAMILY_LIFETIME: Variable = number(
        "REFRESH_FAMILY_LIFETIME",
        30 * DAY,
        1,
        3 * 365 * DAY,
        "seconds",
        "Absolute lifetime of a refresh-token family, at least `REFRESH_TOKEN_TTL`; rotation never extends it",
    );
    /// `REFRESH_GRACE_SECONDS`.
    pub const REFRESH_GRACE_SECONDS: Variable = number(
        "REFRESH_GRACE_SECONDS",
        0,
        0,
        300,
        "seconds",
        "Window in which a retried refresh gets the same successor (0: off)",
    );
    /// `REFRESH_GRACE_MAX_USES`.
    pub const REFRESH_GRACE_MAX_USES: Variable = number(
        "REFRESH_GRACE_MAX_USES",
        1,
        1,
        10,
        "",
        "Retries allowed within the grace window",
    );
    /// `REFRESH_TOKEN_PEPPER`.
    pub const REFRESH_TOKEN_PEPPER: Variable = Variable {
        name: "REFRESH_TOKEN_PEPPER",
        accepts: Accepts::HexKey {
            default: "required with `REDIS_URL`; else random",
            min_bytes: 32,
            max_bytes: 1024,
        },
        description: "Key of the refresh-token hashes, shared by all instances (`openssl rand -hex 32`)",
    };
    /// `DPOP_MAX_AGE`.
    pub const DPOP_MAX_AGE: Variable = number(
        "DPOP_MAX_AGE",
        60,
        1,
        3600,
        "seconds",
        "Maximum age of a DPoP proof",
    );
    /// `DPOP_LEEWAY`.
    pub const DPOP_LEEWAY: Variable = number(
        "DPOP_LEEWAY",
        5,
        0,
        300,
        "seconds",
        "Clock skew tolerated on a proof's `iat`",
    );
    /// `DPOP_NONCE_REQUIRED`.
    pub const DPOP_NONCE_REQUIRED: Variable = Variable {
        name: "DPOP_NONCE_REQUIRED",
        accepts: Accepts::Flag { default: false },
        description: "Require server nonces in DPoP proofs",
    };
    /// `DPOP_NONCE_KEY`.
    pub const DPOP_NONCE_KEY: Variable = Variable {
        name: "DPOP_NONCE_KEY",
        accepts: Accepts::HexKey {
            default: "required with `REDIS_URL` and nonces; else random",
            min_bytes: 32,
            max_bytes: 32,
        },
        description: "Key of DPoP nonces, shared by all instances (`openssl rand -hex 32`)",
    };
    /// `CALLER_TOKEN_SHA256`.
    pub const CALLER_TOKEN_SHA256: Variable = text(
        "CALLER_TOKEN_SHA256",
        "-",
        "comma-separated SHA-256 digests in hex",
        "Digests of accepted caller bearer tokens; none and no mutual TLS: a caller token is generated and logged",
    );
    /// `CALLER_TOKEN_SHA256_FILE`.
    pub const CALLER_TOKEN_SHA256_FILE: Variable = text(
        "CALLER_TOKEN_SHA256_FILE",
        "-",
        "a path",
        "File with one hex digest per line (`#` comments), added to the above",
    );
    /// `CALLERS_FILE`.
    pub const CALLERS_FILE: Variable = text(
        "CALLERS_FILE",
        "-",
        "a path",
        "TOML file of named callers, each with one credential and its rights (see Security); with it, a client certificate must match a caller",
    );
    /// `TLS_CERT_FILE`.
    pub const TLS_CERT_FILE: Variable = text(
        "TLS_CERT_FILE",
        "-",
        "a path",
        "PEM certificate chain: serve gRPC over TLS (with `TLS_KEY_FILE`)",
    );
    /// `TLS_KEY_FILE`.
    pub const TLS_KEY_FILE: Variable = text(
        "TLS_KEY_FILE",
        "-",
        "a path",
        "PEM private key for `TLS_CERT_FILE`",
    );
    /// `TLS_CLIENT_CA_FILE`.
    pub const TLS_CLIENT_CA_FILE: Variable = text(
        "TLS_CLIENT_CA_FILE",
        "-",
        "a path",
        "PEM CA bundle: require client certificates (mutual TLS); a verified certificate authenticates the caller",
    );
    /// `LOG_FORMAT`.
    pub const LOG_FORMAT: Variable = Variable {
        name: "LOG_FORMAT",
        accepts: Accepts::Choice {
            default: "pretty",
            choices: &["pretty", "json"],
        },
        description: "Log lines for people or one JSON object per line",
    };
    /// `RUST_LOG`.
    pub const RUST_LOG: Variable = text(
        "RUST_LOG",
        "info",
        "a tracing `EnvFilter` directive",
        "Log filter",
    );
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: Variable = text(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "-",
        "an `http://host:port` URL",
        "OpenTelemetry collector (OTLP over gRPC) to export traces to; unset: no export, and no tracing cost",
    );
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Variable = text(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "-",
        "an `http://host:port` URL",
        "As `OTEL_EXPORTER_OTLP_ENDPOINT`, for traces only (takes precedence)",
    );
    /// `OTEL_SERVICE_NAME`.
    pub const OTEL_SERVICE_NAME: Variable = text(
        "OTEL_SERVICE_NAME",
        "token-service",
        "text",
        "`service.name` of the exported spans",
    );
    /// `OTEL_TRACES_SAMPLER`.
    pub const OTEL_TRACES_SAMPLER: Variable = Variable {
        name: "OTEL_TRACES_SAMPLER",
        accepts: Accepts::Choice {
            default: "parentbased_traceidratio",
            choices: &[
                "parentbased_traceidratio",
                "parentbased_always_on",
                "parentbased_always_off",
                "traceidratio",
                "always_on",
                "always_off",
            ],
        },
        description: "Which requests' spans are exported; `parentbased_*` follows the caller's `traceparent` decision",
    };
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub const OTEL_TRACES_SAMPLER_ARG: Variable = text(
        "OTEL_TRACES_SAMPLER_ARG",
        "0.1",
        "a ratio from 0 to 1",
        "Share of root requests (no sampled `traceparent`) traced by the `*traceidratio` samplers",
    );
    /// `MAX_CONCURRENT_PER_CALLER`.
    pub const MAX_CONCURRENT_PER_CALLER: Variable = number(
        "MAX_CONCURRENT_PER_CALLER",
        256,
        1,
        1_000_000,
        "",
        "In-flight requests allowed per caller",
    );
    /// `MAX_REQUEST_BYTES`.
    pub const MAX_REQUEST_BYTES: Variable = number(
        "MAX_REQUEST_BYTES",
        65_536,
        1024,
        4 * 1024 * 1024,
        "bytes",
        "Largest gRPC request message",
    );
    /// `SHUTDOWN_GRACE_SECONDS`.
    pub const SHUTDOWN_GRACE_SECONDS: Variable = number(
        "SHUTDOWN_GRACE_SECONDS",
        20,
        0,
        600,
        "seconds",
        "Time in-flight requests get to finish after SIGTERM",
    );
}

/// Every variable the server reads, in the order the README lists them.
pub const VARIABLES: &[Variable] = &[
    vars::HOST,
    vars::PORT,
    vars::ADMIN_PORT,
    vars::REDIS_URL,
    vars::REDIS_POOL_SIZE,
    vars::REDIS_COMMAND_TIMEOUT_MS,
    vars::KMS_KEY_ID,
    vars::SIGNING_KEY_FILE,
    vars::KMS_ENDPOINT_URL,
    vars::WRAPPING_KMS_KEY_ID,
    vars::KEY_ENCRYPTION_KEY,
    vars::KEY_ROTATION_PERIOD,
    vars::JWKS_MAX_AGE,
    vars::PUBLISHED_KEY_FILES,
    vars::SIGNING_ALG,
    vars::ISSUER,
    vars::DEFAULT_AUDIENCE,
    vars::ACCESS_TOKEN_TTL,
    vars::REFRESH_TOKEN_TTL,
    vars::REFRESH_FAMILY_LIFETIME,
    vars::REFRESH_GRACE_SECONDS,
    vars::REFRESH_GRACE_MAX_USES,
    vars::REFRESH_TOKEN_PEPPER,
    vars::DPOP_MAX_AGE,
    vars::DPOP_LEEWAY,
    vars::DPOP_NONCE_REQUIRED,
    vars::DPOP_NONCE_KEY,
    vars::CALLER_TOKEN_SHA256,
    vars::CALLER_TOKEN_SHA256_FILE,
    vars::CALLERS_FILE,
    vars::TLS_CERT_FILE,
    vars::TLS_KEY_FILE,
    vars::TLS_CLIENT_CA_FILE,
    vars::LOG_FORMAT,
    vars::RUST_LOG,
    vars::OTEL_EXPORTER_OTLP_ENDPOINT,
    vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    vars::OTEL_SERVICE_NAME,
    vars::OTEL_TRACES_SAMPLER,
    vars::OTEL_TRACES_SAMPLER_ARG,
    vars::MAX_CONCURRENT_PER_CALLER,
    vars::MAX_REQUEST_BYTES,
    vars::SHUTDOWN_GRACE_SECONDS,
];

/// The README's configuration table, rendered from [`VARIABLES`].
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| Variable | Default | Accepts | Description |\n|----------|---------|---------|-------------|\n",
    );
    for var in VARIABLES {
        table.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            var.name,
            var.default_text(),
            var.accepts_text(),
            var.description
        ));
    }
    table
}

/// The repository's `.env.example`, rendered from [`VARIABLES`]: every variable, commented out
/// at its default, under its description. The format is the one of systemd's
/// `EnvironmentFile=`, docker's `--env-file` and dotenv loaders (`NAME=value` lines, `#`
/// comments).
pub fn env_example() -> String {
    let mut text = String::from(
        "# token-service configuration: every variable the server reads, commented out at its\n\
         # default. Uncomment what you change; an unset variable takes its default.\n\
         # Printed by `token-service config env`; a test keeps this file equal to it.\n\
         # Secrets (REFRESH_TOKEN_PEPPER, DPOP_NONCE_KEY, KEY_ENCRYPTION_KEY, a REDIS_URL with a\n\
         # password) belong in a secret store or a file readable by the service alone, never in\n\
         # version control.\n",
    );
    for var in VARIABLES {
        let default = var.default_text();
        // Defaults that are not a value (`-`, `http://localhost:<PORT>`, "random") are left
        // empty: the server then takes them itself.
        let literal = default != "-" && !default.contains(' ') && !default.contains('<');
        text.push_str(&format!(
            "\n# {}\n# Accepts: {}. Default: {}\n#{}={}\n",
            var.description,
            var.accepts_text(),
            default,
            var.name,
            if literal { default.as_str() } else { "" }
        ));
    }
    text
}

/// How often an instance re-reads the managed keys (or a KMS alias) even without a change
/// signal: a quarter of `JWKS_MAX_AGE`, between 1 and 30 seconds.
pub fn sync_interval(jwks_max_age: u64) -> u64 {
    (jwks_max_age / 4).clamp(1, 30)
}

/// The margin added to every wait of the key schedule: two sync intervals (an instance that
/// missed the change signal learns of a new key within one) plus a second of clock skew.
pub fn propagation_margin(jwks_max_age: u64) -> u64 {
    2 * sync_interval(jwks_max_age) + 1
}

/// The longest value any variable may have (8 KiB). Every variable holds a short setting, a
/// path, a URL or a short list; a longer value is a mistake (or an attack through the
/// environment) and stops start-up with an error naming the variable.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Where families, revocations and DPoP replay entries live.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In this process only (the embedded default; one instance).
    Memory,
    /// Redis, standalone, Cluster or Sentinel; checked by token-store-redis's own parser
    /// (`Debug` shows the URL without its password).
    Redis(Box<RedisConfig>),
}

/// Where the signing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// Managed keys: generated, shared through the store (wrapped) and rotated by the fleet.
    Managed,
    /// A PKCS#8 PEM, private JWK or wrapped-key file.
    File(PathBuf),
    /// An AWS KMS key.
    Kms(String),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// OTLP trace export (`OTEL_*`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://`).
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: &'static str,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub ratio: f64,
}

/// TLS for the gRPC port.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle for client certificates: mutual TLS, and a verified client certificate
    /// authenticates the caller.
    pub client_ca_file: Option<PathBuf>,
}

/// The whole configuration; each field names the variable it comes from (see [`vars`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// gRPC listen address (`HOST`, `PORT`).
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address (`HOST`, `ADMIN_PORT`).
    pub admin_addr: SocketAddr,
    /// `REDIS_URL`, `REDIS_POOL_SIZE`, `REDIS_COMMAND_TIMEOUT_MS`.
    pub store: StoreConfig,
    /// `KMS_KEY_ID` / `SIGNING_KEY_FILE`.
    pub key_source: KeySource,
    /// `KMS_ENDPOINT_URL`: a KMS endpoint override (the SDK also reads `AWS_ENDPOINT_URL_KMS`).
    pub kms_endpoint: Option<String>,
    /// `WRAPPING_KMS_KEY_ID`: the KMS key that unwraps a `SIGNING_KEY_FILE` blob (required
    /// with one).
    pub wrapping_key_id: Option<String>,
    /// `KEY_ENCRYPTION_KEY`: wraps managed keys in the store.
    pub key_encryption_key: Option<Zeroizing<Vec<u8>>>,
    /// `KEY_ROTATION_PERIOD` seconds: how long a key signs before the next one takes over.
    pub key_rotation_period: u64,
    /// `JWKS_MAX_AGE` seconds: the JWK Set's `Cache-Control: max-age`.
    pub jwks_max_age: u64,
    /// `PUBLISHED_KEY_FILES`: verification-only public keys.
    pub published_key_files: Vec<PathBuf>,
    /// `SIGNING_ALG` for generated keys (`ES256` or `EdDSA`).
    pub signing_alg: token_jwt::Algorithm,
    /// `ISSUER`.
    pub issuer: String,
    /// `DEFAULT_AUDIENCE` (comma separated).
    pub default_audience: Vec<String>,
    /// `ACCESS_TOKEN_TTL` seconds.
    pub access_token_ttl: u64,
    /// `REFRESH_TOKEN_TTL` seconds (idle).
    pub refresh_token_ttl: u64,
    /// `REFRESH_FAMILY_LIFETIME` seconds (absolute).
    pub family_lifetime: u64,
    /// `REFRESH_GRACE_SECONDS` (0: off).
    pub grace_seconds: u64,
    /// `REFRESH_GRACE_MAX_USES`.
    pub grace_max_uses: u32,
    /// `REFRESH_TOKEN_PEPPER`; `None` (memory store only): random per process.
    pub pepper: Option<Pepper>,
    /// `DPOP_MAX_AGE` seconds.
    pub dpop_max_age: u64,
    /// `DPOP_LEEWAY` seconds.
    pub dpop_leeway: u64,
    /// `DPOP_NONCE_REQUIRED`.
    pub dpop_nonce_required: bool,
    /// `DPOP_NONCE_KEY`; `None` (memory store, or nonces off): random per process.
    pub dpop_nonce_key: Option<NonceKey>,
    /// `CALLER_TOKEN_SHA256` and `CALLER_TOKEN_SHA256_FILE`: SHA-256 digests of accepted caller
    /// tokens. Empty (and no mTLS): a random token is generated and logged once.
    pub caller_token_digests: Vec<[u8; 32]>,
    /// `CALLERS_FILE`: named callers with their rights; `None` without the variable.
    pub callers: Option<Vec<CallerSpec>>,
    /// `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`.
    pub tls: Option<TlsConfig>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG` (checked as an `EnvFilter`).
    pub log_filter: String,
    /// `OTEL_*`: OTLP trace export, when an endpoint is set.
    pub otlp: Option<OtlpConfig>,
    /// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` as given (reported
    /// by `config check` even with export off).
    pub otel_settings: (String, &'static str, f64),
    /// `MAX_CONCURRENT_PER_CALLER`.
    pub max_concurrent_per_caller: usize,
    /// `MAX_REQUEST_BYTES`.
    pub max_request_bytes: usize,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight requests may take after SIGTERM.
    pub shutdown_grace_seconds: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("admin_addr", &self.admin_addr)
            .field("store", &self.store)
            .field("key_source", &self.key_source)
            .field("issuer", &self.issuer)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("caller_tokens", &self.caller_token_digests.len())
            .field("callers", &self.callers.as_ref().map(Vec::len))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Refuses a value of a variable of [`VARIABLES`] longer than [`MAX_VALUE_BYTES`]. Variables
/// the server does not read are not looked at.
fn check_sizes(vars: &HashMap<String, String>) -> Result<(), ConfigError> {
    for var in VARIABLES {
        let len = vars.get(var.name).map_or(0, String::len);
        if len > MAX_VALUE_BYTES {
            let hint = if var.name == vars::CALLER_TOKEN_SHA256.name {
                "; list many digests in CALLER_TOKEN_SHA256_FILE instead"
            } else {
                ""
            };
            return Err(err(
                var,
                format!("is {len} bytes long, more than the {MAX_VALUE_BYTES} allowed{hint}"),
            ));
        }
    }
    Ok(())
}

/// The variables being parsed; each reader takes its default and range from the [`Variable`].
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn text(&self, var: &Variable) -> Option<&str> {
        self.0
            .get(var.name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn number(&self, var: &Variable) -> Result<u64, ConfigError> {
        let Accepts::Number {
            default, min, max, ..
        } = var.accepts
        else {
            return Err(err(var, "is not a number in the variable table"));
        };
        let value = match self.text(var) {
            None => default,
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| err(var, format!("expected a whole number, got {text:?}")))?,
        };
        if value < min || value > max {
            return Err(err(
                var,
                format!("must be {}, got {value}", var.accepts_text()),
            ));
        }
        Ok(value)
    }

    /// A number that fits `T` (the table's range guarantees it; checked all the same).
    fn number_as<T: TryFrom<u64>>(&self, var: &Variable) -> Result<T, ConfigError> {
        let value = self.number(var)?;
        T::try_from(value).map_err(|_| err(var, format!("{value} is out of range")))
    }

    fn flag(&self, var: &Variable) -> Result<bool, ConfigError> {
        let Accepts::Flag { default } = var.accepts else {
            return Err(err(var, "is not a flag in the variable table"));
        };
        match self.text(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(err(var, format!("expected true or false, got {other:?}"))),
        }
    }

    fn choice(&self, var: &Variable) -> Result<&'static str, ConfigError> {
        let Accepts::Choice { default, choices } = var.accepts else {
            return Err(err(var, "is not a choice in the variable table"));
        };
        match self.text(var) {
            None => Ok(default),
            Some(text) => choices.iter().copied().find(|c| *c == text).ok_or_else(|| {
                err(
                    var,
                    format!("expected one of {}, got {text:?}", var.accepts_text()),
                )
            }),
        }
    }

    fn hex_key(&self, var: &Variable) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
        let Accepts::HexKey {
            min_bytes,
            max_bytes,
            ..
        } = var.accepts
        else {
            return Err(err(var, "is not a key in the variable table"));
        };
        let Some(text) = self.text(var) else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(hex_decode(text.trim()).ok_or_else(|| {
            err(
                var,
                format!("not hexadecimal; {}", make_key_hint(min_bytes)),
            )
        })?);
        if bytes.len() < min_bytes || bytes.len() > max_bytes {
            return Err(err(
                var,
                format!(
                    "must be {} (it is {} bytes; a key is never truncated); {}",
                    var.accepts_text(),
                    bytes.len(),
                    make_key_hint(min_bytes)
                ),
            ));
        }
        Ok(Some(bytes))
    }
}

/// How to make a key of `bytes` bytes, for error messages.
fn make_key_hint(bytes: usize) -> String {
    format!("make one with `openssl rand -hex {bytes}`")
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                // `from_str_radix` alone would take a sign: "+f" is 15.
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Reads a file of at most `max` bytes as UTF-8; the error is the reason.
fn read_limited(path: &str, max: usize) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut text = String::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if text.len() > max {
        return Err(format!("{path} is larger than the {max} bytes allowed"));
    }
    Ok(text)
}

fn digest(var: &Variable, text: &str) -> Result<[u8; 32], ConfigError> {
    crate::callers::sha256_hex(text).ok_or_else(|| {
        err(
            var,
            "each entry must be a SHA-256 digest: 64 hex digits; make a caller token with \
                 `openssl rand -hex 32` and its digest with `printf %s \"$TOKEN\" | sha256sum`",
        )
    })
}

fn list(text: Option<&str>) -> Vec<String> {
    text.map(|a| {
        a.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Reads a map of variables.
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        use vars::*;

        check_sizes(vars)?;
        let v = Vars(vars);
        let host_text = v.text(&HOST).unwrap_or("0.0.0.0");
        let host: IpAddr = host_text
            .trim()
            .parse()
            .map_err(|_| err(&HOST, format!("expected an IP address, got {host_text:?}")))?;
        let port: u16 = v.number_as(&PORT)?;
        let admin_port: u16 = v.number_as(&ADMIN_PORT)?;
        if port != 0 && port == admin_port {
            return Err(err(&ADMIN_PORT, "must differ from PORT"));
        }

        let redis_pool_size: usize = v.number_as(&REDIS_POOL_SIZE)?;
        let redis_command_timeout_ms = v.number(&REDIS_COMMAND_TIMEOUT_MS)?;
        let store = match v.text(&REDIS_URL) {
            None => StoreConfig::Memory,
            Some(url) => {
                let redis = RedisConfig::builder(url.trim())
                    .pool_size(redis_pool_size)
                    .command_timeout(Duration::from_millis(redis_command_timeout_ms))
                    .build()
                    .map_err(|e| {
                        err(
                            &REDIS_URL,
                            format!(
                                "{e} (accepted: {})",
                                REDIS_URL.accepts_text().replace('`', "")
                            ),
                        )
                    })?;
                StoreConfig::Redis(Box::new(redis))
            }
        };

        let key_source = match (v.text(&KMS_KEY_ID), v.text(&SIGNING_KEY_FILE)) {
            (Some(_), Some(_)) => {
                return Err(err(
                    &SIGNING_KEY_FILE,
                    "set either KMS_KEY_ID or SIGNING_KEY_FILE, not both",
                ));
            }
            (Some(id), None) => KeySource::Kms(id.to_owned()),
            (None, Some(path)) => KeySource::File(PathBuf::from(path)),
            (None, None) => KeySource::Managed,
        };
        let key_rotation_period = v.number(&KEY_ROTATION_PERIOD)?;
        let jwks_max_age = v.number(&JWKS_MAX_AGE)?;
        let key_encryption_key = v.hex_key(&KEY_ENCRYPTION_KEY)?;
        let wrapping_key_id = v.text(&WRAPPING_KMS_KEY_ID).map(str::to_owned);
        let published_key_files = list(v.text(&PUBLISHED_KEY_FILES))
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let signing_alg = match v.choice(&SIGNING_ALG)? {
            "EdDSA" => token_jwt::Algorithm::EdDSA,
            _ => token_jwt::Algorithm::ES256,
        };

        let issuer = v
            .text(&ISSUER)
            .map_or_else(|| format!("http://localhost:{port}"), str::to_owned);
        if issuer.trim().is_empty() || issuer.chars().any(char::is_control) {
            return Err(err(
                &ISSUER,
                "must be a non-empty string without control characters",
            ));
        }
        let default_audience = list(v.text(&DEFAULT_AUDIENCE));

        let access_token_ttl = v.number(&ACCESS_TOKEN_TTL)?;
        let refresh_token_ttl = v.number(&REFRESH_TOKEN_TTL)?;
        let family_lifetime = v.number(&REFRESH_FAMILY_LIFETIME)?;
        if family_lifetime < refresh_token_ttl {
            return Err(err(
                &REFRESH_FAMILY_LIFETIME,
                "must be at least REFRESH_TOKEN_TTL",
            ));
        }
        let grace_seconds = v.number(&REFRESH_GRACE_SECONDS)?;
        let grace_max_uses: u32 = v.number_as(&REFRESH_GRACE_MAX_USES)?;

        let pepper = match v.hex_key(&REFRESH_TOKEN_PEPPER)? {
            Some(bytes) => Some(
                Pepper::new(bytes.to_vec())
                    .map_err(|e| err(&REFRESH_TOKEN_PEPPER, e.to_string()))?,
            ),
            None if matches!(store, StoreConfig::Redis(_)) => {
                return Err(err(
                    &REFRESH_TOKEN_PEPPER,
                    format!(
                        "required with REDIS_URL: every instance must hash refresh tokens with the same key; {}",
                        make_key_hint(32)
                    ),
                ));
            }
            None => None,
        };

        let dpop_max_age = v.number(&DPOP_MAX_AGE)?;
        let dpop_leeway = v.number(&DPOP_LEEWAY)?;
        let dpop_nonce_required = v.flag(&DPOP_NONCE_REQUIRED)?;
        let dpop_nonce_key = match v.hex_key(&DPOP_NONCE_KEY)? {
            Some(bytes) => {
                let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| err(&DPOP_NONCE_KEY, "must be exactly 32 bytes"))?,
                );
                Some(NonceKey::from_bytes(&secret))
            }
            None if dpop_nonce_required && matches!(store, StoreConfig::Redis(_)) => {
                return Err(err(
                    &DPOP_NONCE_KEY,
                    format!(
                        "required with REDIS_URL and DPOP_NONCE_REQUIRED: every instance must accept the nonces the others issue; {}",
                        make_key_hint(32)
                    ),
                ));
            }
            None => None,
        };

        let mut caller_token_digests = Vec::new();
        if let Some(text) = v.text(&CALLER_TOKEN_SHA256) {
            for entry in text.split(',').filter(|e| !e.trim().is_empty()) {
                caller_token_digests.push(digest(&CALLER_TOKEN_SHA256, entry)?);
            }
        }
        if let Some(path) = v.text(&CALLER_TOKEN_SHA256_FILE) {
            let text = std::fs::read_to_string(path).map_err(|e| {
                err(
                    &CALLER_TOKEN_SHA256_FILE,
                    format!("cannot read {path}: {e}"),
                )
            })?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                caller_token_digests.push(digest(&CALLER_TOKEN_SHA256_FILE, line)?);
            }
        }

        let callers = match v.text(&CALLERS_FILE) {
            None => None,
            Some(path) => {
                let text = read_limited(path, crate::callers::MAX_CALLERS_FILE_BYTES)
                    .map_err(|reason| err(&CALLERS_FILE, reason))?;
                let specs = crate::callers::parse(&text)
                    .map_err(|reason| err(&CALLERS_FILE, format!("{path}: {reason}")))?;
                if let Some(duplicate) = specs.iter().find(|s| {
                    matches!(s.credential, Credential::TokenSha256(d) if caller_token_digests.contains(&d))
                }) {
                    return Err(err(
                        &CALLERS_FILE,
                        format!(
                            "{path}: caller {:?}: its token is also in CALLER_TOKEN_SHA256(_FILE), which grants every right; list it in one place",
                            duplicate.caller.name
                        ),
                    ));
                }
                Some(specs)
            }
        };

        let tls = match (v.text(&TLS_CERT_FILE), v.text(&TLS_KEY_FILE)) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert_file: cert.into(),
                key_file: key.into(),
                client_ca_file: v.text(&TLS_CLIENT_CA_FILE).map(PathBuf::from),
            }),
            (None, None) => {
                if v.text(&TLS_CLIENT_CA_FILE).is_some() {
                    return Err(err(
                        &TLS_CLIENT_CA_FILE,
                        "needs TLS_CERT_FILE and TLS_KEY_FILE",
                    ));
                }
                None
            }
            (Some(_), None) => return Err(err(&TLS_KEY_FILE, "required with TLS_CERT_FILE")),
            (None, Some(_)) => return Err(err(&TLS_CERT_FILE, "required with TLS_KEY_FILE")),
        };

        let log_format = match v.choice(&LOG_FORMAT)? {
            "json" => LogFormat::Json,
            _ => LogFormat::Pretty,
        };
        let log_filter = v.text(&RUST_LOG).unwrap_or("info").to_owned();
        // tracing-subscriber 0.3's directive parser slices a span directive by byte offsets
        // and panics inside a multi-byte character (found by the `config_parse` fuzz target):
        // targets, spans and fields are Rust identifiers and paths, so only ASCII is accepted.
        if !log_filter.is_ascii() {
            return Err(err(
                &RUST_LOG,
                "not a log filter: only ASCII characters are accepted".to_owned(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| err(&RUST_LOG, format!("not a log filter: {e}")))?;

        let endpoint = v
            .text(&OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            .map(|e| (&OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, e))
            .or_else(|| {
                v.text(&OTEL_EXPORTER_OTLP_ENDPOINT)
                    .map(|e| (&OTEL_EXPORTER_OTLP_ENDPOINT, e))
            });
        let service_name = v
            .text(&OTEL_SERVICE_NAME)
            .unwrap_or("token-service")
            .to_owned();
        if service_name.trim().is_empty() || service_name.chars().any(char::is_control) {
            return Err(err(
                &OTEL_SERVICE_NAME,
                "must be a name without control characters",
            ));
        }
        let sampler = v.choice(&OTEL_TRACES_SAMPLER)?;
        let ratio_text = v.text(&OTEL_TRACES_SAMPLER_ARG).unwrap_or("0.1");
        let ratio: f64 = ratio_text
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                err(
                    &OTEL_TRACES_SAMPLER_ARG,
                    format!("expected a ratio from 0 to 1, got {ratio_text:?}"),
                )
            })?;
        let otlp = match endpoint {
            None => None,
            Some((var, endpoint)) => {
                let endpoint = endpoint.trim();
                let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
                    err(
                        var,
                        format!(
                            "expected an http:// URL of an OTLP/gRPC collector (TLS to the collector is not built in; \
                             run the collector beside the service), got {endpoint:?}"
                        ),
                    )
                })?;
                if rest.is_empty() || endpoint.parse::<http::Uri>().is_err() {
                    return Err(err(var, format!("not a URL: {endpoint:?}")));
                }
                Some(OtlpConfig {
                    endpoint: endpoint.to_owned(),
                    service_name: service_name.clone(),
                    sampler,
                    ratio,
                })
            }
        };

        let mtls = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if let Some(spec) = callers.iter().flatten().find(|s| {
            matches!(
                s.credential,
                Credential::MtlsCertSha256(_) | Credential::MtlsSan(_)
            )
        }) && !mtls
        {
            return Err(err(
                &CALLERS_FILE,
                format!(
                    "caller {:?} authenticates by client certificate, which needs TLS_CLIENT_CA_FILE (and TLS_CERT_FILE, TLS_KEY_FILE)",
                    spec.caller.name
                ),
            ));
        }

        if key_source == KeySource::Managed {
            if key_encryption_key.is_some() && wrapping_key_id.is_some() {
                return Err(err(
                    &KEY_ENCRYPTION_KEY,
                    "set either KEY_ENCRYPTION_KEY or WRAPPING_KMS_KEY_ID to wrap the managed keys, not both",
                ));
            }
            if matches!(store, StoreConfig::Redis(_))
                && key_encryption_key.is_none()
                && wrapping_key_id.is_none()
            {
                return Err(err(
                    &KEY_ENCRYPTION_KEY,
                    format!(
                        "required with REDIS_URL when the fleet manages its signing keys (no SIGNING_KEY_FILE, no KMS_KEY_ID): \
                         set KEY_ENCRYPTION_KEY or WRAPPING_KMS_KEY_ID, the same on every instance, so the keys in the store are wrapped; {}",
                        make_key_hint(32)
                    ),
                ));
            }
            let lead = jwks_max_age.saturating_add(propagation_margin(jwks_max_age));
            if key_rotation_period < lead {
                return Err(err(
                    &KEY_ROTATION_PERIOD,
                    format!(
                        "{key_rotation_period} s is shorter than JWKS_MAX_AGE plus the propagation margin ({lead} s): \
                         a new key could not be published for long enough before it signs"
                    ),
                ));
            }
        }
        Ok(Config {
            grpc_addr: SocketAddr::new(host, port),
            admin_addr: SocketAddr::new(host, admin_port),
            store,
            key_source,
            kms_endpoint: v.text(&KMS_ENDPOINT_URL).map(str::to_owned),
            wrapping_key_id,
            key_encryption_key,
            key_rotation_period,
            jwks_max_age,
            published_key_files,
            signing_alg,
            issuer,
            default_audience,
            access_token_ttl,
            refresh_token_ttl,
            family_lifetime,
            grace_seconds,
            grace_max_uses,
            pepper,
            dpop_max_age,
            dpop_leeway,
            dpop_nonce_required,
            dpop_nonce_key,
            caller_token_digests,
            callers,
            tls,
            log_format,
            log_filter,
            otlp,
            otel_settings: (service_name, sampler, ratio),
            max_concurrent_per_caller: v.number_as(&MAX_CONCURRENT_PER_CALLER)?,
            max_request_bytes: v.number_as(&MAX_REQUEST_BYTES)?,
            shutdown_grace_seconds: v.number(&SHUTDOWN_GRACE_SECONDS)?,
        })
    }

    /// The value in force for each variable of [`VARIABLES`], in its order, as text: what
    /// `token-service config check` prints. Secrets show only whether they are set; the Redis
    /// URL is shown without its password; an unset variable shows its default as the table
    /// does.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        VARIABLES
            .iter()
            .map(|var| {
                let value = self
                    .effective_value(var.name)
                    .unwrap_or_else(|| "(not reported)".to_owned());
                (var.name, value)
            })
            .collect()
    }

    fn effective_value(&self, name: &str) -> Option<String> {
        fn or_unset(value: Option<&str>) -> String {
            value.unwrap_or("-").to_owned()
        }
        fn path(value: Option<&PathBuf>) -> String {
            value.map_or_else(|| "-".to_owned(), |p| p.display().to_string())
        }
        const SECRET_SET: &str = "(set, redacted)";
        let redis = match &self.store {
            StoreConfig::Redis(redis) => Some(redis),
            StoreConfig::Memory => None,
        };
        let tls = self.tls.as_ref();
        let value = match name {
            "HOST" => self.grpc_addr.ip().to_string(),
            "PORT" => self.grpc_addr.port().to_string(),
            "ADMIN_PORT" => self.admin_addr.port().to_string(),
            "REDIS_URL" => redis.map_or_else(|| "-".to_owned(), |r| r.redacted_url()),
            "REDIS_POOL_SIZE" => redis.map_or_else(
                || vars::REDIS_POOL_SIZE.default_text(),
                |r| r.pool_size().to_string(),
            ),
            "REDIS_COMMAND_TIMEOUT_MS" => redis.map_or_else(
                || vars::REDIS_COMMAND_TIMEOUT_MS.default_text(),
                |r| r.command_timeout().as_millis().to_string(),
            ),
            "KMS_KEY_ID" => match &self.key_source {
                KeySource::Kms(id) => id.clone(),
                _ => "-".to_owned(),
            },
            "SIGNING_KEY_FILE" => match &self.key_source {
                KeySource::File(p) => p.display().to_string(),
                _ => "-".to_owned(),
            },
            "KMS_ENDPOINT_URL" => or_unset(self.kms_endpoint.as_deref()),
            "WRAPPING_KMS_KEY_ID" => or_unset(self.wrapping_key_id.as_deref()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" | "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => {
                self.otlp.as_ref().map_or_else(
                    || "-".to_owned(),
                    |o| format!("{} (traces export to)", o.endpoint),
                )
            }
            "OTEL_SERVICE_NAME" => self.otel_settings.0.clone(),
            "OTEL_TRACES_SAMPLER" => self.otel_settings.1.to_owned(),
            "OTEL_TRACES_SAMPLER_ARG" => self.otel_settings.2.to_string(),
            "KEY_ENCRYPTION_KEY" => self.key_encryption_key.as_ref().map_or_else(
                || vars::KEY_ENCRYPTION_KEY.default_text(),
                |_| SECRET_SET.to_owned(),
            ),
            "KEY_ROTATION_PERIOD" => self.key_rotation_period.to_string(),
            "JWKS_MAX_AGE" => self.jwks_max_age.to_string(),
            "PUBLISHED_KEY_FILES" => {
                if self.published_key_files.is_empty() {
                    "-".to_owned()
                } else {
                    self.published_key_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                }
            }
            "SIGNING_ALG" => self.signing_alg.to_string(),
            "ISSUER" => self.issuer.clone(),
            "DEFAULT_AUDIENCE" => {
                if self.default_audience.is_empty() {
                    "-".to_owned()
                } else {
                    self.default_audience.join(",")
                }
            }
            "ACCESS_TOKEN_TTL" => self.access_token_ttl.to_string(),
            "REFRESH_TOKEN_TTL" => self.refresh_token_ttl.to_string(),
            "REFRESH_FAMILY_LIFETIME" => self.family_lifetime.to_string(),
            "REFRESH_GRACE_SECONDS" => self.grace_seconds.to_string(),
            "REFRESH_GRACE_MAX_USES" => self.grace_max_uses.to_string(),
            "REFRESH_TOKEN_PEPPER" => self.pepper.as_ref().map_or_else(
                || vars::REFRESH_TOKEN_PEPPER.default_text(),
                |_| SECRET_SET.to_owned(),
            ),
            "DPOP_MAX_AGE" => self.dpop_max_age.to_string(),
            "DPOP_LEEWAY" => self.dpop_leeway.to_string(),
            "DPOP_NONCE_REQUIRED" => self.dpop_nonce_required.to_string(),
            "DPOP_NONCE_KEY" => self.dpop_nonce_key.as_ref().map_or_else(
                || vars::DPOP_NONCE_KEY.default_text(),
                |_| SECRET_SET.to_owned(),
            ),
            // The digests are not secret, but a count says all an operator needs.
            "CALLER_TOKEN_SHA256" => {
                if self.caller_token_digests.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{} digests in all", self.caller_token_digests.len())
                }
            }
            "CALLER_TOKEN_SHA256_FILE" => "(counted above)".to_owned(),
            // Names only: the credentials stay in the file.
            "CALLERS_FILE" => match &self.callers {
                None => "-".to_owned(),
                Some(specs) => {
                    let names: Vec<&str> = specs.iter().map(|s| s.caller.name.as_str()).collect();
                    format!("{} callers: {}", names.len(), names.join(", "))
                }
            },
            "TLS_CERT_FILE" => path(tls.map(|t| &t.cert_file)),
            "TLS_KEY_FILE" => path(tls.map(|t| &t.key_file)),
            "TLS_CLIENT_CA_FILE" => path(tls.and_then(|t| t.client_ca_file.as_ref())),
            "LOG_FORMAT" => match self.log_format {
                LogFormat::Pretty => "pretty".to_owned(),
                LogFormat::Json => "json".to_owned(),
            },
            "RUST_LOG" => self.log_filter.clone(),
            "MAX_CONCURRENT_PER_CALLER" => self.max_concurrent_per_caller.to_string(),
            "MAX_REQUEST_BYTES" => self.max_request_bytes.to_string(),
            "SHUTDOWN_GRACE_SECONDS" => self.shutdown_grace_seconds.to_string(),
            _ => return None,
        };
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    const PEPPER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_are_the_documented_ones() {
        // The value in force with an empty environment is read back from the parsed `Config`,
        // so a parser that stops taking its default from the table fails here.
        let c = cfg(&[]).unwrap();
        let effective = c.effective();
        assert_eq!(effective.len(), VARIABLES.len());
        for (var, (name, value)) in VARIABLES.iter().zip(&effective) {
            assert_eq!(var.name, *name);
            let expected = match var.name {
                "ISSUER" => var.default_text().replace("<PORT>", "50052"),
                // Unset, the file adds nothing to the (empty) digest list.
                "CALLER_TOKEN_SHA256_FILE" => "(counted above)".to_owned(),
                _ => var.default_text(),
            };
            assert_eq!(
                *value, expected,
                "{name}: the default in force differs from the table"
            );
        }
        assert_eq!(c.grpc_addr.to_string(), "0.0.0.0:50052");
        assert!(matches!(c.store, StoreConfig::Memory));
        assert_eq!(c.key_source, KeySource::Managed);
    }

    #[test]
    fn every_variable_reports_its_effective_value() {
        let kek = "fe".repeat(32);
        let c = cfg(&[
            ("REDIS_URL", "redis://:hunter2@localhost:6379"),
            ("REFRESH_TOKEN_PEPPER", PEPPER),
            ("KEY_ENCRYPTION_KEY", &kek),
        ])
        .unwrap();
        for (name, value) in c.effective() {
            assert_ne!(value, "(not reported)", "{name}");
            assert!(
                !value.contains("hunter2") && !value.contains(PEPPER) && !value.contains(&kek),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn numbers_take_their_range_from_the_table() {
        for var in VARIABLES {
            let Accepts::Number { min, max, .. } = var.accepts else {
                continue;
            };
            // Values that would break another rule are not this test's business.
            let extra: &[(&str, &str)] = match var.name {
                "PORT" => &[("ADMIN_PORT", "1")],
                "ADMIN_PORT" => &[("PORT", "1")],
                "REFRESH_TOKEN_TTL" => &[("REFRESH_FAMILY_LIFETIME", "94608000")],
                "REFRESH_FAMILY_LIFETIME" => &[("REFRESH_TOKEN_TTL", "1")],
                // the shortest period is one lead at the shortest max-age: 1 + (2 × 1 + 1) s
                "KEY_ROTATION_PERIOD" => &[("JWKS_MAX_AGE", "1")],
                _ => &[],
            };
            for ok in [min, max] {
                let value = ok.to_string();
                let mut pairs = vec![(var.name, value.as_str())];
                pairs.extend_from_slice(extra);
                assert!(cfg(&pairs).is_ok(), "{} = {ok}", var.name);
            }
            let mut outside = vec![max + 1];
            if min > 0 {
                outside.push(min - 1);
            }
            for bad in outside {
                let value = bad.to_string();
                let mut pairs = vec![(var.name, value.as_str())];
                pairs.extend_from_slice(extra);
                let e = cfg(&pairs).unwrap_err();
                assert_eq!(e.var, var.name, "{e}");
            }
        }
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("PORT", "http")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("HOST", "localhost")], "HOST"),
            (vec![("REDIS_URL", "memcached://x")], "REDIS_URL"),
            (vec![("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (vec![("ACCESS_TOKEN_TTL", "0")], "ACCESS_TOKEN_TTL"),
            (vec![("REFRESH_TOKEN_TTL", "0")], "REFRESH_TOKEN_TTL"),
            (vec![("REFRESH_TOKEN_TTL", "abc")], "REFRESH_TOKEN_TTL"),
            (vec![("ISSUER", " ")], "ISSUER"),
            (vec![("CALLER_TOKEN_SHA256", "abcd")], "CALLER_TOKEN_SHA256"),
            (vec![("DPOP_NONCE_KEY", "00")], "DPOP_NONCE_KEY"),
            (
                vec![("DPOP_NONCE_REQUIRED", "maybe")],
                "DPOP_NONCE_REQUIRED",
            ),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![("RUST_LOG", "info,[")], "RUST_LOG"),
            (vec![("RUST_LOG", "x[é7:")], "RUST_LOG"),
            (vec![("TLS_CERT_FILE", "/x")], "TLS_KEY_FILE"),
            (vec![("SIGNING_ALG", "HS256")], "SIGNING_ALG"),
            (
                vec![("KMS_KEY_ID", "k"), ("SIGNING_KEY_FILE", "/f")],
                "SIGNING_KEY_FILE",
            ),
            (vec![("PORT", "9090")], "ADMIN_PORT"),
        ] {
            let e = cfg(&pairs).unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
            assert!(e.to_string().starts_with(var));
        }
    }

    #[test]
    fn redis_urls_are_the_stores_own() {
        for url in [
            "redis://localhost:6379",
            "REDIS://localhost:6379",
            "valkey://localhost:6379",
            "rediss://localhost:6380",
            "redis-cluster://localhost:7000",
            "redis-sentinel://localhost:26379?sentinelServiceName=main",
        ] {
            let c = cfg(&[
                ("REDIS_URL", url),
                ("REFRESH_TOKEN_PEPPER", PEPPER),
                ("KEY_ENCRYPTION_KEY", PEPPER),
            ]);
            assert!(c.is_ok(), "{url}: {:?}", c.err());
        }
        let e = cfg(&[
            ("REDIS_URL", "memcached://x"),
            ("REFRESH_TOKEN_PEPPER", PEPPER),
        ])
        .unwrap_err();
        assert!(e.reason.contains("redis-cluster://"), "{e}");
    }

    #[test]
    fn a_bad_caller_digest_says_how_to_make_one() {
        let e = cfg(&[("CALLER_TOKEN_SHA256", "not-a-digest")]).unwrap_err();
        assert_eq!(e.var, "CALLER_TOKEN_SHA256");
        assert!(
            e.reason.contains("openssl rand -hex 32") && e.reason.contains("sha256sum"),
            "{e}"
        );
    }

    #[test]
    fn a_callers_file_is_read_checked_and_reported_by_name() {
        let digest = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        };
        let good = write(
            "good.toml",
            &format!("[[caller]]\nname = \"web\"\ntoken_sha256 = \"{digest}\"\n"),
        );
        let c = cfg(&[("CALLERS_FILE", &good)]).unwrap();
        assert_eq!(c.callers.as_ref().map(Vec::len), Some(1));
        let shown = c.effective();
        let (_, value) = shown.iter().find(|(v, _)| *v == "CALLERS_FILE").unwrap();
        assert_eq!(value, "1 callers: web");
        assert!(shown.iter().all(|(_, v)| !v.contains(digest)));

        let cases = [
            (
                write("bad.toml", "[[caller]]\nname = \"web\"\n"),
                vec![],
                "exactly one of",
            ),
            (
                dir.path()
                    .join("missing.toml")
                    .to_string_lossy()
                    .into_owned(),
                vec![],
                "cannot read",
            ),
            (
                write(
                    "mtls.toml",
                    "[[caller]]\nname = \"svc\"\nmtls_san = \"spiffe://example.org/svc\"\n",
                ),
                vec![],
                "needs TLS_CLIENT_CA_FILE",
            ),
            (
                good.clone(),
                vec![("CALLER_TOKEN_SHA256", digest)],
                "list it in one place",
            ),
        ];
        for (path, extra, want) in cases {
            let mut vars = vec![("CALLERS_FILE", path.as_str())];
            vars.extend(extra);
            let e = cfg(&vars).unwrap_err();
            assert_eq!(e.var, "CALLERS_FILE", "{e}");
            assert!(e.reason.contains(want), "{e}");
            assert!(!e.reason.contains(digest), "credential echoed: {e}");
        }
    }

    #[test]
    fn redis_needs_shared_secrets_and_says_how_to_make_them() {
        let e = cfg(&[("REDIS_URL", "redis://localhost")]).unwrap_err();
        assert_eq!(e.var, "REFRESH_TOKEN_PEPPER");
        assert!(e.reason.contains("openssl rand -hex 32"), "{e}");

        let e = cfg(&[
            ("REDIS_URL", "redis://localhost"),
            ("REFRESH_TOKEN_PEPPER", PEPPER),
            ("DPOP_NONCE_REQUIRED", "true"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "DPOP_NONCE_KEY");
        assert!(e.reason.contains("openssl rand -hex 32"), "{e}");

        // Managed keys on Redis: wrapped under a shared key, named with the alternative.
        let e = cfg(&[
            ("REDIS_URL", "redis://localhost"),
            ("REFRESH_TOKEN_PEPPER", PEPPER),
            ("DPOP_NONCE_REQUIRED", "true"),
            ("DPOP_NONCE_KEY", PEPPER),
        ])
        .unwrap_err();
        assert_eq!(e.var, "KEY_ENCRYPTION_KEY");
        assert!(
            e.reason.contains("WRAPPING_KMS_KEY_ID") && e.reason.contains("openssl rand -hex 32"),
            "{e}"
        );
        for (var, value) in [
            ("KEY_ENCRYPTION_KEY", PEPPER),
            ("WRAPPING_KMS_KEY_ID", "alias/wrapping"),
            ("SIGNING_KEY_FILE", "/etc/token-service/key.pem"),
            ("KMS_KEY_ID", "alias/signing"),
        ] {
            let c = cfg(&[
                ("REDIS_URL", "redis://localhost"),
                ("REFRESH_TOKEN_PEPPER", PEPPER),
                ("DPOP_NONCE_REQUIRED", "true"),
                ("DPOP_NONCE_KEY", PEPPER),
                (var, value),
            ]);
            assert!(c.is_ok(), "{var}: {:?}", c.err());
        }
        let e = cfg(&[("KEY_ENCRYPTION_KEY", PEPPER), ("WRAPPING_KMS_KEY_ID", "k")]).unwrap_err();
        assert_eq!(e.var, "KEY_ENCRYPTION_KEY");
        // The rotation period must leave room for pre-publication.
        let e = cfg(&[("JWKS_MAX_AGE", "300"), ("KEY_ROTATION_PERIOD", "360")]).unwrap_err();
        assert_eq!(e.var, "KEY_ROTATION_PERIOD");
        assert!(e.reason.contains("361"), "{e}");
        assert!(cfg(&[("JWKS_MAX_AGE", "300"), ("KEY_ROTATION_PERIOD", "361")]).is_ok());
        // Without Redis both are random per process.
        assert!(cfg(&[("DPOP_NONCE_REQUIRED", "true")]).is_ok());
    }

    #[test]
    fn a_nonce_key_is_used_whole_or_refused() {
        let longer = "ab".repeat(33);
        let e = cfg(&[("DPOP_NONCE_KEY", &longer)]).unwrap_err();
        assert_eq!(e.var, "DPOP_NONCE_KEY");
        assert!(e.reason.contains("never truncated"), "{e}");
        assert!(cfg(&[("DPOP_NONCE_KEY", &"ab".repeat(32))]).is_ok());
    }

    #[test]
    fn values_longer_than_the_limit_are_refused_by_name() {
        let at_limit = "a".repeat(MAX_VALUE_BYTES);
        assert!(cfg(&[("DEFAULT_AUDIENCE", &at_limit)]).is_ok());
        let over = "a".repeat(MAX_VALUE_BYTES + 1);
        for var in VARIABLES {
            let e = cfg(&[(var.name, &over)]).unwrap_err();
            assert_eq!(e.var, var.name, "{e}");
            assert!(e.to_string().contains("8192"), "{e}");
        }
        let e = cfg(&[("CALLER_TOKEN_SHA256", &over)]).unwrap_err();
        assert!(e.to_string().contains("CALLER_TOKEN_SHA256_FILE"), "{e}");
        // Variables the server does not read may be as long as they like.
        assert!(cfg(&[("PATH", &over)]).is_ok());
    }

    #[test]
    fn hex_keys_take_hex_digits_only() {
        let signed = "+a".repeat(32);
        let e = cfg(&[("DPOP_NONCE_KEY", &signed)]).unwrap_err();
        assert_eq!(e.var, "DPOP_NONCE_KEY");
        let e = cfg(&[("CALLER_TOKEN_SHA256", &"+f".repeat(32))]).unwrap_err();
        assert_eq!(e.var, "CALLER_TOKEN_SHA256");
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let key = "ab".repeat(32);
        let c = cfg(&[
            ("DPOP_NONCE_KEY", &key),
            ("REFRESH_TOKEN_PEPPER", &key),
            ("KEY_ENCRYPTION_KEY", &key),
            ("REDIS_URL", "redis://:hunter2@localhost:6379"),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&key) && !dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn the_env_example_is_current() {
        // `.env.example` at the repository's root is `env_example()` exactly (regenerate it
        // with `token-service config env > .env.example`).
        let file = include_str!("../../../.env.example");
        assert_eq!(
            file,
            env_example(),
            ".env.example differs from the code's table; regenerate it with \
             `cargo run -p token-server -- config env > .env.example`"
        );
        for var in VARIABLES {
            assert!(
                file.contains(&format!("\n#{}=", var.name)),
                "{} is in .env.example",
                var.name
            );
        }
    }

    #[test]
    fn the_readme_carries_the_table() {
        // The README holds the table exactly as `markdown_table` renders it (regenerate it
        // with `token-service config table`): a default, range or description changed here
        // and not there fails this test.
        let readme = include_str!("../../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from the code's; replace it with the output of \
             `cargo run -p token-server -- config table`:\n{table}"
        );
    }
}
