//! `cargo xtask codegen [--check]`: generated protobuf code.
//!
//! For now a stub: no proto file has a configured output yet. The real implementation compiles
//! `proto/token_service.proto` with `protox` (a pure-Rust protobuf compiler, so nobody needs
//! `protoc`) and `tonic-prost-build` into committed files; `--check` fails when they are stale.

use anyhow::{Result, bail};

use crate::{reject_unknown, repo_root};

/// The proto file whose generated code is committed once codegen exists.
pub(crate) const SERVICE_PROTO: &str = "proto/token_service.proto";

pub(crate) fn run(args: &[String]) -> Result<()> {
    reject_unknown(args, &["--check"], "codegen")?;
    codegen(args.iter().any(|arg| arg == "--check"))
}

/// Regenerates the committed code, or with `check` only verifies it is up to date.
pub(crate) fn codegen(check: bool) -> Result<()> {
    let mode = if check { "codegen --check" } else { "codegen" };
    if repo_root().join(SERVICE_PROTO).exists() {
        bail!(
            "{mode}: {SERVICE_PROTO} exists but codegen is not implemented yet \
             (to do: protox + tonic-prost-build into committed files)"
        );
    }
    println!("{mode}: no protos with a configured output yet: nothing to do");
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
