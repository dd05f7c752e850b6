"""Your first token, from Python: the flow of the README's "Your first token" section.

Against a running token-service (`cargo run`), with grpcio and the repository's proto file:

1. GenerateTokens with a DPoP proof: an access token and a refresh token, both bound to this
   client's key (cnf.jkt);
2. RefreshTokens with a fresh proof by the same key: the refresh token is rotated;
3. GetJWKS: the public keys a resource server verifies access tokens with;
4. ValidateDPoP: what a resource server asks for a request GET https://api.example/orders
   carrying the access token and a proof for it.

Run (the packages are pinned in crates/token-testkit/requirements.txt):

    python3 -m venv .venv && .venv/bin/pip install grpcio grpcio-tools cryptography
    CALLER_TOKEN=<the caller_token cargo run printed> .venv/bin/python crates/token-server/examples/first_token.py

TOKEN_SERVICE_ADDR (default localhost:50052) names the server. The test
crates/token-server/tests/first_token.rs runs this script against the binary.
"""

import base64
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
import uuid

import grpc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "proto")
# The token endpoint the proofs of steps 1 and 2 are made for (the URL your front end serves
# the token requests on; the service checks the proof's htu against it).
TOKEN_ENDPOINT = "https://auth.example/token"
# The resource request of step 4.
RESOURCE = "https://api.example/orders"


def load_stubs():
    """Generates the Python modules of proto/token_service.proto into a temporary directory."""
    out = tempfile.mkdtemp(prefix="token-service-stubs-")
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(PROTO_DIR, "token_service.proto"),
    ])
    if status != 0:
        sys.exit(f"protoc failed on {PROTO_DIR}/token_service.proto (exit {status})")
    sys.path.insert(0, out)
    return importlib.import_module("token_service_pb2"), importlib.import_module("token_service_pb2_grpc")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPKey:
    """An ES256 key and the DPoP proofs (RFC 9449) it signs."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint: SHA-256 of the required members, sorted, no whitespace."""
        canonical = json.dumps(self.jwk, separators=(",", ":"), sort_keys=True)
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, uri: str, access_token: str | None = None) -> str:
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": uri, "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def main() -> None:
    addr = os.environ.get("TOKEN_SERVICE_ADDR", "localhost:50052")
    caller = os.environ.get("CALLER_TOKEN") or sys.exit(
        "set CALLER_TOKEN to the caller_token that `cargo run` printed"
    )
    pb, pb_grpc = load_stubs()
    client = pb_grpc.TokenServiceStub(grpc.insecure_channel(addr))
    auth = [("authorization", f"Bearer {caller}")]
    key = DPoPKey()

    # 1. GenerateTokens
    issued = client.GenerateTokens(
        pb.GenerateTokensRequest(
            subject="alice",
            client_id="web",
            audience=["https://api.example"],
            scopes=["read", "write"],
            dpop=pb.DPoPProof(proof=key.proof("POST", TOKEN_ENDPOINT), http_method="POST", http_uri=TOKEN_ENDPOINT),
        ),
        metadata=auth,
    )
    print(f"1. GenerateTokens: a {issued.token_type} token for {issued.expires_in} s, family {issued.family_id}")

    # 2. RefreshTokens
    refreshed = client.RefreshTokens(
        pb.RefreshTokensRequest(
            refresh_token=issued.refresh_token,
            client_id="web",
            dpop=pb.DPoPProof(proof=key.proof("POST", TOKEN_ENDPOINT), http_method="POST", http_uri=TOKEN_ENDPOINT),
        ),
        metadata=auth,
    )
    rotated = refreshed.refresh_token != issued.refresh_token
    print(f"2. RefreshTokens: rotated: {rotated}, scopes {list(refreshed.scopes)}")

    # 3. GetJWKS
    jwks = json.loads(client.GetJWKS(pb.GetJWKSRequest(), metadata=auth).jwks_json)
    print(f"3. GetJWKS: {len(jwks['keys'])} key(s)")

    # 4. ValidateDPoP, as a resource server would for GET /orders with the new access token
    validated = client.ValidateDPoP(
        pb.ValidateDPoPRequest(
            proof=key.proof("GET", RESOURCE, refreshed.access_token),
            http_method="GET",
            http_uri=RESOURCE,
            access_token=refreshed.access_token,
        ),
        metadata=auth,
    )
    print(f"4. ValidateDPoP: valid: {validated.valid}, jkt {validated.jkt} {validated.error_description}")

    problems = [
        what
        for what, ok in [
            ("the tokens are not DPoP-bound", issued.token_type == "DPoP"),
            ("the refresh token was not rotated", rotated),
            ("the JWK Set is empty", len(jwks["keys"]) > 0),
            ("ValidateDPoP refused the request", validated.valid),
            ("ValidateDPoP reported another key", validated.jkt == key.thumbprint()),
        ]
        if not ok
    ]
    if problems:
        sys.exit("first token: " + "; ".join(problems))
    print("done: a DPoP-bound token, refreshed, and accepted for its key")


if __name__ == "__main__":
    main()
