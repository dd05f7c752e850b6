//! OpenTelemetry traces (`OTEL_*`): the `token-service` binary exports its spans over OTLP/gRPC
//! to a real OTLP trace receiver started here (tonic serving `TraceService` from the
//! `opentelemetry-proto` crate). A `GenerateTokens` carrying a W3C `traceparent` yields the
//! span tree under the caller's trace id: `request` (server kind, remote parent, the caller's
//! `tracestate`), the handler's span under it, and a span per Redis round trip under that; no
//! token, key, pepper or caller credential in any attribute.

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
use token_testkit::RedisServer;
use token_testkit::port::free_port;
use tokio::sync::mpsc;

mod common;
use common::{
    CALLER, KEK, PEPPER, authed, binary_command, caller_digest, connect_when_up, generate,
    refresh_as, sigterm,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_traceparent_is_exported_in_the_callers_trace() {
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = connect_when_up(port, "the server with trace export").await;

    let mut req = authed(generate("alice"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    req.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    let tokens = client.generate_tokens(req).await.unwrap().into_inner();
    // A call without a traceparent: a root trace of its own (sampled or not by the ratio).
    let rotated = client
        .refresh_tokens(authed(refresh_as(&tokens.refresh_token, "web")))
        .await
        .unwrap()
        .into_inner();

    // SIGTERM: the server drains, then the tracer provider's shutdown exports the batch.
    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let mut got = Vec::new();
    while let Ok(batch) = exports.try_recv() {
        got.extend(spans(batch));
    }
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
