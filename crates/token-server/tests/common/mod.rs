//! Helpers shared by the integration tests that run the `token-service` binary.

use std::time::Duration;

use token_server::proto::token_service_client::TokenServiceClient;
use tonic::transport::Channel;

/// A client for a server process starting on `port` (polls for up to 10 s).
pub(crate) async fn connect_when_up(port: u16, what: &str) -> TokenServiceClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = TokenServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: nothing listening on port {port} after 10 s");
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
