//! The README's "Your first token" section, run as written against the `token-service` binary
//! started as `cargo run` starts it (no configuration), with the caller token read from its log
//! the way the README tells a newcomer to:
//!
//! - every `grpcurl` command of the section: its method is one the proto declares, its `-d`
//!   body is a valid request message of that method (decoded against the proto's descriptor,
//!   unknown fields refused, as grpcurl does), and the call it makes succeeds, with the
//!   section's placeholders filled from the earlier answers;
//! - the Python client (`examples/first_token.py`, in the tests' Python environment) and the
//!   Rust client (`examples/first_token.rs`, compiled into this test) run the whole flow;
//! - the section's commands for them are the ones their own docs give, and the packages it
//!   installs are pinned in the tests' requirements.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: clippy.toml allows these in #[test] functions only"
)]

mod common;

#[allow(
    dead_code,
    reason = "the example's `main`, which this test does not call"
)]
#[path = "../examples/first_token.rs"]
mod example;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use token_proto::token_service_client::TokenServiceClient;
use token_testkit::port::free_port;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic::transport::Channel;

use common::{binary_command, proof_builder};

/// The README's section, from its heading to the next one.
fn section() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("\n## Your first token")
        .expect("the README has a `## Your first token` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines of the section's fenced code blocks, continuation lines (`\`) joined.
fn command_lines(section: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        if !pending.is_empty() {
            lines.push(std::mem::take(&mut pending));
        }
    }
    lines
}

/// A grpcurl command of the section: the RPC's name and its request body as JSON.
#[derive(Debug)]
struct Grpcurl {
    method: String,
    body: String,
}

fn grpcurl_commands(lines: &[String]) -> Vec<Grpcurl> {
    lines
        .iter()
        .filter(|l| l.starts_with("grpcurl "))
        .map(|l| {
            assert!(
                l.contains("-plaintext -H \"authorization: Bearer $CALLER_TOKEN\"")
                    && l.contains(" localhost:50052 "),
                "a grpcurl line of the README calls the local service as the caller: {l}"
            );
            let body = l.split_once("-d '").map_or("{}".to_owned(), |(_, rest)| {
                rest.split_once('\'')
                    .expect("the -d body is closed by a quote")
                    .0
                    .to_owned()
            });
            let method = l
                .rsplit(' ')
                .next()
                .and_then(|m| m.strip_prefix("token.v1.TokenService/"))
                .unwrap_or_else(|| panic!("a grpcurl line ends with a token.v1 method: {l}"))
                .to_owned();
            Grpcurl { method, body }
        })
        .collect()
}

/// Decodes `json` as the request message of `method`, refusing unknown fields.
fn request_of(pool: &DescriptorPool, method: &str, json: &str) -> (MessageDescriptor, Vec<u8>) {
    let service = pool
        .get_service_by_name("token.v1.TokenService")
        .expect("the descriptor set holds the service");
    let rpc = service
        .methods()
        .find(|m| m.name() == method)
        .unwrap_or_else(|| panic!("the README calls {method}, which the proto does not declare"));
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(rpc.input(), &mut de).unwrap_or_else(|e| {
        panic!(
            "the README's {method} body is no {}: {e}\n{json}",
            rpc.input().full_name()
        )
    });
    (rpc.output(), message.encode_to_vec())
}

/// Makes the call a grpcurl line makes; returns the answer as grpcurl prints it (JSON).
async fn call(
    client: &mut TokenServiceClient<Channel>,
    caller: &str,
    method: &str,
    body: &[u8],
    output: MessageDescriptor,
) -> serde_json::Value {
    fn authed<T>(caller: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {caller}").parse().unwrap());
        r
    }
    let answer = match method {
        "GenerateTokens" => client
            .generate_tokens(authed(
                caller,
                token_proto::GenerateTokensRequest::decode(body).unwrap(),
            ))
            .await
            .map(|r| r.into_inner().encode_to_vec()),
        "RefreshTokens" => client
            .refresh_tokens(authed(
                caller,
                token_proto::RefreshTokensRequest::decode(body).unwrap(),
            ))
            .await
            .map(|r| r.into_inner().encode_to_vec()),
        "GetJWKS" => client
            .get_jwks(authed(
                caller,
                token_proto::GetJwksRequest::decode(body).unwrap(),
            ))
            .await
            .map(|r| r.into_inner().encode_to_vec()),
        "ValidateDPoP" => client
            .validate_d_po_p(authed(
                caller,
                token_proto::ValidateDPoPRequest::decode(body).unwrap(),
            ))
            .await
            .map(|r| r.into_inner().encode_to_vec()),
        other => panic!("the README calls {other}: add it to this test"),
    };
    let answer = answer.unwrap_or_else(|s| panic!("the README's {method} call failed: {s:?}"));
    let message = DynamicMessage::decode(output, answer.as_slice()).unwrap();
    serde_json::to_value(&message).unwrap()
}

/// Strips the terminal colour sequences of the pretty log format.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The caller token in the server's log: the value after `caller_token=`.
async fn caller_token(stdout: tokio::process::ChildStdout) -> String {
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = plain(&line);
            if let Some((_, rest)) = line.split_once("caller_token=") {
                let token: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
                assert_eq!(token.len(), 64, "a caller token of 32 bytes in hex: {line}");
                return token;
            }
        }
        panic!("the server's log ended without a caller_token");
    };
    let token = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the server logs its generated caller token within 20 s");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    token
}

#[tokio::test]
async fn the_first_token_section_works_as_written() {
    let section = section();
    let lines = command_lines(&section);
    assert!(
        lines.iter().any(|l| l == "cargo run"),
        "the section starts the service with `cargo run`"
    );

    // The service as `cargo run` starts it: nothing configured but the ports of this test.
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let mut child = binary_command(port, admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let caller = caller_token(child.stdout.take().unwrap()).await;
    let mut client = common::connect_when_up(port, "token-service").await;
    let addr = format!("127.0.0.1:{port}");

    // grpcurl, line by line.
    let pool = DescriptorPool::decode(token_proto::FILE_DESCRIPTOR_SET).unwrap();
    let commands = grpcurl_commands(&lines);
    let called: Vec<&str> = commands.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        called,
        ["GenerateTokens", "RefreshTokens", "GetJWKS", "ValidateDPoP"],
        "the section's grpcurl calls"
    );
    let proofs = proof_builder();
    let mut answers: Vec<serde_json::Value> = Vec::new();
    for command in &commands {
        let mut body = command.body.clone();
        for (placeholder, value) in [
            (
                "<the refresh_token it returned>",
                answers
                    .first()
                    .and_then(|a| a["refreshToken"].as_str())
                    .map(str::to_owned),
            ),
            (
                "<a DPoP proof JWS>",
                proofs
                    .proof(
                        "GET",
                        "https://api.example/orders",
                        None,
                        None,
                        common::now(),
                    )
                    .ok(),
            ),
        ] {
            if body.contains(placeholder) {
                let value =
                    value.unwrap_or_else(|| panic!("nothing to fill {placeholder} with yet"));
                body = body.replace(placeholder, &value);
            }
        }
        assert!(
            !body.contains('<'),
            "a placeholder this test does not know, in the README's {} body: {body}",
            command.method
        );
        let (output, request) = request_of(&pool, &command.method, &body);
        let answer = call(&mut client, &caller, &command.method, &request, output).await;
        answers.push(answer);
    }
    assert_eq!(answers[0]["tokenType"], "Bearer", "{}", answers[0]);
    assert_ne!(
        answers[1]["refreshToken"], answers[0]["refreshToken"],
        "rotated"
    );
    let jwks: serde_json::Value =
        serde_json::from_str(answers[2]["jwksJson"].as_str().unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!(answers[3]["valid"], true, "{}", answers[3]);
    assert_eq!(answers[3]["jkt"], proofs.jkt().as_str(), "{}", answers[3]);

    // The Rust client.
    let outcome = example::first_token(&addr, &caller).await.unwrap();
    assert_eq!(outcome.token_type, "DPoP", "{outcome:?}");
    assert!(outcome.rotated && outcome.valid, "{outcome:?}");
    assert_eq!(outcome.keys, 1, "{outcome:?}");
    assert_eq!(outcome.jkt.0, outcome.jkt.1, "{outcome:?}");

    // The Python client, in the tests' Python environment.
    let venv = token_testkit::venv::Venv::ready().unwrap_or_else(|e| panic!("{e}"));
    let script = repo_root().join("crates/token-server/examples/first_token.py");
    let out = tokio::process::Command::new(venv.python())
        .arg(&script)
        .env("TOKEN_SERVICE_ADDR", &addr)
        .env("CALLER_TOKEN", &caller)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{printed}{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1. GenerateTokens: a DPoP token",
        "2. RefreshTokens: rotated: True",
        "3. GetJWKS: 1 key(s)",
        "4. ValidateDPoP: valid: True",
    ] {
        assert!(
            printed.contains(step),
            "the Python client printed {step:?}:\n{printed}"
        );
    }

    // The section's commands for the clients are the ones their docs give.
    let rust_doc =
        std::fs::read_to_string(repo_root().join("crates/token-server/examples/first_token.rs"))
            .unwrap();
    let python_doc = std::fs::read_to_string(&script).unwrap();
    let client_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("first_token") || l.contains("pip install"))
        .collect();
    assert_eq!(
        client_lines.len(),
        3,
        "pip install, the Python and the Rust client: {client_lines:?}"
    );
    for line in client_lines {
        assert!(
            rust_doc.contains(line.as_str()) || python_doc.contains(line.as_str()),
            "the README's `{line}` is not what the example's own docs say"
        );
        if let Some((_, packages)) = line.split_once("pip install ") {
            for package in packages.split_whitespace() {
                assert!(
                    token_testkit::venv::packages()
                        .iter()
                        .any(|p| p.starts_with(&format!("{package}=="))),
                    "the README installs {package}, which crates/token-testkit/requirements.txt does not pin (so no test ran it)"
                );
            }
        }
    }

    child.kill().await.unwrap();
}
