//! OpenTelemetry traces (`OTEL_*`): the `token-service` binary exports its spans over OTLP/gRPC
//! to a real OTLP trace receiver started here (tonic serving `TraceService` from the
//! `opentelemetry-proto` crate). A `GenerateTokens` carrying a W3C `traceparent` yields the
//! span tree under the caller's trace id: `request` (server kind, remote parent, the caller's
//! `tracestate`), the handler's span under it, and a span per Redis round trip under that; no
//! token, key, pepper or caller credential in any attribute. Head sampling: a `traceparent`
//! whose sampled flag is unset exports nothing of its request under the default parent-based
//! sampler, and `traceidratio` at 0 exports nothing at all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{SpanFlags, span::SpanKind};
use token_proto::token_service_client::TokenServiceClient;
use token_testkit::RedisServer;
use token_testkit::port::free_port;
use tokio::sync::mpsc;
use tonic::transport::Channel;

mod common;
use common::{
    CALLER, KEK, PEPPER, authed, binary_command, caller_digest, connect_when_up, generate,
    refresh_as, sigterm,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// A caller's trace that it did not sample (`traceparent` flags `00`).
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// A collector that hands every export to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn collector() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, rx)
}

/// One exported span, ids in hex.
#[derive(Debug)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    flags: u32,
    trace_state: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn spans(req: ExportTraceServiceRequest) -> Vec<Exported> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .and_then(|a| a.get("service.name").cloned())
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            out.push(Exported {
                service: service.clone(),
                name: s.name,
                trace_id: hex(&s.trace_id),
                span_id: hex(&s.span_id),
                parent: hex(&s.parent_span_id),
                kind: s.kind,
                flags: s.flags,
                trace_state: s.trace_state,
                attributes: attributes(&s.attributes),
            });
        }
    }
    out
}

/// `GenerateTokens` for `alice`, in the caller's trace `trace_id` (sampled or not by the
/// caller), with the caller's `tracestate`.
fn generate_in_trace(
    trace_id: &str,
    sampled: bool,
) -> tonic::Request<token_proto::GenerateTokensRequest> {
    let mut req = authed(generate("alice"));
    let flags = if sampled { "01" } else { "00" };
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{CALLER_SPAN}-{flags}")
            .parse()
            .unwrap(),
    );
    req.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    req
}

/// Starts the binary with trace export to a collector of its own (and Redis), the variables
/// `env` added (the sampler's), makes `calls`, then stops it with SIGTERM (the server drains,
/// then the tracer provider's shutdown exports the last batch). Returns what `calls` returned
/// and every span exported.
async fn exported_by<T>(
    env: &[(&str, &str)],
    calls: impl AsyncFnOnce(&mut TokenServiceClient<Channel>) -> T,
) -> (T, Vec<Exported>) {
    let (collector_addr, mut exports) = collector().await;
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let child = binary_command(port, admin)
        .env("CALLER_TOKEN_SHA256", caller_digest(CALLER))
        .env("DEFAULT_AUDIENCE", "https://api.example")
        .env("REDIS_URL", redis.url())
        .env("REFRESH_TOKEN_PEPPER", PEPPER)
        .env("KEY_ENCRYPTION_KEY", KEK)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_SERVICE_NAME", "token-service-under-test")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = connect_when_up(port, "the server with trace export").await;
    let out = calls(&mut client).await;

    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
        .status;
    assert!(status.success(), "{status:?}");
    let mut got = Vec::new();
    while let Ok(batch) = exports.try_recv() {
        got.extend(spans(batch));
    }
    (out, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_traceparent_is_exported_in_the_callers_trace() {
    let ((tokens, rotated), got) = exported_by(&[], async |client| {
        let tokens = client
            .generate_tokens(generate_in_trace(TRACE_ID, true))
            .await
            .unwrap()
            .into_inner();
        // A call without a traceparent: a root trace of its own (sampled or not by the ratio).
        let rotated = client
            .refresh_tokens(authed(refresh_as(&tokens.refresh_token, "web")))
            .await
            .unwrap()
            .into_inner();
        (tokens, rotated)
    })
    .await;
    let ours: Vec<&Exported> = got.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_str()).collect();

    let request = ours
        .iter()
        .find(|s| s.name == "request")
        .unwrap_or_else(|| panic!("no request span in the caller's trace: {names:?}"));
    assert_eq!(request.parent, CALLER_SPAN);
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_ne!(request.flags & SpanFlags::ContextIsRemoteMask as u32, 0);
    assert_eq!(request.trace_state, "vendor=opaque");
    assert_eq!(request.service, "token-service-under-test");
    assert_eq!(request.attributes["rpc"], "GenerateTokens");
    assert!(request.attributes.contains_key("caller"), "{request:?}");

    let handler = ours
        .iter()
        .find(|s| s.name == "generate_tokens")
        .unwrap_or_else(|| panic!("no handler span: {names:?}"));
    assert_eq!(handler.parent, request.span_id);

    // The store's round trips: client spans under the handler (directly or deeper), Redis.
    let tree: Vec<&str> = ours.iter().map(|s| s.span_id.as_str()).collect();
    let redis_spans: Vec<&&Exported> = ours
        .iter()
        .filter(|s| s.attributes.get("db.system.name").map(String::as_str) == Some("redis"))
        .collect();
    assert!(!redis_spans.is_empty(), "no Redis span: {names:?}");
    for s in &redis_spans {
        assert_eq!(s.kind, SpanKind::Client as i32, "{s:?}");
        assert!(tree.contains(&s.parent.as_str()), "{s:?} outside the tree");
        assert_ne!(s.parent, request.span_id, "{s:?} not under the handler");
    }

    // Nothing secret in any span, resource or attribute of any trace.
    let secrets = [
        tokens.access_token.as_str(),
        tokens.refresh_token.as_str(),
        rotated.access_token.as_str(),
        rotated.refresh_token.as_str(),
        CALLER,
        KEK,
        PEPPER,
    ];
    for span in &got {
        let all = format!("{span:?}");
        for secret in secrets {
            assert!(!all.contains(secret), "a secret in span {}", span.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_not_sampled_exports_nothing_of_its_request() {
    // The default sampler (`parentbased_traceidratio`): the caller's flag decides.
    let ((), got) = exported_by(&[], async |client| {
        for (trace_id, sampled) in [(UNSAMPLED_TRACE_ID, false), (TRACE_ID, true)] {
            client
                .generate_tokens(generate_in_trace(trace_id, sampled))
                .await
                .unwrap();
        }
    })
    .await;
    let names = |trace_id: &str| -> Vec<String> {
        got.iter()
            .filter(|s| s.trace_id == trace_id)
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(names(UNSAMPLED_TRACE_ID), Vec::<String>::new());
    let sampled = names(TRACE_ID);
    for name in ["request", "generate_tokens"] {
        assert!(
            sampled.iter().any(|n| n == name),
            "no {name} span: {sampled:?}"
        );
    }
    assert!(
        got.iter()
            .any(|s| s.trace_id == TRACE_ID && s.attributes.contains_key("db.system.name")),
        "no Redis span: {sampled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceidratio_zero_exports_nothing() {
    let env = [
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ];
    let ((), got) = exported_by(&env, async |client| {
        // Even a caller's sampled trace: `traceidratio` does not follow the parent.
        let tokens = client
            .generate_tokens(generate_in_trace(TRACE_ID, true))
            .await
            .unwrap()
            .into_inner();
        client
            .refresh_tokens(authed(refresh_as(&tokens.refresh_token, "web")))
            .await
            .unwrap();
    })
    .await;
    let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
    assert!(got.is_empty(), "exported: {names:?}");
}
