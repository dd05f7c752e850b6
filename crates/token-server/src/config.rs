//! Configuration from the environment, validated as a whole at start-up.
//!
//! Every variable is read here and nowhere else; every error names the variable it is about.
//! [`Config::from_env`] reads the process environment, [`Config::from_vars`] any map (tests).
//! Secrets read here (caller-token digests are not secrets; the nonce key and the pepper are)
//! are zeroized and never printed by `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use zeroize::Zeroizing;

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Where families, revocations and DPoP replay entries live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In this process only (the embedded default; one instance).
    Memory,
    /// Redis, standalone or Cluster, at this URL.
    Redis(String),
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Memory => f.write_str("Memory"),
            // The URL may carry a password.
            StoreConfig::Redis(_) => f.write_str("Redis(..)"),
        }
    }
}

/// Where the signing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A key generated at start-up, lost at exit (development only).
    Ephemeral,
    /// A PKCS#8 PEM or private JWK file.
    File(PathBuf),
    /// An AWS KMS key.
    Kms(String),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// TLS for the gRPC port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle for client certificates: mutual TLS, and a verified client certificate
    /// authenticates the caller.
    pub client_ca_file: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// gRPC listen address (`HOST`, `PORT`).
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address (`HOST`, `ADMIN_PORT`).
    pub admin_addr: SocketAddr,
    /// `REDIS_URL`.
    pub store: StoreConfig,
    /// `REDIS_POOL_SIZE`.
    pub redis_pool_size: usize,
    /// `REDIS_COMMAND_TIMEOUT_MS`: a Redis command slower than this fails (closed).
    pub redis_command_timeout_ms: u64,
    /// `KMS_KEY_ID` / `SIGNING_KEY_FILE`.
    pub key_source: KeySource,
    /// `KMS_ENDPOINT_URL`: a KMS endpoint override (the SDK also reads `AWS_ENDPOINT_URL_KMS`).
    pub kms_endpoint: Option<String>,
    /// `WRAPPING_KMS_KEY_ID`: the KMS key that wraps a `SIGNING_KEY_FILE` blob (default: the
    /// one named in the blob).
    pub wrapping_key_id: Option<String>,
    /// `KEY_ROTATION_PERIOD` seconds: how long a key signs before the next one takes over.
    pub key_rotation_period: u64,
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
    /// `REFRESH_TOKEN_PEPPER` (hex, ≥ 32 bytes); `None`: random per process.
    pub pepper: Option<Zeroizing<Vec<u8>>>,
    /// `DPOP_MAX_AGE` seconds.
    pub dpop_max_age: u64,
    /// `DPOP_LEEWAY` seconds.
    pub dpop_leeway: u64,
    /// `DPOP_NONCE_REQUIRED`.
    pub dpop_nonce_required: bool,
    /// `DPOP_NONCE_KEY` (hex, ≥ 32 bytes); `None`: random per process.
    pub dpop_nonce_key: Option<Zeroizing<Vec<u8>>>,
    /// `CALLER_TOKEN_SHA256` and `CALLER_TOKEN_SHA256_FILE`: SHA-256 digests of accepted caller
    /// tokens. Empty (and no mTLS): a random token is generated and logged once.
    pub caller_token_digests: Vec<[u8; 32]>,
    /// `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`.
    pub tls: Option<TlsConfig>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
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
            .field("callers", &self.caller_token_digests.len())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Every variable the server reads, with its default and meaning (the README table is written
/// from the same facts; `config::tests` checks they agree).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "HOST",
        "0.0.0.0",
        "Bind address of the gRPC and admin ports",
    ),
    ("PORT", "50052", "gRPC port"),
    (
        "ADMIN_PORT",
        "9090",
        "Admin HTTP port: /metrics, /healthz, /readyz, /.well-known/jwks.json",
    ),
    (
        "REDIS_URL",
        "-",
        "Redis URL (`redis://`, `rediss://`, `redis-cluster://`); unset: in-memory store, one instance only",
    ),
    ("REDIS_POOL_SIZE", "4", "Redis connections per instance"),
    (
        "REDIS_COMMAND_TIMEOUT_MS",
        "1000",
        "A Redis command slower than this fails with UNAVAILABLE (nothing is issued)",
    ),
    ("KMS_KEY_ID", "-", "AWS KMS key id or ARN to sign with"),
    (
        "SIGNING_KEY_FILE",
        "-",
        "PKCS#8 PEM or private JWK file to sign with (when `KMS_KEY_ID` is unset); neither: an ephemeral key",
    ),
    (
        "KMS_ENDPOINT_URL",
        "-",
        "KMS endpoint override (private endpoints, emulators); the AWS SDK also reads `AWS_ENDPOINT_URL_KMS`. Region and credentials come from the standard AWS chain",
    ),
    (
        "WRAPPING_KMS_KEY_ID",
        "-",
        "KMS key that unwraps a wrapped `SIGNING_KEY_FILE` (made by `token-service keys wrap`); default: the key named in the blob",
    ),
    (
        "KEY_ROTATION_PERIOD",
        "2592000",
        "Seconds a key signs before the next takes over; keys the server generates rotate by themselves, provided keys are only reported due",
    ),
    (
        "SIGNING_ALG",
        "ES256",
        "Algorithm of a generated key: `ES256` or `EdDSA`",
    ),
    ("ISSUER", "http://localhost:<PORT>", "`iss` of every token"),
    (
        "DEFAULT_AUDIENCE",
        "-",
        "`aud` when a request names none (comma separated)",
    ),
    (
        "ACCESS_TOKEN_TTL",
        "900",
        "Access token lifetime (seconds); also the cap of per-request TTLs",
    ),
    (
        "REFRESH_TOKEN_TTL",
        "604800",
        "Refresh token idle lifetime (seconds), renewed by each rotation",
    ),
    (
        "REFRESH_FAMILY_LIFETIME",
        "2592000",
        "Absolute lifetime of a refresh-token family (seconds); rotation never extends it",
    ),
    (
        "REFRESH_GRACE_SECONDS",
        "0",
        "Window in which a retried refresh gets the same successor (0: off)",
    ),
    (
        "REFRESH_GRACE_MAX_USES",
        "1",
        "Retries allowed within the grace window",
    ),
    (
        "REFRESH_TOKEN_PEPPER",
        "random",
        "Hex key (≥ 32 bytes) of the refresh-token hashes; must be shared by all instances",
    ),
    (
        "DPOP_MAX_AGE",
        "60",
        "Maximum age of a DPoP proof (seconds)",
    ),
    (
        "DPOP_LEEWAY",
        "5",
        "Clock skew tolerated on a proof's `iat` (seconds)",
    ),
    (
        "DPOP_NONCE_REQUIRED",
        "false",
        "Require server nonces in DPoP proofs",
    ),
    (
        "DPOP_NONCE_KEY",
        "random",
        "Hex key (≥ 32 bytes) of DPoP nonces; must be shared by all instances",
    ),
    (
        "CALLER_TOKEN_SHA256",
        "-",
        "Comma-separated hex SHA-256 digests of accepted caller bearer tokens",
    ),
    (
        "CALLER_TOKEN_SHA256_FILE",
        "-",
        "File with one hex digest per line (added to the above)",
    ),
    (
        "TLS_CERT_FILE",
        "-",
        "PEM certificate chain: serve gRPC over TLS",
    ),
    ("TLS_KEY_FILE", "-", "PEM private key for `TLS_CERT_FILE`"),
    (
        "TLS_CLIENT_CA_FILE",
        "-",
        "PEM CA bundle: require client certificates (mutual TLS); a verified certificate authenticates the caller",
    ),
    ("LOG_FORMAT", "pretty", "`pretty` or `json`"),
    (
        "RUST_LOG",
        "info",
        "Log filter (tracing-subscriber `EnvFilter` syntax)",
    ),
    (
        "MAX_CONCURRENT_PER_CALLER",
        "256",
        "In-flight requests allowed per caller",
    ),
    ("MAX_REQUEST_BYTES", "65536", "Largest gRPC request message"),
    (
        "SHUTDOWN_GRACE_SECONDS",
        "20",
        "Time in-flight requests get to finish after SIGTERM",
    ),
];

/// The longest value any variable may have (8 KiB). Every variable holds a short setting, a
/// path, a URL or a short list; a longer value is a mistake (or an attack through the
/// environment) and stops start-up with an error naming the variable.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Refuses a value of a variable of [`VARIABLES`] longer than [`MAX_VALUE_BYTES`]. Variables
/// the server does not read are not looked at.
fn check_sizes(vars: &HashMap<String, String>) -> Result<(), ConfigError> {
    for &(var, _, _) in VARIABLES {
        let len = vars.get(var).map_or(0, String::len);
        if len > MAX_VALUE_BYTES {
            let hint = if var == "CALLER_TOKEN_SHA256" {
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

struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(var, format!("cannot parse {v:?}"))),
        }
    }

    fn seconds(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let v = self.parse(var, default)?;
        if v < min || v > max {
            return Err(err(
                var,
                format!("must be between {min} and {max} seconds, got {v}"),
            ));
        }
        Ok(v)
    }

    fn bool(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(err(var, format!("expected true or false, got {other:?}"))),
        }
    }

    fn hex_key(&self, var: &'static str) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
        let Some(text) = self.get(var) else {
            return Ok(None);
        };
        let bytes =
            Zeroizing::new(hex_decode(text.trim()).ok_or_else(|| err(var, "not hexadecimal"))?);
        if bytes.len() < 32 {
            return Err(err(var, "must be at least 32 bytes (64 hex digits)"));
        }
        Ok(Some(bytes))
    }
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

fn digest(var: &'static str, text: &str) -> Result<[u8; 32], ConfigError> {
    hex_decode(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| err(var, "each entry must be a SHA-256 digest: 64 hex digits"))
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
        check_sizes(vars)?;
        let v = Vars(vars);
        let host: IpAddr = v.parse("HOST", IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = v.parse("PORT", 50052)?;
        let admin_port: u16 = v.parse("ADMIN_PORT", 9090)?;
        if port != 0 && port == admin_port {
            return Err(err("ADMIN_PORT", "must differ from PORT"));
        }

        let store = match v.get("REDIS_URL") {
            None => StoreConfig::Memory,
            Some(url) => {
                let scheme = url.split("://").next().unwrap_or_default();
                if !matches!(
                    scheme,
                    "redis"
                        | "rediss"
                        | "redis-cluster"
                        | "rediss-cluster"
                        | "redis-sentinel"
                        | "rediss-sentinel"
                ) || !url.contains("://")
                {
                    return Err(err(
                        "REDIS_URL",
                        "unknown scheme: use redis://, rediss://, redis-cluster:// or redis-sentinel://",
                    ));
                }
                StoreConfig::Redis(url.to_owned())
            }
        };

        let redis_pool_size: usize = v.parse("REDIS_POOL_SIZE", 4)?;
        if !(1..=64).contains(&redis_pool_size) {
            return Err(err("REDIS_POOL_SIZE", "must be between 1 and 64"));
        }
        let redis_command_timeout_ms: u64 = v.parse("REDIS_COMMAND_TIMEOUT_MS", 1000)?;
        if !(10..=60_000).contains(&redis_command_timeout_ms) {
            return Err(err(
                "REDIS_COMMAND_TIMEOUT_MS",
                "must be between 10 and 60000",
            ));
        }
        let key_source = match (v.get("KMS_KEY_ID"), v.get("SIGNING_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "SIGNING_KEY_FILE",
                    "set either KMS_KEY_ID or SIGNING_KEY_FILE, not both",
                ));
            }
            (Some(id), None) => KeySource::Kms(id.to_owned()),
            (None, Some(path)) => KeySource::File(PathBuf::from(path)),
            (None, None) => KeySource::Ephemeral,
        };
        let key_rotation_period =
            v.seconds("KEY_ROTATION_PERIOD", 30 * 86_400, 3_600, 3 * 365 * 86_400)?;
        let signing_alg = match v.get("SIGNING_ALG").unwrap_or("ES256") {
            "ES256" => token_jwt::Algorithm::ES256,
            "EdDSA" => token_jwt::Algorithm::EdDSA,
            other => {
                return Err(err(
                    "SIGNING_ALG",
                    format!("expected ES256 or EdDSA, got {other:?}"),
                ));
            }
        };

        let issuer = v
            .get("ISSUER")
            .map_or_else(|| format!("http://localhost:{port}"), str::to_owned);
        if issuer.trim().is_empty() || issuer.chars().any(char::is_control) {
            return Err(err(
                "ISSUER",
                "must be a non-empty string without control characters",
            ));
        }
        let default_audience = v
            .get("DEFAULT_AUDIENCE")
            .map(|a| {
                a.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();

        const DAY: u64 = 86_400;
        let access_token_ttl = v.seconds("ACCESS_TOKEN_TTL", 900, 1, DAY)?;
        let refresh_token_ttl = v.seconds("REFRESH_TOKEN_TTL", 604_800, 1, 365 * DAY)?;
        let family_lifetime = v.seconds("REFRESH_FAMILY_LIFETIME", 30 * DAY, 1, 3 * 365 * DAY)?;
        if family_lifetime < refresh_token_ttl {
            return Err(err(
                "REFRESH_FAMILY_LIFETIME",
                "must be at least REFRESH_TOKEN_TTL",
            ));
        }
        let grace_seconds = v.seconds("REFRESH_GRACE_SECONDS", 0, 0, 300)?;
        let grace_max_uses: u32 = v.parse("REFRESH_GRACE_MAX_USES", 1)?;
        if grace_max_uses == 0 || grace_max_uses > 10 {
            return Err(err("REFRESH_GRACE_MAX_USES", "must be between 1 and 10"));
        }

        let dpop_max_age = v.seconds("DPOP_MAX_AGE", 60, 1, 3600)?;
        let dpop_leeway = v.seconds("DPOP_LEEWAY", 5, 0, 300)?;

        let mut caller_token_digests = Vec::new();
        if let Some(list) = v.get("CALLER_TOKEN_SHA256") {
            for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
                caller_token_digests.push(digest("CALLER_TOKEN_SHA256", entry)?);
            }
        }
        if let Some(path) = v.get("CALLER_TOKEN_SHA256_FILE") {
            let text = std::fs::read_to_string(path).map_err(|e| {
                err(
                    "CALLER_TOKEN_SHA256_FILE",
                    format!("cannot read {path}: {e}"),
                )
            })?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                caller_token_digests.push(digest("CALLER_TOKEN_SHA256_FILE", line)?);
            }
        }

        let tls = match (v.get("TLS_CERT_FILE"), v.get("TLS_KEY_FILE")) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert_file: cert.into(),
                key_file: key.into(),
                client_ca_file: v.get("TLS_CLIENT_CA_FILE").map(PathBuf::from),
            }),
            (None, None) => {
                if v.get("TLS_CLIENT_CA_FILE").is_some() {
                    return Err(err(
                        "TLS_CLIENT_CA_FILE",
                        "needs TLS_CERT_FILE and TLS_KEY_FILE",
                    ));
                }
                None
            }
            (Some(_), None) => return Err(err("TLS_KEY_FILE", "required with TLS_CERT_FILE")),
            (None, Some(_)) => return Err(err("TLS_CERT_FILE", "required with TLS_KEY_FILE")),
        };

        let log_format = match v.get("LOG_FORMAT").unwrap_or("pretty") {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("expected pretty or json, got {other:?}"),
                ));
            }
        };
        let max_concurrent_per_caller: usize = v.parse("MAX_CONCURRENT_PER_CALLER", 256)?;
        if max_concurrent_per_caller == 0 {
            return Err(err("MAX_CONCURRENT_PER_CALLER", "must be at least 1"));
        }
        let max_request_bytes: usize = v.parse("MAX_REQUEST_BYTES", 65_536)?;
        if !(1024..=4 * 1024 * 1024).contains(&max_request_bytes) {
            return Err(err("MAX_REQUEST_BYTES", "must be between 1024 and 4194304"));
        }

        Ok(Config {
            grpc_addr: SocketAddr::new(host, port),
            admin_addr: SocketAddr::new(host, admin_port),
            store,
            redis_pool_size,
            redis_command_timeout_ms,
            key_source,
            kms_endpoint: v.get("KMS_ENDPOINT_URL").map(str::to_owned),
            wrapping_key_id: v.get("WRAPPING_KMS_KEY_ID").map(str::to_owned),
            key_rotation_period,
            signing_alg,
            issuer,
            default_audience,
            access_token_ttl,
            refresh_token_ttl,
            family_lifetime,
            grace_seconds,
            grace_max_uses,
            pepper: v.hex_key("REFRESH_TOKEN_PEPPER")?,
            dpop_max_age,
            dpop_leeway,
            dpop_nonce_required: v.bool("DPOP_NONCE_REQUIRED")?,
            dpop_nonce_key: v.hex_key("DPOP_NONCE_KEY")?,
            caller_token_digests,
            tls,
            log_format,
            max_concurrent_per_caller,
            max_request_bytes,
            shutdown_grace_seconds: v.seconds("SHUTDOWN_GRACE_SECONDS", 20, 0, 600)?,
        })
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

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.grpc_addr.to_string(), "0.0.0.0:50052");
        assert_eq!(c.admin_addr.port(), 9090);
        assert_eq!(c.store, StoreConfig::Memory);
        assert_eq!(c.key_source, KeySource::Ephemeral);
        assert_eq!(c.access_token_ttl, 900);
        assert_eq!(c.refresh_token_ttl, 604_800);
        assert_eq!(c.issuer, "http://localhost:50052");
        for (var, default, _) in VARIABLES {
            let _ = (var, default);
        }
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("PORT", "http")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
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
    fn values_longer_than_the_limit_are_refused_by_name() {
        let at_limit = "a".repeat(MAX_VALUE_BYTES);
        assert!(cfg(&[("DEFAULT_AUDIENCE", &at_limit)]).is_ok());
        let over = "a".repeat(MAX_VALUE_BYTES + 1);
        for (var, _, _) in VARIABLES {
            let e = cfg(&[(var, &over)]).unwrap_err();
            assert_eq!(e.var, *var, "{e}");
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
            ("REDIS_URL", "redis://:hunter2@localhost:6379"),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&key) && !dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn readme_documents_every_variable() {
        let readme = include_str!("../../../README.md");
        for (var, default, _) in VARIABLES {
            let row = format!("| `{var}` |");
            assert!(readme.contains(&row), "README lacks a row for {var}");
            assert!(
                readme
                    .lines()
                    .any(|l| l.starts_with(&row) && l.contains(&format!("`{default}`"))),
                "README row for {var} does not show the default `{default}`"
            );
        }
    }
}
