//! An OTLP/gRPC trace receiver that accepts every export and counts its spans: the collector
//! the benchmark's trace-export run sends to, so what is measured is the server's cost of
//! exporting, not a collector's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::Error;

/// The receiver's state: spans received so far, and where to write their count.
struct Sink {
    spans: Arc<AtomicU64>,
    count_file: Option<PathBuf>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let total = self
            .spans
            .fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed)
            .saturating_add(u64::try_from(spans).unwrap_or(u64::MAX));
        if let Some(path) = &self.count_file {
            // Best effort: the count is a report, not the receiver's job.
            let _ = tokio::fs::write(path, total.to_string()).await;
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the OTLP trace service on `addr` until the process ends, writing the number of spans
/// received so far to `count_file` after every export.
///
/// # Errors
/// [`Error::Setup`] if `addr` cannot be served.
pub async fn serve(addr: SocketAddr, count_file: Option<PathBuf>) -> Result<(), Error> {
    let sink = Sink {
        spans: Arc::new(AtomicU64::new(0)),
        count_file,
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve(addr)
        .await
        .map_err(|e| Error::Setup(format!("serving OTLP on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    #[tokio::test]
    async fn counts_the_spans_of_every_export() {
        let dir = std::env::temp_dir().join(format!("otlp-sink-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count_file = dir.join("count");
        let port = token_testkit::port::free_port().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        tokio::spawn(serve(addr, Some(count_file.clone())));
        let mut client = loop {
            match TraceServiceClient::connect(format!("http://{addr}")).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let export = |spans: usize| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); spans],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(export(3)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&count_file).unwrap(), "3");
        client.export(export(2)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&count_file).unwrap(), "5");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
