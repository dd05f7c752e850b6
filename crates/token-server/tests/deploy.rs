//! The deployment files of `deploy/` (Kubernetes manifests, the systemd unit) are valid and
//! agree with the server: checked by `deploy/check.py` in the tests' Python environment
//! (kubernetes-validate and PyYAML, pinned in `crates/token-testkit/requirements.txt`), with
//! `systemd-analyze` from the system (`apt-get install systemd`).
//!
//! The script gets the server's variables from [`token_server::config::VARIABLES`], so a
//! manifest or unit naming a variable the server does not read fails here, and the built
//! `token-service` binary, which `systemd-analyze verify` needs as the unit's `ExecStart`.

use std::path::Path;
use std::process::Command;

#[test]
fn the_deployment_files_are_valid_and_agree_with_the_server() {
    let venv = token_testkit::venv::Venv::ready()
        .unwrap_or_else(|e| panic!("the Python environment of deploy/check.py: {e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let check = root.join("deploy/check.py");
    assert!(check.is_file(), "{} is missing", check.display());

    // NAME<TAB>DEFAULT, the default as the README's table shows it.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a directory: {e}"));
    let variables = dir.path().join("variables.tsv");
    let text: String = token_server::config::VARIABLES
        .iter()
        .map(|v| format!("{}\t{}\n", v.name, v.default_text()))
        .collect();
    std::fs::write(&variables, text)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", variables.display()));

    let output = Command::new(venv.python())
        .arg(&check)
        .arg("--variables")
        .arg(&variables)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_token-service"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} {}: {e}",
                venv.python().display(),
                check.display()
            )
        });
    assert!(
        output.status.success(),
        "deploy/check.py failed ({}): the deployment files of deploy/ are invalid or disagree \
         with the server:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
