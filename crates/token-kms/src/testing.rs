//! Test fixtures (feature `testing`, not a stable API): a real `moto_server` (a local AWS KMS
//! emulator from PyPI) started from the Python virtual environment named by
//! `TOKEN_SERVICE_VENV`, and helpers to create keys in it. Used by this crate's tests and by
//! the server's end-to-end tests, so both drive the same emulator the same way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a test fixture: failing loudly with a message is its job"
)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};

pub fn venv() -> PathBuf {
    let venv = std::env::var_os("TOKEN_SERVICE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // `cargo test` run by hand: the venv `cargo xtask ci` made in the default target dir.
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv")
        });
    let moto = venv.join("bin/moto_server");
    assert!(
        moto.exists(),
        "the KMS tests need moto_server, not found at {}.\n\
         Run `cargo xtask ci` once (it creates <target>/venv and sets TOKEN_SERVICE_VENV), or:\n  \
         python3 -m venv target/venv && target/venv/bin/pip install 'moto[server]==5.2.5' \
         'PyJWT[crypto]==2.15.1'\n  export TOKEN_SERVICE_VENV=$PWD/target/venv",
        moto.display()
    );
    venv
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `moto_server` process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Moto {
        let log = std::env::temp_dir().join(format!("token-kms-moto-{port}.log"));
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto {
            child: Some(child),
            port,
            log,
        };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "moto_server exited ({status}) on port {}: {}",
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "moto_server did not listen on port {} within 60 s",
            self.port
        );
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL), as a crashed KMS endpoint.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An SDK client for the test's own set-up calls (creating keys), separate from the library's.
pub fn admin(url: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(url)
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

pub async fn create_key(admin: &aws_sdk_kms::Client, spec: KeySpec, usage: KeyUsageType) -> String {
    admin
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

/// Creates an `ECC_NIST_P256` signing key in the emulator at `url` and returns its id (for
/// callers that do not depend on the AWS SDK themselves).
pub async fn create_p256_signing_key(url: &str) -> String {
    create_key(&admin(url), KeySpec::EccNistP256, KeyUsageType::SignVerify).await
}

/// Creates a symmetric `ENCRYPT_DECRYPT` key (a wrapping key for envelope mode) in the emulator
/// at `url` and returns its id.
pub async fn create_wrapping_key(url: &str) -> String {
    create_key(
        &admin(url),
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await
}
