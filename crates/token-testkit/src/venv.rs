//! The Python virtual environment of the tests: `moto_server` (a local AWS KMS emulator), PyJWT
//! (JWT checks by a second implementation), grpcio (the README's Python client) and
//! kubernetes-validate (the deployment checks), at the versions of [`REQUIREMENTS`]
//! (`requirements.txt` of this crate, which `cargo xtask ci` installs too).
//!
//! [`Venv::ready`] finds the environment and creates it when it is missing, so `cargo test`
//! on a fresh clone works without a prior `cargo xtask ci`:
//!
//! - where: `TOKEN_SERVICE_VENV` if set, else `<target dir>/venv`, the target directory being
//!   `CARGO_TARGET_DIR` (when absolute) or the one the running test executable was built in;
//! - how: `python3 -m venv`, then `pip install` of the pinned packages, once: an exclusive
//!   lock on `<venv>.lock` keeps concurrent test binaries from installing at the same time,
//!   and a marker file in the environment, holding the requirements it was made from, says
//!   it is complete. A changed requirement makes the next run install again.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::FixtureError;

/// The pinned Python packages, one requirement per line (`#` starts a comment).
pub const REQUIREMENTS: &str = include_str!("../requirements.txt");

/// The variable naming the environment's directory.
pub const VENV_VAR: &str = "TOKEN_SERVICE_VENV";

/// The marker of a complete environment, in its directory; it holds the [`packages`] it was
/// made with, one a line.
const MARKER: &str = ".token-testkit-requirements";

/// What the errors for a missing Python say.
const PYTHON_HINT: &str = "install it: apt-get install python3 python3-venv";

/// The requirements of [`REQUIREMENTS`], without comments and blank lines.
pub fn packages() -> Vec<&'static str> {
    REQUIREMENTS
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What the marker of a complete environment holds.
fn marker_text() -> String {
    packages().iter().map(|p| format!("{p}\n")).collect()
}

/// A complete Python virtual environment with the [`REQUIREMENTS`] installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The environment at its default place (see the [module docs](self)), created first if
    /// it is missing or was made from other requirements.
    ///
    /// # Errors
    /// When the place cannot be found or the environment cannot be created (the message says
    /// which step failed and, for a missing Python, how to install it).
    pub fn ready() -> Result<Self, FixtureError> {
        Self::ready_at(&default_dir()?)
    }

    /// The environment in `dir`, created first if it is missing or incomplete.
    ///
    /// # Errors
    /// As [`Venv::ready`].
    pub fn ready_at(dir: &Path) -> Result<Self, FixtureError> {
        let venv = Venv {
            dir: dir.to_owned(),
        };
        if venv.is_complete() {
            return Ok(venv);
        }
        let parent = dir
            .parent()
            .ok_or_else(|| FixtureError::new(format!("{}: no parent directory", dir.display())))?;
        std::fs::create_dir_all(parent)
            .map_err(|e| FixtureError::new(format!("cannot create {}: {e}", parent.display())))?;
        let mut lock_path = dir.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = lock(Path::new(&lock_path))?;
        // Another test binary may have made it while this one waited for the lock.
        if !venv.is_complete() {
            venv.create()?;
        }
        drop(lock);
        Ok(venv)
    }

    /// The environment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// An executable of the environment (such as `moto_server`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    fn is_complete(&self) -> bool {
        self.python().exists()
            && std::fs::read_to_string(self.dir.join(MARKER)).is_ok_and(|m| m == marker_text())
    }

    /// Creates the environment (if there is no interpreter yet) and installs the packages.
    fn create(&self) -> Result<(), FixtureError> {
        let dir = &self.dir;
        if !self.python().exists() {
            eprintln!(
                "token-testkit: creating the Python environment {}",
                dir.display()
            );
            run(
                Command::new("python3").args(["-m", "venv"]).arg(dir),
                "python3 -m venv",
            )?;
        }
        eprintln!(
            "token-testkit: installing {} into {}",
            packages().join(" "),
            dir.display()
        );
        run(
            Command::new(self.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(packages()),
            "pip install",
        )?;
        // Written last and atomically: only a complete environment has it.
        let marker = dir.join(MARKER);
        let partial = dir.join(format!("{MARKER}.partial"));
        std::fs::write(&partial, marker_text())
            .and_then(|()| std::fs::rename(&partial, &marker))
            .map_err(|e| FixtureError::new(format!("cannot write {}: {e}", marker.display())))
    }
}

/// Runs a step of the set-up; its output goes into the error when it fails.
fn run(command: &mut Command, step: &str) -> Result<Output, FixtureError> {
    let output = command.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FixtureError::new(format!("{step}: python3 was not found: {PYTHON_HINT}"))
        } else {
            FixtureError::new(format!("{step}: {e}"))
        }
    })?;
    if !output.status.success() {
        return Err(FixtureError::new(format!(
            "creating the Python environment for the KMS tests: `{step}` failed with {}:\n{}{}\
             (python3 needs its venv module: {PYTHON_HINT}; pip needs the package index)",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        )));
    }
    Ok(output)
}

/// Takes an exclusive lock on `path` (created if missing), held until the file is dropped; the
/// operating system releases it if the process dies.
fn lock(path: &Path) -> Result<File, FixtureError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| FixtureError::new(format!("cannot open {}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| FixtureError::new(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// `TOKEN_SERVICE_VENV`, else `<target dir>/venv`.
///
/// # Errors
/// When the variable is unset and the target directory cannot be found.
pub fn default_dir() -> Result<PathBuf, FixtureError> {
    if let Some(dir) = std::env::var_os(VENV_VAR).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(target_dir()?.join("venv"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when it is an absolute path, else the one the
/// running executable is in (a test binary is `<target>/<profile>/deps/<name>`).
///
/// # Errors
/// When neither gives one.
pub fn target_dir() -> Result<PathBuf, FixtureError> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir);
    }
    let exe = std::env::current_exe()
        .map_err(|e| FixtureError::new(format!("cannot find the test executable: {e}")))?;
    target_dir_of(&exe).ok_or_else(|| {
        FixtureError::new(format!(
            "cannot tell the target directory from {}: set {VENV_VAR} to a Python \
             environment directory (it is created if missing) or CARGO_TARGET_DIR to an \
             absolute path",
            exe.display()
        ))
    })
}

/// The target directory of an executable cargo built: the nearest ancestor holding cargo's
/// `.rustc_info.json`, else the directory above the profile directory of `deps/`.
fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    if let Some(dir) = exe
        .ancestors()
        .find(|a| a.join(".rustc_info.json").is_file())
    {
        return Some(dir.to_owned());
    }
    let deps = exe
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "deps"))?;
    Some(deps.parent()?.parent()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requirements_are_pinned() {
        let packages = packages();
        assert!(
            packages.iter().all(|p| p
                .split_once("==")
                .is_some_and(|(name, version)| { !name.is_empty() && !version.is_empty() })),
            "every requirement is `name==version`: {packages:?}"
        );
        for name in [
            "moto[server]",
            "PyJWT[crypto]",
            "grpcio",
            "kubernetes-validate",
        ] {
            assert!(
                packages.iter().any(|p| p.starts_with(&format!("{name}=="))),
                "{name} is pinned: {packages:?}"
            );
        }
    }

    #[test]
    fn the_target_dir_is_found_from_a_test_executable() {
        let root = tempfile::tempdir().unwrap();
        let exe = root.path().join("target/debug/deps/kms-0123");
        assert_eq!(target_dir_of(&exe), Some(root.path().join("target")));
        // With cargo's marker file, whatever the layout below it.
        let target = root.path().join("elsewhere");
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-gnu/release/deps")).unwrap();
        std::fs::write(target.join(".rustc_info.json"), "{}").unwrap();
        let exe = target.join("x86_64-unknown-linux-gnu/release/deps/kms-0123");
        assert_eq!(target_dir_of(&exe), Some(target));
        assert_eq!(target_dir_of(Path::new("/usr/bin/true")), None);
    }

    #[test]
    fn this_test_finds_its_target_dir() {
        let dir = target_dir().unwrap();
        assert!(
            dir.join("debug").is_dir() || dir.join("release").is_dir(),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn a_complete_environment_is_taken_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("venv");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/python"), "").unwrap();
        std::fs::write(dir.join(MARKER), marker_text()).unwrap();
        // No python3 or pip is run: nothing here could be installed.
        let venv = Venv::ready_at(&dir).unwrap();
        assert_eq!(venv.bin("moto_server"), dir.join("bin/moto_server"));
        // Made from other requirements: not complete.
        std::fs::write(dir.join(MARKER), "moto==0.1\n").unwrap();
        assert!(!venv.is_complete());
    }
}
