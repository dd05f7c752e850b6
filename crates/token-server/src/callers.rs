//! Callers and their rights: who may call which RPC, for which clients and audiences.
//!
//! Minting tokens is the crown jewel, so an authenticated caller is not yet an authorised one.
//! `CALLERS_FILE` names each caller, its one credential and its rights:
//!
//! ```toml
//! [[caller]]
//! name = "web-frontend"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! rpcs = ["GenerateTokens", "RefreshTokens", "RevokeToken"]
//! client_ids = ["web"]
//! audiences = ["https://api.example.com"]
//!
//! [[caller]]
//! name = "support-console"
//! mtls_san = "spiffe://example.com/ns/ops/sa/support"
//! rpcs = ["RevokeToken", "IntrospectToken"]
//! revoke_by_subject = true
//! revoke_by_family = true
//! ```
//!
//! Where this sits: [`crate::config`] reads the file and parses it here ([`parse`]);
//! [`crate::auth`] authenticates each request to one [`Caller`] (by token digest, certificate
//! digest or certificate SAN) and checks its `rpcs` right before the request is decoded;
//! [`crate::service`] checks the rights that depend on the request (client id, audiences,
//! revocation by subject or family) before anything is issued, spent or changed. A refusal is
//! `PERMISSION_DENIED` naming the missing right, counted by caller and right.
//!
//! The legacy `CALLER_TOKEN_SHA256` digests (and, without a callers file, any certificate that
//! `TLS_CLIENT_CA_FILE` verifies) are callers with every right ([`Rights::all`]).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::Deserialize;

/// The largest callers file read.
pub const MAX_CALLERS_FILE_BYTES: usize = 256 * 1024;
/// The most callers in one file.
pub const MAX_CALLERS: usize = 1024;
/// The longest caller name (it labels metrics and log lines).
pub const MAX_NAME_BYTES: usize = 64;
/// The longest SAN, client id or audience in the file.
const MAX_ENTRY_BYTES: usize = 1024;
/// The most client ids or audiences of one caller.
const MAX_LIST: usize = 1024;

/// The RPCs a caller may be granted. [`Rpc::TOKEN_RPCS`] are granted when a caller's `rpcs`
/// is not given; `WatchRevocations` (for resource servers) only when named. `GetJWKS` is
/// public and needs no right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rpc {
    /// `GenerateTokens`.
    GenerateTokens,
    /// `RefreshTokens`.
    RefreshTokens,
    /// `RevokeToken` (by refresh token; by family or subject also needs the matching right).
    RevokeToken,
    /// `ValidateDPoP`.
    ValidateDPoP,
    /// `IntrospectToken`.
    IntrospectToken,
    /// `WatchRevocations`.
    WatchRevocations,
}

impl Rpc {
    /// Every RPC a right can name.
    pub const ALL: [Rpc; 6] = [
        Rpc::GenerateTokens,
        Rpc::RefreshTokens,
        Rpc::RevokeToken,
        Rpc::ValidateDPoP,
        Rpc::IntrospectToken,
        Rpc::WatchRevocations,
    ];

    /// The RPCs a caller whose `rpcs` is not given may call.
    pub const TOKEN_RPCS: [Rpc; 5] = [
        Rpc::GenerateTokens,
        Rpc::RefreshTokens,
        Rpc::RevokeToken,
        Rpc::ValidateDPoP,
        Rpc::IntrospectToken,
    ];

    /// The RPC's name, as in the proto and in `rpcs`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::GenerateTokens => "GenerateTokens",
            Rpc::RefreshTokens => "RefreshTokens",
            Rpc::RevokeToken => "RevokeToken",
            Rpc::ValidateDPoP => "ValidateDPoP",
            Rpc::IntrospectToken => "IntrospectToken",
            Rpc::WatchRevocations => "WatchRevocations",
        }
    }

    /// The RPC a gRPC request path calls (`/token.v1.TokenService/GenerateTokens`), if one
    /// that needs a right.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let method = path.strip_prefix("/token.v1.TokenService/")?;
        Rpc::from_name(method)
    }

    fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Rpc::GenerateTokens => 1,
            Rpc::RefreshTokens => 2,
            Rpc::RevokeToken => 4,
            Rpc::ValidateDPoP => 8,
            Rpc::IntrospectToken => 16,
            Rpc::WatchRevocations => 32,
        }
    }
}

/// A list right: any value, or only those listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// `["*"]`.
    Any,
    /// The values listed (possibly none).
    Only(BTreeSet<String>),
}

impl Allow {
    /// Whether `value` is allowed.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Allow::Any => true,
            Allow::Only(set) => set.contains(value),
        }
    }
}

/// What a caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rights {
    rpcs: u8,
    /// The client ids it may mint, refresh and revoke for.
    pub client_ids: Allow,
    /// The audiences it may mint for (and refresh into).
    pub audiences: Allow,
    /// Whether it may revoke every family of a subject.
    pub revoke_by_subject: bool,
    /// Whether it may revoke a family by its id.
    pub revoke_by_family: bool,
}

impl Rights {
    /// Every right: the `CALLER_TOKEN_SHA256` callers, and any verified certificate when no
    /// callers file is configured.
    pub fn all() -> Self {
        Rights {
            rpcs: Rpc::ALL.iter().fold(0, |acc, r| acc | r.bit()),
            client_ids: Allow::Any,
            audiences: Allow::Any,
            revoke_by_subject: true,
            revoke_by_family: true,
        }
    }

    /// Whether the caller may call `rpc`.
    pub fn may_call(&self, rpc: Rpc) -> bool {
        self.rpcs & rpc.bit() != 0
    }
}

/// A right that a request needs; its [`fmt::Display`] is what a refusal names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right<'a> {
    /// `rpcs` must name this RPC.
    Rpc(Rpc),
    /// `client_ids` must hold this client id.
    ClientId(&'a str),
    /// `audiences` must hold this audience.
    Audience(&'a str),
    /// `revoke_by_subject = true`.
    RevokeBySubject,
    /// `revoke_by_family = true`.
    RevokeByFamily,
}

impl Right<'_> {
    /// The right's name in the callers file: the `right` label of the refusal metric.
    pub fn key(&self) -> &'static str {
        match self {
            Right::Rpc(_) => "rpcs",
            Right::ClientId(_) => "client_ids",
            Right::Audience(_) => "audiences",
            Right::RevokeBySubject => "revoke_by_subject",
            Right::RevokeByFamily => "revoke_by_family",
        }
    }
}

impl fmt::Display for Right<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Right::Rpc(rpc) => write!(f, "rpcs: {}", rpc.name()),
            Right::ClientId(id) => write!(f, "client_ids: {id:?}"),
            Right::Audience(aud) => write!(f, "audiences: {aud:?}"),
            Right::RevokeBySubject => f.write_str("revoke_by_subject"),
            Right::RevokeByFamily => f.write_str("revoke_by_family"),
        }
    }
}

/// An authenticated caller: its name (for logs, spans and metrics; never its credential) and
/// its rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name.
    pub name: String,
    /// What it may do.
    pub rights: Rights,
}

impl Caller {
    /// Whether the caller holds `right`.
    pub fn holds(&self, right: &Right<'_>) -> bool {
        let r = &self.rights;
        match right {
            Right::Rpc(rpc) => r.may_call(*rpc),
            Right::ClientId(id) => r.client_ids.contains(id),
            Right::Audience(aud) => r.audiences.contains(aud),
            Right::RevokeBySubject => r.revoke_by_subject,
            Right::RevokeByFamily => r.revoke_by_family,
        }
    }
}

/// How a caller proves who it is. `Debug` names the kind only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The SHA-256 of its bearer token.
    TokenSha256([u8; 32]),
    /// The SHA-256 of its client certificate (DER).
    MtlsCertSha256([u8; 32]),
    /// A URI or DNS subject alternative name of its client certificate (a SPIFFE id…).
    MtlsSan(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::TokenSha256(_) => "TokenSha256(..)",
            Credential::MtlsCertSha256(_) => "MtlsCertSha256(..)",
            Credential::MtlsSan(_) => "MtlsSan(..)",
        })
    }
}

/// One entry of the callers file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerSpec {
    /// Its credential.
    pub credential: Credential,
    /// Who it is and what it may do.
    pub caller: Caller,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    caller: Vec<CallerToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerToml {
    name: String,
    token_sha256: Option<String>,
    mtls_cert_sha256: Option<String>,
    mtls_san: Option<String>,
    rpcs: Option<Vec<String>>,
    #[serde(default)]
    client_ids: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    revoke_by_subject: bool,
    #[serde(default)]
    revoke_by_family: bool,
}

/// Parses a callers file. The error is the reason, for a `CALLERS_FILE` configuration error;
/// it names the caller (by name or position) and never repeats a credential.
///
/// # Errors
/// A file over [`MAX_CALLERS_FILE_BYTES`], invalid TOML or an unknown key, no caller, a caller
/// without exactly one credential, a malformed digest, an unknown RPC name, a duplicate name or
/// credential.
pub fn parse(text: &str) -> Result<Vec<CallerSpec>, String> {
    if text.len() > MAX_CALLERS_FILE_BYTES {
        return Err(format!(
            "is {} bytes long, more than the {MAX_CALLERS_FILE_BYTES} allowed",
            text.len()
        ));
    }
    let file: FileToml = toml::from_str(text).map_err(|e| {
        // The message quotes the offending line, which may hold a credential: keep only
        // where it is and what is wrong.
        let at = e
            .span()
            .map(|s| format!(" at byte {}", s.start))
            .unwrap_or_default();
        format!("not a callers file{at}: {}", e.message())
    })?;
    if file.caller.is_empty() {
        return Err("lists no [[caller]]".into());
    }
    if file.caller.len() > MAX_CALLERS {
        return Err(format!("lists more than {MAX_CALLERS} callers"));
    }
    let mut names = HashSet::new();
    let mut credentials = HashSet::new();
    let mut out = Vec::with_capacity(file.caller.len());
    for (i, raw) in file.caller.into_iter().enumerate() {
        let spec = caller(raw).map_err(|(name, reason)| match name {
            Some(name) => format!("caller {name:?}: {reason}"),
            None => format!("caller #{}: {reason}", i + 1),
        })?;
        let name = &spec.caller.name;
        if !names.insert(name.clone()) {
            return Err(format!("caller {name:?}: the name is used twice"));
        }
        if !credentials.insert(spec.credential.clone()) {
            return Err(format!(
                "caller {name:?}: its credential is another caller's too"
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

fn caller(raw: CallerToml) -> Result<CallerSpec, (Option<String>, String)> {
    let CallerToml {
        name,
        token_sha256,
        mtls_cert_sha256,
        mtls_san,
        rpcs,
        client_ids,
        audiences,
        revoke_by_subject,
        revoke_by_family,
    } = raw;
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'));
    if !name_ok {
        return Err((
            None,
            format!(
                "name must be 1 to {MAX_NAME_BYTES} characters of letters, digits and - _ . @ :"
            ),
        ));
    }
    let fail = |reason: String| (Some(name.clone()), reason);
    let credential = match (token_sha256, mtls_cert_sha256, mtls_san) {
        (Some(hex), None, None) => Credential::TokenSha256(
            sha256_hex(&hex).ok_or_else(|| fail(digest_hint("token_sha256")))?,
        ),
        (None, Some(hex), None) => Credential::MtlsCertSha256(
            sha256_hex(&hex).ok_or_else(|| fail(digest_hint("mtls_cert_sha256")))?,
        ),
        (None, None, Some(san)) => {
            if san.is_empty()
                || san.len() > MAX_ENTRY_BYTES
                || !san.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(fail(format!(
                    "mtls_san must be a URI or DNS name of 1 to {MAX_ENTRY_BYTES} printable characters"
                )));
            }
            Credential::MtlsSan(san)
        }
        _ => {
            return Err(fail(
                "needs exactly one of token_sha256, mtls_cert_sha256 or mtls_san".into(),
            ));
        }
    };
    let rpcs = match rpcs {
        None => Rpc::TOKEN_RPCS.iter().fold(0, |acc, r| acc | r.bit()),
        Some(list) => {
            let mut bits = 0u8;
            for entry in &list {
                let rpc = Rpc::from_name(entry).ok_or_else(|| {
                    let known: Vec<&str> = Rpc::ALL.iter().map(|r| r.name()).collect();
                    fail(format!(
                        "rpcs: unknown RPC {entry:?} (known: {})",
                        known.join(", ")
                    ))
                })?;
                bits |= rpc.bit();
            }
            bits
        }
    };
    let client_ids = allow("client_ids", client_ids).map_err(fail)?;
    let audiences = allow("audiences", audiences).map_err(fail)?;
    Ok(CallerSpec {
        credential,
        caller: Caller {
            name,
            rights: Rights {
                rpcs,
                client_ids,
                audiences,
                revoke_by_subject,
                revoke_by_family,
            },
        },
    })
}

fn allow(key: &str, list: Vec<String>) -> Result<Allow, String> {
    if list.len() > MAX_LIST {
        return Err(format!("{key}: more than {MAX_LIST} entries"));
    }
    if list.iter().any(|v| v == "*") {
        if list.len() > 1 {
            return Err(format!(
                "{key}: \"*\" (any) stands alone; remove the other entries"
            ));
        }
        return Ok(Allow::Any);
    }
    if let Some(bad) = list
        .iter()
        .find(|v| v.is_empty() || v.len() > MAX_ENTRY_BYTES)
    {
        return Err(format!(
            "{key}: entries must be 1 to {MAX_ENTRY_BYTES} bytes (one is {})",
            bad.len()
        ));
    }
    Ok(Allow::Only(list.into_iter().collect()))
}

fn digest_hint(key: &str) -> String {
    format!(
        "{key} must be a SHA-256 digest: 64 hex digits (a token's: `printf %s \"$TOKEN\" | sha256sum`; \
         a certificate's: `openssl x509 -in cert.pem -outform der | sha256sum`)"
    )
}

/// Decodes 64 hex digits (either case, nothing else) into a SHA-256 digest.
pub fn sha256_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *slot = nibble(*hi)? << 4 | nibble(*lo)?;
    }
    Some(out)
}

/// The URI and DNS subject alternative names of a DER certificate (empty when it has none or
/// does not parse: the certificate was verified by TLS already, this only reads names).
pub fn certificate_sans(der: &[u8]) -> Vec<String> {
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
            GeneralName::DnsName(dns) => Some(dns.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const D2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn parse_ok(text: &str) -> Vec<CallerSpec> {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        match parse(text) {
            Ok(specs) => panic!("accepted: {specs:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_module_example_parses_with_its_rights() {
        let doc = include_str!("callers.rs");
        let start = doc.find("//! ```toml\n").map(|i| i + 12).unwrap_or(0);
        let end = doc[start..]
            .find("//! ```")
            .map(|i| start + i)
            .unwrap_or(start);
        let example: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let specs = parse_ok(&example);
        assert_eq!(specs.len(), 2);
        let web = &specs[0].caller;
        assert_eq!(web.name, "web-frontend");
        assert!(web.holds(&Right::Rpc(Rpc::GenerateTokens)));
        assert!(!web.holds(&Right::Rpc(Rpc::IntrospectToken)));
        assert!(web.holds(&Right::ClientId("web")));
        assert!(!web.holds(&Right::ClientId("other")));
        assert!(web.holds(&Right::Audience("https://api.example.com")));
        assert!(!web.holds(&Right::Audience("https://payments.example")));
        assert!(!web.holds(&Right::RevokeBySubject));
        assert!(!web.holds(&Right::RevokeByFamily));
        let support = &specs[1];
        assert_eq!(
            support.credential,
            Credential::MtlsSan("spiffe://example.com/ns/ops/sa/support".into())
        );
        assert!(support.caller.holds(&Right::RevokeBySubject));
        assert!(!support.caller.holds(&Right::Rpc(Rpc::GenerateTokens)));
    }

    #[test]
    fn defaults_are_least_privilege_except_the_token_rpcs() {
        let specs = parse_ok(&format!(
            "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\n"
        ));
        let rights = &specs[0].caller.rights;
        for rpc in Rpc::TOKEN_RPCS {
            assert!(rights.may_call(rpc), "{rpc:?}");
        }
        assert!(!rights.may_call(Rpc::WatchRevocations));
        assert!(Rights::all().may_call(Rpc::WatchRevocations));
        assert_eq!(rights.client_ids, Allow::Only(BTreeSet::new()));
        assert_eq!(rights.audiences, Allow::Only(BTreeSet::new()));
        assert!(!rights.revoke_by_subject && !rights.revoke_by_family);
    }

    #[test]
    fn star_means_any_and_stands_alone() {
        let specs = parse_ok(&format!(
            "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nclient_ids = [\"*\"]\naudiences = [\"*\"]\n"
        ));
        assert_eq!(specs[0].caller.rights.client_ids, Allow::Any);
        assert!(specs[0].caller.holds(&Right::Audience("anything")));
        let e = parse_err(&format!(
            "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nclient_ids = [\"*\", \"web\"]\n"
        ));
        assert!(e.contains("stands alone"), "{e}");
    }

    #[test]
    fn mistakes_are_named_without_the_credential() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "lists no [[caller]]"),
            ("[[caller]]\nname = \"a\"\n".into(), "exactly one of"),
            (
                format!("[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nmtls_san = \"x\"\n"),
                "exactly one of",
            ),
            (
                "[[caller]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n".into(),
                "64 hex digits",
            ),
            (
                format!("[[caller]]\nname = \"a b\"\ntoken_sha256 = \"{D1}\"\n"),
                "caller #1: name must be",
            ),
            (
                format!(
                    "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nrpcs = [\"GetSecrets\"]\n"
                ),
                "unknown RPC \"GetSecrets\"",
            ),
            (
                format!("[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nrevoke_all = true\n"),
                "unknown field",
            ),
            (
                format!(
                    "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\n[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D2}\"\n"
                ),
                "the name is used twice",
            ),
            (
                format!(
                    "[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\n[[caller]]\nname = \"b\"\ntoken_sha256 = \"{D1}\"\n"
                ),
                "another caller's",
            ),
            (
                format!("[[caller]]\nname = \"a\"\ntoken_sha256 = \"{D1}\"\nbroken"),
                "not a callers file",
            ),
        ];
        for (text, want) in cases {
            let e = parse_err(&text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(D1) && !e.contains(D2), "credential echoed: {e}");
        }
        let huge = "#".repeat(MAX_CALLERS_FILE_BYTES + 1);
        assert!(parse_err(&huge).contains("more than"));
    }

    #[test]
    fn rpcs_are_found_by_exact_path_only() {
        assert_eq!(
            Rpc::from_path("/token.v1.TokenService/GenerateTokens"),
            Some(Rpc::GenerateTokens)
        );
        assert_eq!(Rpc::from_path("/token.v1.TokenService/GetJWKS"), None);
        assert_eq!(
            Rpc::from_path("/token.v1.TokenService/generatetokens"),
            None
        );
        assert_eq!(Rpc::from_path("/x.TokenService/GenerateTokens"), None);
    }

    #[test]
    fn hex_digests_take_64_hex_digits_only() {
        assert_eq!(sha256_hex(&D1.to_uppercase()), sha256_hex(D1));
        assert!(sha256_hex(D1).is_some());
        assert!(sha256_hex(&D1[..62]).is_none());
        assert!(sha256_hex(&format!("+{}", &D1[1..])).is_none());
        assert!(sha256_hex(&format!("{}é", &D1[..62])).is_none());
    }

    #[test]
    fn a_certificates_uri_and_dns_names_are_read() {
        // openssl req -x509 ... -addext "subjectAltName=URI:spiffe://example.org/web,DNS:web.example"
        let der = include_bytes!("../tests/data/client-spiffe.der");
        assert_eq!(
            certificate_sans(der),
            ["spiffe://example.org/web", "web.example"]
        );
    }

    #[test]
    fn garbage_certificates_have_no_names() {
        assert!(certificate_sans(b"").is_empty());
        assert!(certificate_sans(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_without_panic(text in ".{0,512}") {
            let _ = parse(&text);
        }

        #[test]
        fn any_bytes_as_a_certificate_do_not_panic(der in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = certificate_sans(&der);
        }
    }
}
