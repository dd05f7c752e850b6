//! `cargo xtask codegen [--check]`: the Rust code generated from `proto/`.
//!
//! `proto/token_service.proto` is compiled with `protox` (a pure-Rust protobuf compiler, so
//! nobody needs `protoc`) into a `FileDescriptorSet`, which `tonic-prost-build` turns into
//! messages, the server trait and the client. The output is committed under
//! `crates/token-proto/src/` (included with `include!` by that crate's `lib.rs`, so rustfmt
//! leaves it alone), together with the encoded descriptor set that gRPC server reflection
//! serves. Clients (`token-loadgen`, the server's tests) and the server share that crate.
//! `--check` regenerates into a temporary directory and fails when the committed files differ.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use prost::Message as _;

use crate::{reject_unknown, repo_root};

/// The proto file whose generated code is committed.
pub(crate) const SERVICE_PROTO: &str = "proto/token_service.proto";
/// Where the generated files live, relative to the repository root.
const OUT_DIR: &str = "crates/token-proto/src";
/// The generated files: the Rust module (named after the proto package) and the descriptor set.
const OUTPUTS: [&str; 2] = ["token.v1.rs", "token_service_descriptor.bin"];

pub(crate) fn run(args: &[String]) -> Result<()> {
    reject_unknown(args, &["--check"], "codegen")?;
    codegen(args.iter().any(|arg| arg == "--check"))
}

/// Regenerates the committed code, or with `check` only verifies it is up to date.
pub(crate) fn codegen(check: bool) -> Result<()> {
    let root = repo_root();
    let out = root.join(OUT_DIR);
    if !check {
        std::fs::create_dir_all(&out)?;
        generate(&root, &out)?;
        println!(
            "codegen: wrote {}",
            OUTPUTS.map(|f| format!("{OUT_DIR}/{f}")).join(", ")
        );
        return Ok(());
    }
    let tmp = std::env::temp_dir().join(format!("token-service-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = generate(&root, &tmp).and_then(|()| {
        let stale: Vec<&str> = OUTPUTS
            .into_iter()
            .filter(|f| std::fs::read(tmp.join(f)).ok() != std::fs::read(out.join(f)).ok())
            .collect();
        if stale.is_empty() {
            println!("codegen --check: {OUT_DIR} is up to date");
            Ok(())
        } else {
            bail!(
                "codegen --check: stale generated code in {OUT_DIR}: {} \
                 (run `cargo xtask codegen` and commit the result)",
                stale.join(", ")
            )
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn generate(root: &Path, out: &Path) -> Result<()> {
    let fds = protox::compile([root.join(SERVICE_PROTO)], [root.join("proto")])
        .context("compiling proto/ with protox")?;
    std::fs::write(out.join(OUTPUTS[1]), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .out_dir(out)
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .context("generating Rust code with tonic-prost-build")?;
    Ok(())
}

/// Whether `proto/` holds any `*.proto` file.
pub(crate) fn any_proto() -> bool {
    let Ok(entries) = std::fs::read_dir(repo_root().join("proto")) else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "proto"))
}
