//! The KMS emulator: a `moto_server` process (from the [`venv`](crate::venv)) on a free
//! loopback port, killed on drop, and an AWS SDK client for the tests' own set-up calls
//! (creating keys), separate from the client of the code under test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use tempfile::TempDir;

use crate::{FixtureError, Process, Venv, port};

/// How long `moto_server` may take to listen (it imports much of boto on start).
const START_LIMIT: Duration = Duration::from_secs(60);

/// A `moto_server` process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    process: Process,
    port: u16,
    // Holds the log; removed on drop, after the process is gone.
    _dir: TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port (creating the Python environment first if it is
    /// missing) and waits until it listens.
    ///
    /// # Errors
    /// When the environment cannot be made ready, or moto exits or does not listen within
    /// 60 s (the message has the end of its log).
    pub fn start() -> Result<Moto, FixtureError> {
        Moto::start_on(port::free_port()?)
    }

    /// As [`Moto::start`] on `port` (the port of a killed emulator, to start a new one in
    /// its place).
    ///
    /// # Errors
    /// As [`Moto::start`].
    pub fn start_on(port: u16) -> Result<Moto, FixtureError> {
        let venv = Venv::ready()?;
        let dir = tempfile::Builder::new()
            .prefix("token-testkit-moto-")
            .tempdir()
            .map_err(|e| FixtureError::new(format!("cannot create a temporary directory: {e}")))?;
        let log: PathBuf = dir.path().join("moto.log");
        let mut process = Process::spawn(
            Command::new(venv.bin("moto_server")).args([
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]),
            &log,
            "the Python environment lacks moto_server: remove it to have it created again",
        )?;
        process
            .wait_listening(port, START_LIMIT)
            .map_err(|e| e.context(format!("moto_server on port {port}")))?;
        Ok(Moto {
            process,
            port,
            _dir: dir,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL), as a crashed KMS endpoint.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// An SDK client for the emulator at `url` (dummy credentials, `us-east-1`).
pub fn admin(url: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(url)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// Creates a key of `spec` for `usage` and returns its id.
///
/// # Errors
/// When the emulator refuses or does not answer.
pub async fn create_key(
    admin: &aws_sdk_kms::Client,
    spec: KeySpec,
    usage: KeyUsageType,
) -> Result<String, FixtureError> {
    let out = admin
        .create_key()
        .key_spec(spec.clone())
        .key_usage(usage)
        .send()
        .await
        .map_err(|e| FixtureError::new(format!("CreateKey {spec:?}: {e:?}")))?;
    out.key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or_else(|| FixtureError::new("CreateKey answered no key metadata"))
}

/// Creates an `ECC_NIST_P256` signing key in the emulator at `url` and returns its id (for
/// callers that do not depend on the AWS SDK themselves).
///
/// # Errors
/// As [`create_key`].
pub async fn create_p256_signing_key(url: &str) -> Result<String, FixtureError> {
    create_key(&admin(url), KeySpec::EccNistP256, KeyUsageType::SignVerify).await
}

/// Creates a symmetric `ENCRYPT_DECRYPT` key (a wrapping key for envelope mode) in the emulator
/// at `url` and returns its id.
///
/// # Errors
/// As [`create_key`].
pub async fn create_wrapping_key(url: &str) -> Result<String, FixtureError> {
    create_key(
        &admin(url),
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
}
