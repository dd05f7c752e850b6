//! Logging and tracing setup: tracing with pretty or JSON output, filtered by `RUST_LOG`, and,
//! when `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set, the service's spans exported over
//! OTLP/gRPC (all read and checked by [`crate::config`]).
//!
//! With export on, the `request` span of each call joins the caller's trace (W3C `traceparent`
//! and `tracestate` from the gRPC metadata, [`crate::auth`]); the handler span, one span per
//! store round trip (token-store-redis) and one per KMS call (token-kms) are its children.
//! Only this project's spans are exported (never tonic's, h2's or the AWS SDK's: an export must
//! not produce spans of its own). With export off, nothing of OpenTelemetry is installed and
//! the store and KMS spans, at DEBUG, are disabled at their call sites.
//!
//! Nothing logs or records tokens, proofs or keys: handlers log outcomes, ids they minted
//! (family ids, `jti`s) and caller names, never request bodies; span fields follow the same rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, OtlpConfig};

/// Set once the OpenTelemetry layer is installed: the auth layer reads `traceparent` only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (one relaxed load per request when export is off).
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The span pipeline, to flush and stop at exit.
#[derive(Debug)]
#[must_use = "call `shutdown` before exit, or the last batch of spans is lost"]
pub struct Tracing(SdkTracerProvider);

impl Tracing {
    /// Exports what is buffered and stops the exporter (at most 5 s). The SDK's shutdown blocks
    /// while its batch thread exports through tonic on the runtime, so it runs on a blocking
    /// thread, never on a runtime worker.
    pub async fn shutdown(self) {
        let provider = self.0;
        let _ = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
    }
}

/// Installs the global subscriber with `filter` (an `EnvFilter` directive; `info` when it does
/// not parse), once; later calls do nothing. With `otlp`, spans are exported too; this must then
/// run inside the tokio runtime (the exporter's channel runs there).
///
/// # Errors
/// When the OTLP exporter refuses its configuration.
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp: Option<&OtlpConfig>,
) -> Result<Option<Tracing>, opentelemetry_otlp::ExporterBuildError> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(otlp) = otlp else {
        // Export off: the plain subscriber, no per-span or per-request cost added.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(true);
        let _ = match format {
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
            LogFormat::Pretty => builder.try_init(),
        };
        return Ok(None);
    };
    let provider = tracer_provider(otlp)?;
    // RUST_LOG filters the log lines only (a per-layer filter): RUST_LOG=warn still exports
    // the request spans.
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_filter(filter)
            .boxed(),
    };
    let otel: Box<dyn Layer<Registry> + Send + Sync> = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("token-service"))
        // Nothing reads `opentelemetry::Context::current()`: no attach/detach per poll.
        .with_context_activation(false)
        .with_threads(false)
        .with_filter(exported_spans())
        .boxed();
    if tracing_subscriber::registry()
        .with(vec![fmt, otel])
        .try_init()
        .is_err()
    {
        // A subscriber was installed before (several servers in one test process).
        return Ok(None);
    }
    EXPORTING.store(true, Ordering::Relaxed);
    tracing::info!(
        endpoint = %otlp.endpoint,
        service = %otlp.service_name,
        sampler = otlp.sampler,
        ratio = otlp.ratio,
        "exporting traces over OTLP/gRPC"
    );
    Ok(Some(Tracing(provider)))
}

/// As [`init`] without export, for a subcommand whose standard output is its result (`keys
/// list`, `keys public`, `keys wrap`): log lines go to standard error.
pub fn init_for_command(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr)
        .try_init();
}

/// This project's spans, DEBUG and up (the store and KMS spans are DEBUG).
fn exported_spans() -> Targets {
    Targets::new()
        .with_target("token_server", Level::DEBUG)
        .with_target("token_refresh", Level::DEBUG)
        .with_target("token_store_redis", Level::DEBUG)
        .with_target("token_kms", Level::DEBUG)
}

/// The sampler named by `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`.
fn sampler(otlp: &OtlpConfig) -> Sampler {
    let ratio = Sampler::TraceIdRatioBased(otlp.ratio);
    match otlp.sampler {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => ratio,
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        _ => Sampler::ParentBased(Box::new(ratio)),
    }
}

/// The OTLP/gRPC exporter to the configured endpoint (timeout, headers and compression from
/// the standard `OTEL_EXPORTER_OTLP_*` variables, which the exporter reads), a batch processor
/// (`OTEL_BSP_*`), the configured sampler and `service.name`.
fn tracer_provider(
    otlp: &OtlpConfig,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.clone())
        .build()?;
    let resource = Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(otlp))
        .with_resource(resource)
        .build())
}
