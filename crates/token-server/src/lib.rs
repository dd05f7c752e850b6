//! The token-service gRPC server (work in progress: see the repository README).

pub mod proto;
