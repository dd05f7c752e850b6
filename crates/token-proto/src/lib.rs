#![doc = include_str!("../README.md")]
//!
//! # Where this crate sits
//!
//! `token-proto` depends on no other project crate. `token-server` implements
//! [`token_service_server::TokenService`] and serves [`FILE_DESCRIPTOR_SET`] through gRPC
//! reflection; `token-loadgen` and the server's tests drive the API through
//! [`token_service_client::TokenServiceClient`].
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The code `cargo xtask codegen` (protox + tonic-prost-build) generates from
/// `proto/token_service.proto`. Do not edit the generated files; change the proto and
/// regenerate (`cargo xtask ci` fails on stale output).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    reason = "generated code"
)]
mod generated {
    include!("token.v1.rs");
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of `proto/token_service.proto`, for gRPC server reflection
/// (`tonic_reflection::server::Builder::register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("token_service_descriptor.bin");

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// The few fields of `google.protobuf.FileDescriptorSet` this test reads (prost-types would
    /// be a dependency for two names).
    #[derive(Clone, PartialEq, prost::Message)]
    struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        file: Vec<FileDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FileDescriptorProto {
        #[prost(string, optional, tag = "2")]
        package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        service: Vec<ServiceDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ServiceDescriptorProto {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
    }

    #[test]
    fn the_descriptor_set_describes_the_served_service() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package.clone().unwrap_or_default();
                file.service
                    .iter()
                    .map(move |s| format!("{package}.{}", s.name.clone().unwrap_or_default()))
            })
            .collect();
        assert_eq!(services, [token_service_server::SERVICE_NAME]);
    }

    #[test]
    fn messages_round_trip_through_their_encoding() {
        let request = GenerateTokensRequest {
            subject: "alice".into(),
            client_id: "web".into(),
            dpop: Some(DPoPProof {
                proof: "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.c2ln".into(),
                http_method: "POST".into(),
                http_uri: "https://api.example/token".into(),
            }),
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        assert_eq!(
            GenerateTokensRequest::decode(bytes.as_slice()).unwrap(),
            request
        );
        let target = RevokeTokenRequest {
            target: Some(revoke_token_request::Target::Subject("alice".into())),
            ..Default::default()
        };
        assert_eq!(
            RevokeTokenRequest::decode(target.encode_to_vec().as_slice()).unwrap(),
            target
        );
    }
}
