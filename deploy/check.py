#!/usr/bin/env python3
"""Checks that the deployment files of deploy/ are valid and agree with the server.

    python deploy/check.py --variables FILE --binary PATH

FILE names every variable the server reads, one a line, as NAME<TAB>DEFAULT (the default as the
README's configuration table shows it); `crates/token-server/tests/deploy.rs` writes it from
`token_server::config::VARIABLES`. PATH is a built token-service binary: `systemd-analyze
verify` refuses a unit whose ExecStart binary does not exist, so the unit is verified with its
ExecStart pointing there; and its `config check` judges the example callers file.

Checked:
- every Kubernetes manifest against the Kubernetes schemas (kubernetes-validate, strict, offline
  with its bundled schemas) for each version of KUBERNETES_VERSIONS;
- the rules of the manifests: probes, the termination grace above SHUTDOWN_GRACE_SECONDS, the
  security context, resources, secrets only from the Secret, every variable a known one (the
  ConfigMap's commented-out settings too), named callers (CALLERS_FILE) from the Secret, the
  Service's and PDB's selectors and ports, the kustomization's list, the example Secret;
- the example callers file: least-privilege rights, every credential a placeholder, refused by
  the built server as it stands (`token-service config check`) and accepted once the
  placeholders are replaced by digests;
- the systemd unit: `systemd-analyze verify` silent, `systemd-analyze security` exposure at most
  MAX_EXPOSURE, TimeoutStopSec above SHUTDOWN_GRACE_SECONDS, the sandboxing settings, every
  variable a known one, the signing key and callers file through LoadCredential=.

One line per passed check; the first failure stops with a message and exit code 1. Needs Python
3.11, PyYAML and kubernetes-validate (pinned in crates/token-testkit/requirements.txt) and
systemd-analyze.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, NoReturn

DEPLOY = Path(__file__).resolve().parent
KUBERNETES = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "token-service.service"

# The oldest Kubernetes version the manifests promise to work on, and the newest the pinned
# kubernetes-validate bundles (raise it with the pin).
KUBERNETES_VERSIONS = ("1.30", "1.37")
# `systemd-analyze security` exposure of the unit: 1.1 ("OK") with systemd 252.
MAX_EXPOSURE = 1.5
# The bench's peak RSS under load is below this: a memory limit must leave room above it.
PEAK_RSS_BYTES = 100 * 1024 * 1024
# The example Secret's file, which kustomization.yaml must not list.
SECRET_EXAMPLE = "secret.example.yaml"
# Variables that hold secrets: in Kubernetes only from a Secret, in the unit only in the
# environment file.
SECRET_VARIABLES = ("REDIS_URL", "REFRESH_TOKEN_PEPPER", "DPOP_NONCE_KEY", "KEY_ENCRYPTION_KEY")
# Variables naming files of secrets: in Kubernetes files of the Secret's volume, in the unit
# credentials (%d/ID). The unit must set the first two: its signing key, its named callers.
SECRET_FILES = ("SIGNING_KEY_FILE", "CALLERS_FILE", "CALLER_TOKEN_SHA256_FILE")
REQUIRED_SECRET_FILES = ("SIGNING_KEY_FILE", "CALLERS_FILE")
# Ways callers authenticate; without any, each replica generates and logs its own caller token.
# CALLERS_FILE names each caller with its rights; the others make callers with every right.
CALLER_CREDENTIALS = (
    "CALLERS_FILE",
    "CALLER_TOKEN_SHA256_FILE",
    "CALLER_TOKEN_SHA256",
    "TLS_CLIENT_CA_FILE",
)
# The keys of a [[caller]] of CALLERS_FILE (crates/token-server/src/callers.rs), its
# credentials (exactly one each), and the list rights where "*" means any.
CALLER_KEYS = (
    "name",
    "token_sha256",
    "mtls_cert_sha256",
    "mtls_san",
    "rpcs",
    "client_ids",
    "audiences",
    "revoke_by_subject",
    "revoke_by_family",
)
CALLER_CREDENTIAL_KEYS = ("token_sha256", "mtls_cert_sha256", "mtls_san")
CALLER_LIST_RIGHTS = ("client_ids", "audiences")
# The ConfigMap's commented-out settings (`# NAME: "value"`), which an operator uncomments.
COMMENTED_SETTING = re.compile(r"^\s*#\s*([A-Z][A-Z0-9_]*):\s*(.*?)\s*$")
# Names that look like secrets, for variables the list above does not name yet.
SECRET_NAME = re.compile(r"PEPPER|SECRET|PASSW(OR)?D|CREDENTIAL|PRIVATE|(^|_)KEY$")
# Values that look like secrets: long hex keys, URLs with a password, PEM private keys.
SECRET_VALUE = re.compile(r"[0-9a-fA-F]{32,}|://[^/@\s]*:[^/@\s]+@|PRIVATE KEY")
# Variables the check reads from the variables file.
NEEDED_VARIABLES = (
    "PORT",
    "ADMIN_PORT",
    "SHUTDOWN_GRACE_SECONDS",
    "LOG_FORMAT",
    "SIGNING_KEY_FILE",
    "KMS_KEY_ID",
    "WRAPPING_KMS_KEY_ID",
    "KEY_ENCRYPTION_KEY",
    "CALLER_TOKEN_SHA256",
    "CALLER_TOKEN_SHA256_FILE",
    "CALLERS_FILE",
    "TLS_CERT_FILE",
    "TLS_CLIENT_CA_FILE",
    "DPOP_NONCE_REQUIRED",
) + SECRET_VARIABLES
FLAG_VALUES = ("true", "false", "1", "0", "yes", "no", "on", "off")

# The sandboxing the unit must keep (`systemd-analyze security` scores most of it; these give
# a specific message). Booleans are compared as booleans.
UNIT_SETTINGS = {
    "Type": "exec",
    "Restart": "on-failure",
    "DynamicUser": True,
    "NoNewPrivileges": True,
    "ProtectSystem": "strict",
    "ProtectHome": True,
    "PrivateTmp": True,
    "PrivateDevices": True,
    "MemoryDenyWriteExecute": True,
    "RestrictNamespaces": True,
    "LockPersonality": True,
    "ProtectKernelTunables": True,
    "ProtectKernelModules": True,
    "ProtectKernelLogs": True,
    "ProtectControlGroups": True,
    "ProtectClock": True,
    "ProtectHostname": True,
    "RestrictRealtime": True,
    "RestrictSUIDSGID": True,
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}


class CheckFailed(Exception):
    """The first failed check; its message says what and where."""


def fail(message: str) -> NoReturn:
    raise CheckFailed(message)


def passed(message: str) -> None:
    print(f"ok: {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Inputs


def read_variables(path: Path) -> dict[str, str]:
    """NAME<TAB>DEFAULT lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        fail(f"--variables {path}: cannot read it: {e}")
    variables: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, tab, default = line.partition("\t")
        if not tab or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            fail(f"--variables {path}:{number}: expected NAME<TAB>DEFAULT, got {line!r}")
        if name in variables:
            fail(f"--variables {path}:{number}: {name} is listed twice")
        variables[name] = default
    missing = [n for n in NEEDED_VARIABLES if n not in variables]
    if missing:
        fail(
            f"--variables {path}: lacks {', '.join(missing)}, which the check relies on "
            "(did the server rename them? update deploy/check.py and the deployment files)"
        )
    for name in ("PORT", "ADMIN_PORT", "SHUTDOWN_GRACE_SECONDS"):
        if not variables[name].isdigit():
            fail(f"--variables {path}: the default of {name} is {variables[name]!r}, not a number")
    passed(f"the variables file names {len(variables)} server variables")
    return variables


def import_packages() -> tuple[Any, Any]:
    hint = "install them: pip install -r crates/token-testkit/requirements.txt"
    try:
        import yaml  # noqa: PLC0415 (a missing package gets a message, not a traceback)
    except ImportError as e:
        fail(f"PyYAML is missing ({e}); {hint}")
    try:
        import kubernetes_validate  # noqa: PLC0415
    except ImportError as e:
        fail(f"kubernetes-validate is missing ({e}); {hint}")
    return yaml, kubernetes_validate


# ---------------------------------------------------------------------------------------------
# Helpers


def is_secret_value(value: str) -> bool:
    return bool(SECRET_VALUE.search(value))


def is_secret_name(name: str) -> bool:
    return name in SECRET_VARIABLES or (
        not name.endswith("_FILE") and bool(SECRET_NAME.search(name))
    )


def check_plain_variable(where: str, name: str, value: str, variables: dict[str, str]) -> None:
    """A variable given as plain text: known, no secret, of its default's kind."""
    if name not in variables:
        fail(
            f"{where}: {name} is not a variable the server reads (known: see the README's "
            "configuration table)"
        )
    if is_secret_name(name):
        fail(f"{where}: {name} holds a secret and must not be given as plain text")
    # CALLER_TOKEN_SHA256 holds digests, public by design, that look like hex keys.
    if name != "CALLER_TOKEN_SHA256" and is_secret_value(value):
        fail(f"{where}: the value of {name} looks like a secret (a key, password or private key)")
    default = variables[name]
    if default.isdigit() and not value.strip().isdigit():
        fail(f"{where}: {name} must be a whole number (default {default}), got {value!r}")
    if default in ("true", "false") and value.strip().lower() not in FLAG_VALUES:
        fail(f"{where}: {name} must be true or false, got {value!r}")


def selects(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions) matches `labels`."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def memory_bytes(where: str, quantity: Any) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity))
    if not match:
        fail(f"{where}: cannot read the memory quantity {quantity!r} (use e.g. 128Mi)")
    factor = {
        None: 1,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }[match.group(2)]
    return int(match.group(1)) * factor


def systemd_seconds(where: str, span: str) -> float:
    """A systemd time span (`30`, `30s`, `1min 30s`, `500ms`) in seconds."""
    units = {
        "": 1,
        "s": 1,
        "sec": 1,
        "second": 1,
        "seconds": 1,
        "ms": 1e-3,
        "msec": 1e-3,
        "us": 1e-6,
        "usec": 1e-6,
        "m": 60,
        "min": 60,
        "minute": 60,
        "minutes": 60,
        "h": 3600,
        "hr": 3600,
        "hour": 3600,
        "hours": 3600,
    }
    if span.strip() == "infinity":
        fail(f"{where}: infinity: systemd would never SIGKILL a service that does not stop")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([a-z]*)", "", span).strip():
        fail(f"{where}: cannot read the time span {span!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            fail(f"{where}: unknown time unit {unit!r} in {span!r}")
        total += float(number) * units[unit]
    return total


class NoNetwork:
    """Makes any network use in this process fail while it is active: schemas must come from
    kubernetes-validate's bundled copy, never from GitHub."""

    message = (
        "kubernetes-validate tried to use the network; the check validates offline against "
        "the schemas the pinned package bundles"
    )

    targets: tuple[tuple[Any, str], ...] = (
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "getaddrinfo"),
        (socket, "create_connection"),
    )

    def __enter__(self) -> None:
        self.saved = [getattr(owner, name) for owner, name in self.targets]

        def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
            raise OSError(self.message)

        for owner, name in self.targets:
            setattr(owner, name, refuse)

    def __exit__(self, *_exc: object) -> None:
        for (owner, name), saved in zip(self.targets, self.saved, strict=True):
            setattr(owner, name, saved)


# ---------------------------------------------------------------------------------------------
# Kubernetes


class Manifests:
    """The documents of deploy/kubernetes/, by kind."""

    def __init__(self, yaml: Any) -> None:
        self.files: dict[str, list[dict[str, Any]]] = {}
        paths = sorted(p for p in KUBERNETES.iterdir() if p.suffix in (".yaml", ".yml"))
        if not paths:
            fail(f"{KUBERNETES}: no manifests")
        for path in paths:
            try:
                docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
            except (OSError, yaml.YAMLError) as e:
                fail(f"{path.relative_to(DEPLOY)}: not readable YAML: {e}")
            for doc in docs:
                if not isinstance(doc, dict) or not all(
                    isinstance(doc.get(k), str) for k in ("apiVersion", "kind")
                ):
                    fail(f"{path.relative_to(DEPLOY)}: a document without apiVersion and kind")
            self.files[path.name] = docs

    def resources(self) -> list[tuple[str, dict[str, Any]]]:
        """Every Kubernetes resource (the Kustomization is kustomize's, not the API's)."""
        return [
            (name, doc)
            for name, docs in self.files.items()
            for doc in docs
            if doc["kind"] != "Kustomization"
        ]

    def one(self, kind: str) -> tuple[str, dict[str, Any]]:
        found = [(n, d) for n, d in self.resources() if d["kind"] == kind]
        if len(found) != 1:
            fail(f"deploy/kubernetes: expected exactly one {kind}, found {len(found)}")
        return found[0]


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"


def validate_schemas(manifests: Manifests, kubernetes_validate: Any) -> None:
    for file, doc in manifests.resources():
        for version in KUBERNETES_VERSIONS:
            try:
                with NoNetwork():
                    kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fail(
                    f"kubernetes/{file}: {name_of(doc)} does not validate against Kubernetes "
                    f"{e.version} (kubernetes-validate --strict): {path}: {e.message}"
                )
            except (
                kubernetes_validate.SchemaNotFoundError,
                kubernetes_validate.InvalidSchemaError,
            ) as e:
                fail(f"kubernetes/{file}: {name_of(doc)}: kubernetes-validate: {e.message}")
            except Exception as e:  # VersionNotSupportedError, a network attempt, a bad $ref
                message = getattr(e, "message", None) or str(e)
                fail(
                    f"kubernetes/{file}: {name_of(doc)}: kubernetes-validate "
                    f"{kubernetes_validate.__version__} cannot validate against Kubernetes "
                    f"{version}: {type(e).__name__}: {message}"
                )
    passed(
        f"{len(manifests.resources())} Kubernetes resources validate (strict, offline) against "
        f"Kubernetes {' and '.join(KUBERNETES_VERSIONS)}"
    )


def check_kustomization(manifests: Manifests) -> None:
    found = [
        (n, d) for n, docs in manifests.files.items() for d in docs if d["kind"] == "Kustomization"
    ]
    if len(found) != 1 or found[0][0] != "kustomization.yaml":
        fail("kubernetes/: expected one Kustomization, in kustomization.yaml")
    doc = found[0][1]
    where = "kubernetes/kustomization.yaml"
    if doc["apiVersion"] != "kustomize.config.k8s.io/v1beta1":
        fail(f"{where}: apiVersion {doc['apiVersion']!r}, expected kustomize.config.k8s.io/v1beta1")
    unknown = set(doc) - {"apiVersion", "kind", "resources", "namespace", "labels", "images"}
    if unknown:
        fail(f"{where}: fields the check does not know: {', '.join(sorted(unknown))}")
    listed = doc.get("resources") or []
    if len(set(listed)) != len(listed):
        fail(f"{where}: a resource is listed twice")
    if SECRET_EXAMPLE in listed:
        fail(
            f"{where}: lists {SECRET_EXAMPLE}; `kubectl apply -k` would replace the real "
            "Secret with its placeholders"
        )
    expected = set(manifests.files) - {"kustomization.yaml", SECRET_EXAMPLE}
    if set(listed) != expected:
        fail(
            f"{where}: resources {sorted(listed)}, expected every manifest but "
            f"{SECRET_EXAMPLE}: {sorted(expected)}"
        )
    passed(f"kustomization.yaml lists {', '.join(listed)} (not {SECRET_EXAMPLE})")


class Deployment:
    """The Deployment's container, its effective environment and its pod."""

    def __init__(self, manifests: Manifests, variables: dict[str, str]) -> None:
        self.file, self.doc = manifests.one("Deployment")
        self.where = f"kubernetes/{self.file}"
        spec = self.doc.get("spec") or {}
        self.replicas = spec.get("replicas", 1)
        template = spec.get("template") or {}
        self.labels: dict[str, str] = (template.get("metadata") or {}).get("labels") or {}
        self.pod: dict[str, Any] = template.get("spec") or {}
        containers = self.pod.get("containers") or []
        if len(containers) != 1:
            fail(f"{self.where}: expected one container (the server), found {len(containers)}")
        self.container: dict[str, Any] = containers[0]
        if not selects(spec.get("selector"), self.labels):
            fail(f"{self.where}: spec.selector does not select the pod template's labels")
        self.cm_file, self.configmap = manifests.one("ConfigMap")
        self.secret_file, self.secret = manifests.one("Secret")
        self.variables = variables
        self.env = self._environment()
        # *_FILE variable -> the Secret's key it reads (filled by check_secret_files).
        self.file_keys: dict[str, str] = {}

    def _environment(self) -> dict[str, dict[str, Any]]:
        """name -> {"value": text} | {"secret": (name, key)} | {"configmap": (name, key)}."""
        cm_name = (self.configmap.get("metadata") or {}).get("name")
        cm_data: dict[str, str] = self.configmap.get("data") or {}
        env: dict[str, dict[str, Any]] = {}
        for source in self.container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if not ref or source.get("prefix") or "secretRef" in source:
                fail(
                    f"{self.where}: envFrom may only take the ConfigMap {cm_name}, without a "
                    f"prefix (got {source}); secrets go in env with secretKeyRef"
                )
            if ref.get("name") != cm_name:
                fail(f"{self.where}: envFrom names ConfigMap {ref.get('name')!r}, not {cm_name!r}")
            for key, value in cm_data.items():
                env[key] = {"value": str(value), "from": f"kubernetes/{self.cm_file}"}
        seen: set[str] = set()
        for entry in self.container.get("env") or []:
            name = entry["name"]
            if name in seen:
                fail(f"{self.where}: env {name} is set twice")
            seen.add(name)
            where = f"{self.where}: env {name}"
            if name not in self.variables:
                fail(f"{where}: not a variable the server reads (see the README's table)")
            value_from = entry.get("valueFrom")
            if value_from is None:
                env[name] = {"value": str(entry.get("value", "")), "from": self.where}
            elif "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                env[name] = {
                    "secret": (ref.get("name"), ref.get("key")),
                    "optional": ref.get("optional"),
                }
            elif "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                if ref.get("name") != cm_name or ref.get("key") not in cm_data:
                    fail(f"{where}: configMapKeyRef {ref} is not a key of ConfigMap {cm_name}")
                env[name] = {
                    "value": str(cm_data[ref["key"]]),
                    "from": f"kubernetes/{self.cm_file}",
                }
            else:
                fail(f"{where}: valueFrom {value_from} is not a Secret or ConfigMap key")
        return env

    def value(self, name: str) -> str | None:
        """The plain value in force, the server's default if unset; None for a secret."""
        entry = self.env.get(name)
        if entry is None:
            return self.variables[name]
        return entry.get("value")

    def is_set(self, name: str) -> bool:
        entry = self.env.get(name)
        return entry is not None and (entry.get("value") is None or entry["value"] != "")

    def number(self, name: str) -> int:
        text = self.value(name) or ""
        if not text.strip().isdigit():
            fail(f"{self.where}: {name} is {text!r}, not a whole number")
        return int(text)

    def secret_keys(self) -> set[str]:
        return set(self.secret.get("data") or {}) | set(self.secret.get("stringData") or {})

    def secret_name(self) -> str:
        return (self.secret.get("metadata") or {}).get("name", "")


def check_variables(d: Deployment) -> None:
    cm_where = f"kubernetes/{d.cm_file}"
    for key, value in (d.configmap.get("data") or {}).items():
        check_plain_variable(f"{cm_where}: data.{key}", key, str(value), d.variables)
    if d.configmap.get("binaryData"):
        fail(f"{cm_where}: binaryData is not configuration the server reads")
    for name, entry in d.env.items():
        if "value" in entry:
            check_plain_variable(f"{entry['from']}: {name}", name, entry["value"], d.variables)
    passed(
        f"every variable of the Deployment and ConfigMap ({len(d.env)}) is a server variable, "
        "none of them a secret in plain text"
    )
    for name in SECRET_VARIABLES:
        entry = d.env.get(name)
        if entry is None or "secret" not in entry:
            fail(f"{d.where}: {name} must come from a Secret (valueFrom.secretKeyRef)")
        secret_name, key = entry["secret"]
        if secret_name != d.secret_name() or key not in d.secret_keys():
            fail(
                f"{d.where}: {name} reads key {key!r} of Secret {secret_name!r}, which "
                f"kubernetes/{d.secret_file} does not have"
            )
        if entry.get("optional"):
            fail(
                f"{d.where}: {name}'s secretKeyRef is optional: a missing Secret must stop the pod"
            )
    passed(f"{', '.join(SECRET_VARIABLES)} come from keys of the Secret {d.secret_name()}")

    if d.value("LOG_FORMAT") != "json":
        fail(f"{d.where}: LOG_FORMAT is {d.value('LOG_FORMAT')!r}; production logs are json")
    passed("LOG_FORMAT is json")

    # What a fleet needs, else every replica has its own store, key or caller token.
    if d.replicas < 2:
        fail(f"{d.where}: replicas is {d.replicas}; the manifests describe a fleet (at least 2)")
    if not any(
        d.is_set(n)
        for n in ("SIGNING_KEY_FILE", "KMS_KEY_ID", "KEY_ENCRYPTION_KEY", "WRAPPING_KMS_KEY_ID")
    ):
        fail(
            f"{d.where}: no signing key (SIGNING_KEY_FILE, KMS_KEY_ID) and no wrapping key for "
            f"managed keys (KEY_ENCRYPTION_KEY, WRAPPING_KMS_KEY_ID): the {d.replicas} replicas "
            "could not share their keys"
        )
    if not any(d.is_set(n) for n in CALLER_CREDENTIALS):
        fail(
            f"{d.where}: no caller credential ({', '.join(CALLER_CREDENTIALS[:-1])} or "
            f"{CALLER_CREDENTIALS[-1]}): each replica would generate and log its own caller token"
        )
    nonces = (d.value("DPOP_NONCE_REQUIRED") or "").lower() in ("true", "1", "yes", "on")
    if nonces and not d.is_set("DPOP_NONCE_KEY"):
        fail(f"{d.where}: DPOP_NONCE_REQUIRED is on without a shared DPOP_NONCE_KEY")
    passed(
        f"{d.replicas} replicas share a store (REDIS_URL), a pepper, a DPoP nonce key, a signing "
        "key and caller credentials"
    )

    # Least privilege from the start: the other caller credentials grant every right.
    if not d.is_set("CALLERS_FILE"):
        legacy = [n for n in CALLER_CREDENTIALS[1:] if d.is_set(n)]
        fail(
            f"{d.where}: CALLERS_FILE is not set, so the callers of {' and '.join(legacy)} have "
            "every right; name each caller with only its rights in a callers file from the "
            "Secret (README, Security)"
        )
    passed("callers are named, with their rights, in CALLERS_FILE")


def check_secret_files(d: Deployment) -> None:
    """Every *_FILE variable points into a read-only volume of the Secret."""
    mounts = d.container.get("volumeMounts") or []
    volumes = {v["name"]: v for v in d.pod.get("volumes") or []}
    checked = []
    for name, entry in sorted(d.env.items()):
        if not name.endswith("_FILE") or not entry.get("value"):
            continue
        path = entry["value"]
        where = f"{d.where}: {name}={path}"
        mount = next(
            (m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")),
            None,
        )
        if mount is None:
            fail(f"{where}: no volumeMount holds this path")
        if not mount.get("readOnly"):
            fail(f"{where}: the volumeMount {mount['name']} is not readOnly")
        secret = (volumes.get(mount["name"]) or {}).get("secret")
        if not secret or secret.get("secretName") != d.secret_name():
            fail(f"{where}: the volume {mount['name']} is not the Secret {d.secret_name()}")
        relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
        if mount.get("subPath"):
            fail(f"{where}: a subPath mount never sees an updated Secret")
        items = secret.get("items")
        if items is not None:
            item = next((i for i in items if i.get("path") == relative), None)
            if item is None:
                fail(f"{where}: the volume {mount['name']} has no item with path {relative!r}")
            key = item["key"]
        else:
            key = relative
        if key not in d.secret_keys():
            fail(f"{where}: the Secret (kubernetes/{d.secret_file}) has no key {key!r}")
        checked.append(name)
        d.file_keys[name] = key
    for name in SECRET_FILES:
        if name in d.env and name not in checked:
            fail(f"{d.where}: {name} is set but not to a path")
    passed(f"{', '.join(checked)} name files of a read-only volume of the Secret")


def check_secret_example(d: Deployment) -> None:
    where = f"kubernetes/{d.secret_file}"
    if d.secret_file != SECRET_EXAMPLE:
        fail(f"{where}: the Secret's manifest must be the example, {SECRET_EXAMPLE}")
    values = {**(d.secret.get("stringData") or {}), **(d.secret.get("data") or {})}
    for key, value in values.items():
        if "REPLACE" not in str(value):
            fail(f"{where}: {key} must be a placeholder containing REPLACE, not a value")
    used = {e["secret"][1] for e in d.env.values() if "secret" in e}
    for volume in d.pod.get("volumes") or []:
        secret = volume.get("secret") or {}
        if secret.get("secretName") == d.secret_name():
            used |= {i["key"] for i in secret.get("items") or []}
    if used != set(values):
        fail(
            f"{where}: keys {sorted(values)}, but the Deployment uses {sorted(used)}; keep "
            "them the same"
        )
    passed(
        f"{SECRET_EXAMPLE} has a placeholder for exactly the {len(used)} keys the Deployment uses"
    )


def check_commented_settings(d: Deployment) -> None:
    """The ConfigMap's commented-out settings are server variables an operator may uncomment,
    and KMS wrapping of the signing keys (WRAPPING_KMS_KEY_ID) stays shown."""
    path = KUBERNETES / d.cm_file
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = COMMENTED_SETTING.match(line)
        if not match:
            continue
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        where = f"kubernetes/{d.cm_file}:{number}: (commented out)"
        check_plain_variable(where, name, value, d.variables)
        found[name] = value
    shown = set(found) | set((d.configmap.get("data") or {}))
    if not d.is_set("KMS_KEY_ID") and "WRAPPING_KMS_KEY_ID" not in shown:
        fail(
            f"kubernetes/{d.cm_file}: WRAPPING_KMS_KEY_ID is neither set nor shown commented out: "
            "keep KMS envelope wrapping of the signing keys an option operators see"
        )
    passed(
        f"the ConfigMap's commented-out settings ({', '.join(sorted(found)) or 'none'}) are "
        "server variables, none of them a secret in plain text"
    )


def server_accepts_credential(key: str, value: str) -> bool:
    """Whether the server would take `value` as a caller's credential (callers.rs `parse`)."""
    if key in ("token_sha256", "mtls_cert_sha256"):
        return bool(re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()))
    return 0 < len(value.encode()) <= 1024 and all(0x21 <= ord(c) <= 0x7E for c in value)


def check_callers_example(d: Deployment, binary: Path) -> None:
    """The example callers file: least privilege, placeholders the server refuses, and a file
    the server accepts once they are replaced."""
    key = d.file_keys["CALLERS_FILE"]
    where = f"kubernetes/{d.secret_file}: {key}"
    if key in (d.secret.get("stringData") or {}):
        text = str(d.secret["stringData"][key])
    else:
        try:
            text = base64.b64decode(d.secret["data"][key], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as e:
            fail(f"{where}: not base64 of UTF-8 text: {e}")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"{where}: not TOML: {e}")
    callers = document.get("caller")
    if (
        set(document) != {"caller"}
        or not isinstance(callers, list)
        or not callers
        or not all(isinstance(c, dict) for c in callers)
    ):
        fail(f"{where}: expected [[caller]] tables only, got {sorted(document)}")
    mtls = d.is_set("TLS_CLIENT_CA_FILE")
    names = []
    for number, caller in enumerate(callers, 1):
        name = caller.get("name")
        at = f"{where}: caller {name!r}" if isinstance(name, str) else f"{where}: caller #{number}"
        if not isinstance(name, str):
            fail(f"{at}: no name")
        names.append(name)
        unknown = set(caller) - set(CALLER_KEYS)
        if unknown:
            fail(f"{at}: keys the server does not read: {', '.join(sorted(unknown))}")
        credentials = [k for k in CALLER_CREDENTIAL_KEYS if k in caller]
        if len(credentials) != 1:
            fail(f"{at}: needs exactly one of {', '.join(CALLER_CREDENTIAL_KEYS)}")
        credential = credentials[0]
        value = str(caller[credential])
        if "REPLACE" not in value or server_accepts_credential(credential, value):
            fail(
                f"{at}: {credential} must be a placeholder containing REPLACE that the server "
                "refuses (a digest that is not 64 hex digits, a SAN with a space)"
            )
        if credential != "token_sha256" and not mtls:
            fail(
                f"{at}: authenticates by client certificate, but the Deployment sets no "
                "TLS_CLIENT_CA_FILE: the server would refuse the callers file"
            )
        rpcs = caller.get("rpcs")
        if not isinstance(rpcs, list) or not rpcs:
            fail(
                f"{at}: list its rpcs: left out, a caller may call every RPC (least privilege "
                "is the example's point)"
            )
        for right in CALLER_LIST_RIGHTS:
            if "*" in (caller.get(right) or []):
                fail(f"{at}: {right} = [\"*\"] allows any; list the values this caller needs")
    passed(
        f"the example callers file names {len(callers)} callers ({', '.join(names)}), each with "
        "one placeholder credential and its rpcs listed, no \"*\""
    )

    # The built server refuses the file as it stands, and accepts it once each placeholder
    # is replaced: its format is the server's. The ConfigMap's and Deployment's plain settings
    # go along (not the Secret's values: placeholders; `config check` reads no file but the
    # callers and digest files, and the digest file is not here).
    environment = {
        name: entry["value"]
        for name, entry in d.env.items()
        if "value" in entry and name not in ("CALLERS_FILE", "CALLER_TOKEN_SHA256_FILE")
    }
    placeholder = re.compile(
        r"^(\s*)(" + "|".join(CALLER_CREDENTIAL_KEYS) + r")(\s*=\s*)"
        r"([\"'])[^\"'\n]*REPLACE[^\"'\n]*\4",
        re.MULTILINE,
    )
    count = iter(range(1, len(callers) + 1))

    def filled_in(match: re.Match[str]) -> str:
        indent, credential, equals = match.group(1), match.group(2), match.group(3)
        n = next(count, 0)
        if credential == "mtls_san":
            return f'{indent}{credential}{equals}"spiffe://example.invalid/caller-{n}"'
        digest = hashlib.sha256(f"example caller {n}".encode()).hexdigest()
        return f'{indent}{credential}{equals}"{digest}"'

    def config_check(content: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="token-service-callers-") as tmp:
            file = Path(tmp) / key
            file.write_text(content, encoding="utf-8")
            run = subprocess.run(
                [str(binary), "config", "check"],
                capture_output=True,
                text=True,
                env={**environment, "CALLERS_FILE": str(file)},
                check=False,
            )
        # Messages name the file as the container would see it.
        path = d.env["CALLERS_FILE"]["value"]
        run.stdout = run.stdout.replace(str(file), path)
        run.stderr = run.stderr.replace(str(file), path)
        return run

    original = config_check(text)
    fixed = config_check(placeholder.sub(filled_in, text))
    if original.returncode != 2 or "CALLERS_FILE" not in original.stderr:
        fail(
            f"{where}: `token-service config check` did not refuse the example callers file as "
            f"it stands (exit {original.returncode}, expected 2 naming CALLERS_FILE): an "
            f"operator could deploy its placeholders\n{original.stdout}{original.stderr}"
        )
    summary = f"{len(callers)} callers: {', '.join(names)}"
    if fixed.returncode != 0 or summary not in fixed.stdout:
        fail(
            f"{where}: with its placeholders replaced by digests, `token-service config check` "
            f"refuses it (exit {fixed.returncode}) or does not list {summary!r}:\n"
            f"{fixed.stdout}{fixed.stderr}"
        )
    passed(
        "token-service config check refuses the example callers file as it stands (exit 2, "
        "CALLERS_FILE) and accepts it with digests in place of its placeholders"
    )


def check_pod(d: Deployment) -> None:
    # Ports: named, and the ones the server listens on.
    ports = {p.get("name"): p for p in d.container.get("ports") or []}
    grpc, admin = d.number("PORT"), d.number("ADMIN_PORT")
    for name, number, var in (("grpc", grpc, "PORT"), ("admin", admin, "ADMIN_PORT")):
        if name not in ports:
            fail(f"{d.where}: no container port named {name!r}")
        if ports[name].get("containerPort") != number:
            fail(
                f"{d.where}: container port {name} is {ports[name].get('containerPort')}, but "
                f"the server listens on {var}={number}"
            )
    if grpc == admin:
        fail(f"{d.where}: PORT and ADMIN_PORT are both {grpc}")
    passed(f"container ports grpc {grpc} and admin {admin} are the server's PORT and ADMIN_PORT")

    def probe(kind: str, paths: tuple[str, ...]) -> dict[str, Any]:
        p = d.container.get(kind)
        if not p:
            fail(f"{d.where}: no {kind}")
        get = p.get("httpGet") or {}
        if get.get("path") not in paths:
            fail(f"{d.where}: {kind} must GET {' or '.join(paths)}, not {get.get('path')!r}")
        if get.get("port") not in ("admin", admin):
            fail(f"{d.where}: {kind} must probe the admin port, not {get.get('port')!r}")
        if get.get("scheme", "HTTP") != "HTTP":
            fail(f"{d.where}: {kind}: the admin port speaks plain HTTP")
        return p

    probe("livenessProbe", ("/healthz",))
    probe("readinessProbe", ("/readyz",))
    probe("startupProbe", ("/healthz", "/readyz"))
    passed("liveness GET /healthz, readiness GET /readyz, and a startup probe, on the admin port")

    # Stopping: the kubelet's SIGKILL comes after the server's own grace.
    grace = d.pod.get("terminationGracePeriodSeconds", 30)
    shutdown = d.number("SHUTDOWN_GRACE_SECONDS")
    pre_stop = (d.container.get("lifecycle") or {}).get("preStop")
    pre_stop_seconds = 0
    if pre_stop:
        if set(pre_stop) != {"sleep"}:
            fail(f"{d.where}: a preStop hook other than sleep has no bounded duration: {pre_stop}")
        pre_stop_seconds = int(pre_stop["sleep"]["seconds"])
    if not grace > shutdown + pre_stop_seconds:
        fail(
            f"{d.where}: terminationGracePeriodSeconds {grace} must be above "
            f"SHUTDOWN_GRACE_SECONDS {shutdown}"
            + (f" + preStop sleep {pre_stop_seconds}" if pre_stop_seconds else "")
            + ": the kubelet would SIGKILL requests still draining"
        )
    passed(f"terminationGracePeriodSeconds {grace} is above SHUTDOWN_GRACE_SECONDS {shutdown}")

    # Security context: the container's setting, else the pod's.
    pod_sc = d.pod.get("securityContext") or {}
    sc = d.container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        fail(f"{d.where}: runAsNonRoot must be true")
    for key in ("runAsUser", "runAsGroup"):
        if effective(key) != 65532:
            fail(f"{d.where}: {key} must be 65532 (nonroot), got {effective(key)!r}")
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(f"{d.where}: readOnlyRootFilesystem must be true (the server writes nothing)")
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(f"{d.where}: allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        fail(f"{d.where}: the container must not be privileged")
    capabilities = sc.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []) or capabilities.get("add"):
        fail(f"{d.where}: capabilities must drop ALL and add none")
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        fail(f"{d.where}: seccompProfile.type must be RuntimeDefault, got {seccomp!r}")
    if d.pod.get("automountServiceAccountToken") is not False:
        fail(
            f"{d.where}: automountServiceAccountToken must be false (the server calls no "
            "Kubernetes API)"
        )
    if d.pod.get("hostNetwork") or d.pod.get("hostPID") or d.pod.get("hostIPC"):
        fail(f"{d.where}: the pod must not share the host's namespaces")
    passed(
        "non-root (65532), read-only root, no privilege escalation, no capabilities, "
        "RuntimeDefault seccomp, no service account token"
    )

    resources = d.container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for key in ("cpu", "memory"):
        if key not in requests:
            fail(f"{d.where}: resources.requests.{key} is missing")
    if "memory" not in limits:
        fail(f"{d.where}: resources.limits.memory is missing")
    limit = memory_bytes(f"{d.where}: limits.memory", limits["memory"])
    request = memory_bytes(f"{d.where}: requests.memory", requests["memory"])
    if limit < PEAK_RSS_BYTES:
        fail(
            f"{d.where}: limits.memory {limits['memory']} is below the bench's peak RSS "
            "(< 100 MiB): the pod would be OOM-killed under load"
        )
    if request > limit:
        fail(
            f"{d.where}: requests.memory {requests['memory']} is above limits.memory "
            f"{limits['memory']}"
        )
    passed(
        f"resources: requests cpu {requests['cpu']} memory {requests['memory']}, limit memory "
        f"{limits['memory']} (above the peak RSS)"
    )

    spread = d.pod.get("topologySpreadConstraints") or []
    anti = (d.pod.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = [
        t.get("podAffinityTerm", t)
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    selectors = [c.get("labelSelector") for c in spread] + [t.get("labelSelector") for t in terms]
    if not selectors:
        fail(
            f"{d.where}: no topologySpreadConstraints or podAntiAffinity: replicas may share a node"
        )
    if not all(selects(s, d.labels) for s in selectors):
        fail(f"{d.where}: a spread or anti-affinity labelSelector does not match the pod's labels")
    if not any(c.get("topologyKey") == "kubernetes.io/hostname" for c in spread + terms):
        fail(f"{d.where}: no spread over kubernetes.io/hostname")
    passed("replicas are spread over nodes")


def check_service(d: Deployment, manifests: Manifests) -> None:
    file, service = manifests.one("Service")
    where = f"kubernetes/{file}"
    spec = service.get("spec") or {}
    if spec.get("type", "ClusterIP") != "ClusterIP":
        fail(f"{where}: type {spec.get('type')!r}, expected ClusterIP")
    selector = spec.get("selector") or {}
    if not selector or not selects({"matchLabels": selector}, d.labels):
        fail(f"{where}: the selector {selector} does not select the Deployment's pods")
    container_ports = {p["name"]: p["containerPort"] for p in d.container.get("ports") or []}
    exposed = set()
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        name = (
            target
            if isinstance(target, str)
            else next((n for n, c in container_ports.items() if c == target), None)
        )
        if name not in container_ports:
            fail(f"{where}: port {port.get('name')} targets {target!r}, not a container port")
        if port.get("port") != container_ports[name]:
            fail(
                f"{where}: port {port.get('name')} is {port.get('port')} but the container's "
                f"{name} port is {container_ports[name]}"
            )
        exposed.add(name)
    if exposed != set(container_ports):
        fail(f"{where}: exposes {sorted(exposed)}, the container has {sorted(container_ports)}")
    grpc_port = next(p for p in spec["ports"] if p.get("port") == container_ports["grpc"])
    tls = d.is_set("TLS_CERT_FILE")
    expected = "kubernetes.io/h2" if tls else "kubernetes.io/h2c"
    if grpc_port.get("appProtocol") != expected:
        fail(
            f"{where}: the grpc port's appProtocol is {grpc_port.get('appProtocol')!r}; gRPC "
            f"{'over TLS' if tls else 'without TLS (no TLS_CERT_FILE)'} is {expected}"
        )
    passed(
        "the Service selects the pods and exposes "
        + ", ".join(f"{n} {container_ports[n]}" for n in sorted(exposed))
    )


def check_pdb(d: Deployment, manifests: Manifests) -> None:
    file, pdb = manifests.one("PodDisruptionBudget")
    where = f"kubernetes/{file}"
    spec = pdb.get("spec") or {}
    if not selects(spec.get("selector"), d.labels):
        fail(f"{where}: the selector does not select the Deployment's pods")
    if ("minAvailable" in spec) == ("maxUnavailable" in spec):
        fail(f"{where}: set one of minAvailable and maxUnavailable")
    budget = spec.get("minAvailable", spec.get("maxUnavailable"))
    if not isinstance(budget, int):
        fail(f"{where}: use a number of pods, not {budget!r}")
    if "maxUnavailable" in spec and not 1 <= budget < d.replicas:
        fail(f"{where}: maxUnavailable {budget} must be from 1 to replicas - 1 ({d.replicas - 1})")
    if "minAvailable" in spec and not 1 <= budget < d.replicas:
        fail(f"{where}: minAvailable {budget} must be from 1 to replicas - 1 ({d.replicas - 1})")
    kind = "minAvailable" if "minAvailable" in spec else "maxUnavailable"
    passed(
        f"the PodDisruptionBudget selects the Deployment's pods ({kind} {budget} of {d.replicas})"
    )


# ---------------------------------------------------------------------------------------------
# systemd


def parse_unit(text: str) -> list[tuple[str, str, str, int]]:
    """(section, key, value, line) of every assignment, in order."""
    entries = []
    section = ""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if not eq:
            fail(f"systemd/{UNIT.name}:{start}: not KEY=VALUE: {line!r}")
        entries.append((section, key.strip(), value.strip(), start))
    return entries


def unit_bool(value: str) -> bool | None:
    lowered = value.lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    return None


def check_unit_settings(
    entries: list[tuple[str, str, str, int]], variables: dict[str, str]
) -> dict[str, str]:
    where = f"systemd/{UNIT.name}"
    service = [(k, v, n) for s, k, v, n in entries if s == "Service"]
    last = {k: v for k, v, _ in service}
    for key, expected in UNIT_SETTINGS.items():
        if key not in last:
            fail(f"{where}: [Service] lacks {key}=")
        value = last[key]
        ok = unit_bool(value) is expected if isinstance(expected, bool) else value == expected
        if not ok:
            fail(
                f"{where}: {key}={value}, expected {key}={'yes' if expected is True else expected}"
            )
    filters = [v for k, v, _ in service if k == "SystemCallFilter"]
    if "@system-service" not in filters or not any(
        v.startswith("~") and {"@privileged", "@resources"} <= set(v[1:].split()) for v in filters
    ):
        fail(
            f"{where}: SystemCallFilter must allow @system-service and deny ~@privileged @resources"
        )
    passed(f"the unit's sandboxing settings ({len(UNIT_SETTINGS) + 1} checked)")

    execs = [v for k, v, _ in service if k == "ExecStart"]
    if len(execs) != 1 or not execs[0]:
        fail(f"{where}: expected one ExecStart=, found {len(execs)}")
    if not any(k == "EnvironmentFile" for k, _, _ in service):
        fail(f"{where}: no EnvironmentFile= (the operator's configuration and secrets)")

    env: dict[str, str] = {}
    for key, value, number in service:
        if key != "Environment":
            continue
        try:
            assignments = shlex.split(value)
        except ValueError as e:
            fail(f"{where}:{number}: cannot read Environment={value}: {e}")
        for assignment in assignments:
            name, eq, text = assignment.partition("=")
            if not eq:
                fail(f"{where}:{number}: Environment= expects NAME=VALUE, got {assignment!r}")
            check_plain_variable(f"{where}:{number}", name, text, variables)
            env[name] = text
    credentials = {
        v.partition(":")[0]
        for k, v, _ in service
        if k in ("LoadCredential", "LoadCredentialEncrypted", "SetCredential")
    }
    for name in SECRET_FILES:
        value = env.get(name)
        if value is None:
            if name in REQUIRED_SECRET_FILES:
                fail(f"{where}: {name} is not set with Environment= to a credential (%d/ID)")
            continue
        if not value.startswith("%d/") or value[3:] not in credentials:
            fail(f"{where}: {name}={value} must name a LoadCredential= ID as %d/ID")
    if env.get("LOG_FORMAT") != "json":
        fail(f"{where}: Environment=LOG_FORMAT=json is missing")
    passed(
        f"the unit's {len(env)} Environment= variables are server variables, no secret among "
        "them; the signing key and the callers file come through LoadCredential="
    )

    shutdown = int(env.get("SHUTDOWN_GRACE_SECONDS", variables["SHUTDOWN_GRACE_SECONDS"]))
    stop = last.get("TimeoutStopSec", last.get("TimeoutSec"))
    if stop is None:
        fail(f"{where}: no TimeoutStopSec= (set it above SHUTDOWN_GRACE_SECONDS {shutdown})")
    stop_seconds = systemd_seconds(f"{where}: TimeoutStopSec", stop)
    if not stop_seconds > shutdown:
        fail(
            f"{where}: TimeoutStopSec={stop} must be above SHUTDOWN_GRACE_SECONDS {shutdown}: "
            "systemd would SIGKILL requests still draining"
        )
    if last.get("KillSignal", "SIGTERM") not in ("SIGTERM", "TERM", "15"):
        fail(f"{where}: KillSignal={last['KillSignal']}: the server drains on SIGTERM")
    passed(f"TimeoutStopSec={stop} is above SHUTDOWN_GRACE_SECONDS {shutdown}, KillSignal SIGTERM")
    return env


def run_systemd_analyze(binary: Path, entries: list[tuple[str, str, str, int]]) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        fail("systemd-analyze not found: apt-get install systemd")
    original = next(v for s, k, v, _ in entries if s == "Service" and k == "ExecStart")
    program = original.lstrip("@-:+!").split()[0]
    # A unit's command line expands % specifiers and splits at spaces.
    substitute = str(binary).replace("%", "%%")
    if re.search(r"\s", substitute):
        substitute = '"' + substitute.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = UNIT.read_text(encoding="utf-8")
    lines = [
        line.replace(program, substitute, 1) if line.strip().startswith("ExecStart=") else line
        for line in text.splitlines(keepends=True)
    ]
    with tempfile.TemporaryDirectory(prefix="token-service-unit-") as tmp:
        unit = Path(tmp) / UNIT.name
        unit.write_text("".join(lines), encoding="utf-8")
        env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}

        verify = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        output = (verify.stdout + verify.stderr).strip()
        if verify.returncode != 0 or output:
            fail(
                f"systemd-analyze verify systemd/{UNIT.name} (ExecStart={binary}) exited "
                f"{verify.returncode}{' with output' if output else ''}:\n{output}"
            )
        passed(f"systemd-analyze verify: no error, no warning (ExecStart={binary})")

        security = subprocess.run(
            [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        output = (security.stdout + security.stderr).strip()
        match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)", output)
        if security.returncode != 0 or match is None:
            fail(
                f"systemd-analyze security --offline=yes systemd/{UNIT.name} exited "
                f"{security.returncode} without an exposure level:\n{output}"
            )
        exposure = float(match.group(1))
        if exposure > MAX_EXPOSURE:
            failing = "\n".join(x for x in output.splitlines() if x.lstrip().startswith("✗"))
            fail(
                f"systemd-analyze security: the unit's exposure is {exposure} {match.group(2)}, "
                f"above {MAX_EXPOSURE}; what it counts:\n{failing}"
            )
        passed(
            f"systemd-analyze security: exposure {exposure} {match.group(2)} "
            f"(at most {MAX_EXPOSURE})"
        )


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variables", required=True, type=Path, help="NAME<TAB>DEFAULT lines")
    parser.add_argument("--binary", required=True, type=Path, help="the built token-service")
    args = parser.parse_args(argv)
    try:
        binary = args.binary.absolute()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            fail(f"--binary {args.binary}: not an executable file")
        variables = read_variables(args.variables)
        yaml, kubernetes_validate = import_packages()

        manifests = Manifests(yaml)
        validate_schemas(manifests, kubernetes_validate)
        check_kustomization(manifests)
        deployment = Deployment(manifests, variables)
        check_variables(deployment)
        check_secret_files(deployment)
        check_secret_example(deployment)
        check_commented_settings(deployment)
        check_callers_example(deployment, binary)
        check_pod(deployment)
        check_service(deployment, manifests)
        check_pdb(deployment, manifests)

        entries = parse_unit(UNIT.read_text(encoding="utf-8"))
        check_unit_settings(entries, variables)
        run_systemd_analyze(binary, entries)
    except CheckFailed as e:
        print(f"deploy/check.py: FAILED: {e}", file=sys.stderr)
        return 1
    print("deploy/check.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
