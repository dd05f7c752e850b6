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
//! Head sampling: the sampler decides once per request, when the `request` span is created
//! (`head_sample`). The OpenTelemetry layer's filter (`ExportFilter`) then hides every span
//! and event under an unsampled request from that layer, and `Unlogged` disables those the
//! log lines cannot want either: the store and KMS spans of an unsampled request (DEBUG, at the
//! default `RUST_LOG`) are never created, rather than built and dropped by the sampler at their
//! end. The `request` span itself stays (the log lines use it), as do the handlers' (INFO).
//!
//! Nothing logs or records tokens, proofs or keys: handlers log outcomes, ids they minted
//! (family ids, `jti`s) and caller names, never request bodies; span fields follow the same rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{self, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, OtlpConfig};

/// Set once the OpenTelemetry layer is installed: the auth layer reads `traceparent` and takes
/// the sampling decision ([`head_sample`]) only then.
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
    // The most verbose level any log line can have (for [`Unlogged`]).
    let logged = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
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
    if tracing_subscriber::registry()
        .with(exporting_layers(fmt, logged, &provider))
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

/// The layers with export on: `logs` (the log lines, filtered per layer; `logged` the most
/// verbose level they can have), the OpenTelemetry layer over `provider`'s tracer behind
/// [`ExportFilter`], and [`Unlogged`].
fn exporting_layers(
    logs: Box<dyn Layer<Registry> + Send + Sync>,
    logged: LevelFilter,
    provider: &SdkTracerProvider,
) -> Vec<Box<dyn Layer<Registry> + Send + Sync>> {
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("token-service"))
        // Nothing reads `opentelemetry::Context::current()`: no attach/detach per poll.
        .with_context_activation(false)
        .with_threads(false)
        // No busy/idle clock reads at every poll of an instrumented future, and no source
        // location attributes per span: per-request costs that an operator rarely reads.
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_filter(ExportFilter(exported_spans()));
    vec![
        logs,
        otel.boxed(),
        Unlogged(logged).with_filter(Consulted).boxed(),
    ]
}

/// This project's spans, DEBUG and up (the store and KMS spans are DEBUG).
fn exported_spans() -> Targets {
    Targets::new()
        .with_target("token_server", Level::DEBUG)
        .with_target("token_refresh", Level::DEBUG)
        .with_target("token_store_redis", Level::DEBUG)
        .with_target("token_kms", Level::DEBUG)
}

/// A `request` span's sampling decision, in its extensions (set by [`head_sample`]).
#[derive(Debug, Clone, Copy)]
struct HeadSampled(bool);

/// Joins `span` (a request's root span, just created) to the caller's trace when `parent` is
/// the caller's context, and takes the request's sampling decision, once, for [`ExportFilter`].
///
/// The decision is the SDK's own: the span's OpenTelemetry span is started here rather than at
/// its close (`OpenTelemetrySpanExt::context`), which runs the configured sampler exactly as it
/// would have run at the close: on the caller's context (`parentbased_*`: its sampled flag
/// decides) and on the trace id (the caller's, or for a root span the one the SDK's id
/// generator draws just before sampling, which `traceidratio` compares against the ratio). So
/// the head decision and the export always agree, and no second implementation of the samplers
/// exists to drift from the SDK's. It costs nothing extra: the span is started once either way
/// (tracing-opentelemetry starts it at the latest when it closes), and an unsampled span is a
/// non-recording one, to which the request's later fields and events are no-ops. The start time
/// is the span's creation (the builder's), not this call.
pub(crate) fn head_sample(span: &tracing::Span, parent: Option<opentelemetry::Context>) {
    if let Some(parent) = parent {
        // Before the span starts: an OpenTelemetry span's parent is fixed when it starts. An
        // error says the layer is absent or the span disabled: not the caller's fault.
        let _ = span.set_parent(parent);
    }
    let sampled = span.context().span().span_context().is_sampled();
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            span.extensions_mut().insert(HeadSampled(sampled));
        }
    });
}

/// The OpenTelemetry layer's filter: this project's spans and events ([`exported_spans`]),
/// except those under a request that [`head_sample`] did not sample.
///
/// The nearest span (the current one, or its parent, and so on) that this layer sees and that
/// carries a [`HeadSampled`] decides: the spans of an unsampled request are invisible to this
/// layer, so the lookup from any depth below the request (a store span under a handler span,
/// itself created for the log lines only) finds the `request` span. Spans outside any request
/// (start-up, background work) carry no decision and are left to the SDK's sampler. Every span
/// in this project's crates is contextual (a child of the current span), which this relies on:
/// a span with an explicit parent is judged by the current span.
#[derive(Debug)]
struct ExportFilter(Targets);

/// Whether the current span belongs to a request that [`head_sample`] did not sample: the
/// nearest span in `cx`'s scope that carries a decision. Under a per-layer filter, `cx` is
/// filtered by it: `lookup_current` and `scope` skip the spans that layer does not see.
fn in_unsampled_request<S>(cx: &layer::Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(current) = cx.lookup_current() else {
        return false;
    };
    current
        .scope()
        .find_map(|span| span.extensions().get::<HeadSampled>().copied())
        .is_some_and(|HeadSampled(sampled)| !sampled)
}

impl<S> layer::Filter<S> for ExportFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &layer::Context<'_, S>) -> bool {
        self.0.would_enable(meta.target(), meta.level()) && !in_unsampled_request(cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // `sometimes`, not `always`: whether a span is exported depends on its request.
        if self.0.would_enable(meta.target(), meta.level()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        layer::Filter::<S>::max_level_hint(&self.0)
    }
}

/// Disables, for every layer, the spans and events under an unsampled request that are more
/// verbose than any log line can be (the store and KMS spans, at DEBUG, at the default
/// `RUST_LOG`): so they are never created, rather than created in the registry and seen by no
/// layer (tracing-subscriber 0.3's registry still creates a span that every per-layer filter
/// disables at the call, so [`ExportFilter`] alone does not prevent that).
///
/// A layer whose `enabled` is global (returning `false` disables for all layers), but behind a
/// per-layer filter, [`Consulted`], so that the layers stay all filtered: a plain layer among
/// them would turn every callsite the per-layer filters refuse (h2's or tonic's DEBUG and
/// TRACE) from `never` into `sometimes`, asked at each call. It only needs asking where
/// [`ExportFilter`] already made the callsite `sometimes`.
#[derive(Debug)]
struct Unlogged(LevelFilter);

impl<S> Layer<S> for Unlogged
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: layer::Context<'_, S>) -> bool {
        LevelFilter::from_level(*meta.level()) <= self.0 || !in_unsampled_request(&cx)
    }
}

/// [`Unlogged`]'s per-layer filter: adds no interest in any callsite (`never`, which leaves the
/// other filters' interests as they are) and no level (`OFF`), and lets [`Unlogged`] be asked
/// whenever a call is (`Filtered` asks its layer's `enabled` when its filter enables).
#[derive(Debug)]
struct Consulted;

impl<S> layer::Filter<S> for Consulted {
    fn enabled(&self, _: &Metadata<'_>, _: &layer::Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::never()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample as _, SpanData, SpanExporter};

    use super::*;

    /// An exporter that keeps what it is given.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Log lines, kept.
    #[derive(Debug, Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What [`with_export`] saw.
    struct Seen<T> {
        out: T,
        spans: Vec<SpanData>,
        logs: String,
    }

    fn sampler_named(name: &'static str, ratio: f64) -> Sampler {
        sampler(&OtlpConfig {
            endpoint: String::new(),
            service_name: String::new(),
            sampler: name,
            ratio,
        })
    }

    /// Runs `f` under the subscriber [`init`] installs with export on, the log lines at
    /// `logged` (`INFO` by default) and spans sampled by `sampler`.
    fn with_export<T>(sampler: Sampler, logged: LevelFilter, f: impl FnOnce() -> T) -> Seen<T> {
        let (kept, lines) = (Kept::default(), Lines::default());
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .with_sampler(sampler)
            .build();
        let writer = lines.clone();
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(logged)
            .boxed();
        let layers = exporting_layers(logs, logged, &provider);
        let out = tracing::subscriber::with_default(tracing_subscriber::registry().with(layers), f);
        let spans = std::mem::take(&mut *kept.0.lock().unwrap());
        let logs = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        Seen { out, spans, logs }
    }

    /// A request as the server runs it: the `request` span and [`head_sample`] (as in
    /// [`crate::auth`]), a handler span (INFO: logs use it) with an event, and under it a store
    /// span (DEBUG) with a span and an event of its own. Returns the request's trace id and
    /// whether the store span was created at all.
    fn request(parent: Option<opentelemetry::Context>) -> (TraceId, bool) {
        let request = tracing::info_span!("request", otel.kind = "server");
        head_sample(&request, parent);
        let trace_id = request.context().span().span_context().trace_id();
        let created = request.in_scope(|| {
            tracing::info_span!("handler").in_scope(|| {
                tracing::info!("an outcome");
                let store = tracing::debug_span!("store", otel.kind = "client");
                let nested = store.in_scope(|| {
                    tracing::debug!("a detail");
                    !tracing::debug_span!("nested").is_disabled()
                });
                assert_eq!(nested, !store.is_disabled());
                !store.is_disabled()
            })
        });
        (trace_id, created)
    }

    /// A caller's `traceparent`, as [`crate::auth`] extracts it.
    fn caller(trace_id: TraceId, sampled: bool) -> opentelemetry::Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            SpanId::from(7),
            flags,
            true,
            TraceState::default(),
        ))
    }

    fn in_trace(spans: &[SpanData], trace_id: TraceId) -> Vec<&SpanData> {
        spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect()
    }

    #[test]
    fn parent_based_follows_the_callers_sampled_flag() {
        let (sampled, unsampled) = (TraceId::from(0xa), TraceId::from(0xb));
        // Ratio 0 for roots: only the caller's flag can sample these.
        let sampler = sampler_named("parentbased_traceidratio", 0.0);
        let seen = with_export(sampler, LevelFilter::INFO, || {
            (
                request(Some(caller(sampled, true))),
                request(Some(caller(unsampled, false))),
            )
        });
        assert_eq!(seen.out, ((sampled, true), (unsampled, false)));
        let spans = &seen.spans;
        assert!(in_trace(spans, unsampled).is_empty(), "{spans:?}");

        let tree = in_trace(spans, sampled);
        let named = |name: &str| {
            *tree
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no {name} span: {tree:?}"))
        };
        let (request, handler) = (named("request"), named("handler"));
        let (store, nested) = (named("store"), named("nested"));
        assert_eq!(tree.len(), 4, "{tree:?}");
        assert_eq!(request.parent_span_id, SpanId::from(7));
        assert_eq!(request.span_kind, SpanKind::Server);
        assert_eq!(handler.parent_span_id, request.span_context.span_id());
        assert_eq!(store.parent_span_id, handler.span_context.span_id());
        assert_eq!(nested.parent_span_id, store.span_context.span_id());
        assert_eq!(handler.events.len(), 1, "{handler:?}");
        assert_eq!(store.events.len(), 1, "{store:?}");

        // The log lines are the same for both: the unsampled request's spans still frame them.
        let outcomes: Vec<&str> = seen
            .logs
            .lines()
            .filter(|l| l.contains("an outcome"))
            .collect();
        assert_eq!(outcomes.len(), 2, "{}", seen.logs);
        assert!(
            outcomes
                .iter()
                .all(|l| l.contains("request{") && l.contains("handler"))
        );
        assert!(!seen.logs.contains("a detail"), "{}", seen.logs);
    }

    #[test]
    fn logs_at_debug_keep_the_store_spans_but_export_none_of_an_unsampled_request() {
        let unsampled = TraceId::from(0xf);
        let seen = with_export(
            sampler_named("parentbased_traceidratio", 1.0),
            LevelFilter::DEBUG,
            || request(Some(caller(unsampled, false))),
        );
        assert_eq!(seen.out, (unsampled, true));
        assert!(seen.spans.is_empty(), "{:?}", seen.spans);
        assert!(seen.logs.contains("a detail"), "{}", seen.logs);
    }

    #[test]
    fn ratio_zero_creates_and_exports_nothing() {
        let seen = with_export(
            sampler_named("traceidratio", 0.0),
            LevelFilter::INFO,
            || {
                [
                    request(None),
                    request(Some(caller(TraceId::from(0xc), true))),
                ]
            },
        );
        assert!(
            seen.out.iter().all(|(_, created)| !created),
            "{:?}",
            seen.out
        );
        assert!(seen.spans.is_empty(), "{:?}", seen.spans);
    }

    #[test]
    fn always_on_and_always_off_are_as_named() {
        let unsampled = Some(caller(TraceId::from(0xd), false));
        let seen = with_export(sampler_named("always_on", 0.0), LevelFilter::INFO, || {
            request(unsampled)
        });
        assert!(seen.out.1 && seen.spans.len() == 4, "{:?}", seen.spans);
        let sampled = Some(caller(TraceId::from(0xe), true));
        let seen = with_export(sampler_named("always_off", 1.0), LevelFilter::INFO, || {
            request(sampled)
        });
        assert!(!seen.out.1 && seen.spans.is_empty(), "{:?}", seen.spans);
    }

    #[test]
    fn a_root_request_is_sampled_by_its_trace_id_as_the_sdk_does() {
        let sampler = sampler_named("parentbased_traceidratio", 0.5);
        let seen = with_export(sampler, LevelFilter::INFO, || {
            (0..64).map(|_| request(None)).collect::<Vec<_>>()
        });
        let ratio = Sampler::TraceIdRatioBased(0.5);
        for (trace_id, created) in &seen.out {
            let sdk = ratio.should_sample(None, *trace_id, "request", &SpanKind::Server, &[], &[]);
            let sampled = sdk.decision == SamplingDecision::RecordAndSample;
            assert_eq!(*created, sampled, "{trace_id}");
            // Exported exactly when sampled, the whole tree.
            let exported = in_trace(&seen.spans, *trace_id).len();
            assert_eq!(exported, if sampled { 4 } else { 0 }, "{trace_id}");
        }
        // 64 draws at 1/2: both outcomes (each missing with probability 2^-64).
        assert!(seen.out.iter().any(|(_, created)| *created));
        assert!(seen.out.iter().any(|(_, created)| !created));
    }

    #[test]
    fn spans_outside_requests_are_left_to_the_sampler() {
        let sampler = sampler_named("parentbased_always_on", 0.0);
        let seen = with_export(sampler, LevelFilter::INFO, || {
            let span = tracing::debug_span!("background");
            span.in_scope(|| !tracing::debug_span!("step").is_disabled())
        });
        assert!(seen.out);
        assert_eq!(seen.spans.len(), 2, "{:?}", seen.spans);
    }

    #[test]
    fn what_no_layer_wants_stays_disabled_at_its_call_site() {
        // `Unlogged` must not turn a callsite every per-layer filter refuses into `sometimes`
        // (asked at each call; the registry would then create what no layer sees).
        let seen = with_export(Sampler::AlwaysOn, LevelFilter::INFO, || {
            let request = tracing::info_span!("request");
            head_sample(&request, None);
            request.in_scope(|| {
                [
                    tracing::enabled!(target: "h2", Level::DEBUG),
                    tracing::enabled!(target: "token_server", Level::TRACE),
                    tracing::enabled!(target: "token_server", Level::DEBUG),
                ]
            })
        });
        assert_eq!(seen.out, [false, false, true]);
    }
}
