//! Metric names, in one place, and the Prometheus recorder.
//!
//! Labels carry only bounded, non-secret values (RPC names, status codes, outcomes, reasons,
//! algorithms, configured caller names), never a token, key, credential, subject or client
//! id.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A metric handle with constant labels, registered on first use and kept for the process.
///
/// `metrics::counter!(name, "label" => value)` builds its key (a vector of labels) and looks
/// it up in the recorder's registry on every call: on a request path, an allocation and a hash
/// per metric. The success paths of the RPCs record through handles kept here instead. Only
/// literal label values are accepted, so a handle can never stand for another label set.
/// Handles stay valid for the process: the recorder never expires a series (no idle timeout
/// is configured in [`install_recorder`]).
macro_rules! cached {
    (counter!($name:expr $(, $k:literal => $v:literal)* $(,)?)) => {{
        static HANDLE: ::std::sync::OnceLock<::metrics::Counter> = ::std::sync::OnceLock::new();
        HANDLE.get_or_init(|| ::metrics::counter!($name $(, $k => $v)*))
    }};
    (histogram!($name:expr $(, $k:literal => $v:literal)* $(,)?)) => {{
        static HANDLE: ::std::sync::OnceLock<::metrics::Histogram> = ::std::sync::OnceLock::new();
        HANDLE.get_or_init(|| ::metrics::histogram!($name $(, $k => $v)*))
    }};
}
pub(crate) use cached;

/// Handles of one metric by a label drawn from a small closed set (gRPC codes, algorithms),
/// each registered the first time its label is used (series never used are not exported).
#[derive(Debug)]
pub(crate) struct ByLabel<T, const N: usize>([OnceLock<T>; N]);

impl<T, const N: usize> ByLabel<T, N> {
    /// None registered yet.
    pub(crate) const fn new() -> Self {
        ByLabel([const { OnceLock::new() }; N])
    }

    /// The handle at `index` (the label's position in its set), registered by `register` on
    /// first use; `None` past the set (the caller records through the registry then).
    pub(crate) fn get(&self, index: usize, register: impl FnOnce() -> T) -> Option<&T> {
        self.0.get(index).map(|slot| slot.get_or_init(register))
    }

    /// Applies `record` to the handle at `index`; past the set, to one `register` makes for
    /// this call (through the registry, as without this type).
    pub(crate) fn record(&self, index: usize, register: impl Fn() -> T, record: impl FnOnce(&T)) {
        match self.get(index, &register) {
            Some(handle) => record(handle),
            None => record(&register()),
        }
    }
}

/// Tokens issued, by `type` (`access`, `refresh`) and `alg` / `binding`.
pub const TOKENS_ISSUED: &str = "token_service_tokens_issued_total";
/// Refresh rotations by `outcome` (`rotated`, `grace`, `reuse`, `revoked`, `expired`,
/// `dpop_mismatch`, `client_mismatch`, `forged`, `unknown`, `malformed`, `narrowing_exceeded`,
/// `invalid`, `error`): the reason a refused refresh does not tell on the wire.
pub const ROTATIONS: &str = "token_service_rotations_total";
/// Families revoked, by `reason`.
pub const FAMILIES_REVOKED: &str = "token_service_families_revoked_total";
/// DPoP validations by `outcome` and failure `reason`.
pub const DPOP_VALIDATIONS: &str = "token_service_dpop_validations_total";
/// Offset of a DPoP proof's `iat` from the server clock, in seconds.
pub const DPOP_IAT_OFFSET: &str = "token_service_dpop_iat_offset_seconds";
/// Signer latency, by `alg`.
pub const SIGN_SECONDS: &str = "token_service_sign_seconds";
/// Signer errors.
pub const SIGN_ERRORS: &str = "token_service_sign_errors_total";
/// Store operation latency, by `op`.
pub const STORE_SECONDS: &str = "token_service_store_seconds";
/// Store errors, by `op`.
pub const STORE_ERRORS: &str = "token_service_store_errors_total";
/// Request latency, by `rpc` and gRPC `code`.
pub const REQUEST_SECONDS: &str = "token_service_request_seconds";
/// Requests refused before reaching a handler, by `reason`.
pub const CALLER_REJECTED: &str = "token_service_caller_rejected_total";
/// Open `WatchRevocations` streams.
pub const REVOCATION_WATCHERS: &str = "token_service_revocation_watchers";
/// Revocation events sent on `WatchRevocations` streams (after their initial list).
pub const REVOCATIONS_STREAMED: &str = "token_service_revocations_streamed_total";
/// Requests refused for a missing right, by `caller` (a configured name: bounded) and `right`
/// (`rpcs`, `client_ids`, `audiences`, `revoke_by_subject`, `revoke_by_family`).
pub const CALLER_DENIED: &str = "token_service_caller_denied_total";
/// Managed keys: 1 for the state each key is in here, 0 for the states it has left, by `kid`
/// and `state` (`pending`, `active`, `retiring`, `expired`, `retired`).
pub const KEY_STATE: &str = "token_service_signing_key_state";
/// Managed keys: seconds since each key was created, by `kid` and `state`.
pub const KEY_AGE: &str = "token_service_signing_key_age_seconds";
/// Managed keys: seconds until the next key is due to be created (negative: overdue, e.g. the
/// store was unreachable).
pub const KEY_ROTATION_DUE: &str = "token_service_key_rotation_due_seconds";
/// Key state changes seen by this instance, by `to` (a managed state, or `ring`/`pending` for
/// provided keys and KMS aliases).
pub const KEY_TRANSITIONS: &str = "token_service_key_transitions_total";
/// Keys this instance created (it won the claim of the next generation).
pub const KEYS_CREATED: &str = "token_service_keys_created_total";
/// Stored keys this instance refuses (malformed, tampered, wrapped under another key).
pub const KEYS_REFUSED: &str = "token_service_keys_refused";
/// Keys in the JWK Set this instance serves.
pub const JWKS_KEYS: &str = "token_service_jwks_keys";
/// When this instance last re-rendered its JWK Set (Unix seconds): with managed keys it changes
/// at least once per `KEY_ROTATION_PERIOD`.
pub const JWKS_CHANGED: &str = "token_service_jwks_last_change_timestamp_seconds";
/// Failed reads of the managed keys or of a KMS alias (the current key keeps signing).
pub const KEY_SYNC_ERRORS: &str = "token_service_key_sync_errors_total";

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A previous installation panicked while holding the recorder's lock.
    #[error("the recorder's lock is poisoned")]
    Poisoned,
    /// The exporter refused its settings or could not install itself.
    #[error(transparent)]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    /// The thread that drains histogram samples could not start.
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(#[source] std::io::Error),
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse it).
///
/// # Errors
/// When the recorder cannot be built.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    // A mutex, not a `OnceLock` checked then set: two servers starting at once in one process
    // would both try to install, and the second install fails.
    static HANDLE: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut slot = HANDLE.lock().map_err(|_| MetricsError::Poisoned)?;
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let buckets = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(DPOP_IAT_OFFSET.into()),
                &[
                    -60.0, -30.0, -10.0, -5.0, -1.0, 0.0, 1.0, 5.0, 10.0, 30.0, 60.0,
                ],
            )
        })?
        .install_recorder()?;
    // Histogram samples wait in the recorder until the next scrape drains them. Without a
    // scraper they would accumulate forever (measured by the soak: +130 KiB/s at 3,000
    // requests/s), so a background thread drains them on a schedule, once per process.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(MetricsError::Upkeep)?;
    *slot = Some(handle.clone());
    Ok(handle)
}

#[cfg(test)]
mod by_label_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::ByLabel;

    #[test]
    fn each_label_registers_once_and_past_the_set_is_none() {
        let registered = &AtomicUsize::new(0);
        let handles: ByLabel<usize, 3> = ByLabel::new();
        let register = |i: usize| {
            move || {
                registered.fetch_add(1, Ordering::SeqCst);
                i * 10
            }
        };
        assert_eq!(handles.get(1, register(1)), Some(&10));
        assert_eq!(
            handles.get(1, register(99)),
            Some(&10),
            "kept, not registered again"
        );
        assert_eq!(handles.get(2, register(2)), Some(&20));
        assert_eq!(registered.load(Ordering::SeqCst), 2);
        assert_eq!(handles.get(3, register(3)), None);
        assert_eq!(registered.load(Ordering::SeqCst), 2);
    }
}
