"""Red team, DPoP (behaviour §14.3): a captured proof replayed through the real plugin server behind
the Kong stand-in, where Kong itself hands the plugin server more than one instance of the same
plugin config: one per nginx worker, and a new one on every reconfigure (kong-pluginserver
reference §2.7). A proof is used once per node, whichever instance sees it."""

from __future__ import annotations

import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from kong_plugins.ai_mcp_oauth2.dpop import access_token_hash, thumbprint
from tests.harness import stack as C
from tests.harness.kong_standin import KongStandIn
from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.upstream import EchoUpstream

from .conftest import jwt_config

USED = "The DPoP proof was used before"


class Client:
    """A DPoP client: its key, a token the authorization server bound to it, and its proofs."""

    def __init__(self, authz: MockAuthorizationServer) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.token = authz.mint({"cnf": {"jkt": thumbprint(self.jwk)}})

    def proof(self, kong: KongStandIn) -> str:
        claims = {
            "jti": str(uuid.uuid4()),
            "htm": "POST",
            "htu": kong.proxy_url + "/mcp",
            "iat": int(time.time()),
            "ath": access_token_hash(self.token),
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})

    def headers(self, proof: str) -> dict[str, str]:
        return {"Authorization": f"DPoP {self.token}", "DPoP": proof}


def assert_replay_refused(response: requests.Response) -> None:
    context = f"{response.status_code} {response.headers.get('WWW-Authenticate')} {response.text}"
    assert response.status_code == 401, context
    assert response.json() == {"error": "invalid_dpop_proof", "error_description": USED}, context
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'DPoP error="invalid_dpop_proof", error_description="{USED}", algs="'), context


def test_a_proof_replayed_through_another_nginx_worker_is_refused(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    """Kong's workers each start their own instance of the plugin config on the one plugin server;
    the attacker's replay lands on the other worker (the stand-in takes them in turn)."""
    kong = start_kong(C.declarative(jwt_config(authz, proof_of_possession_dpop="strict")), workers=2)
    client = Client(authz)
    before = len(upstream.requests)
    captured = client.proof(kong)
    assert C.call(kong, headers=client.headers(captured)).status_code == 200
    replayed = C.call(kong, headers=client.headers(captured))
    assert_replay_refused(replayed)
    assert len(upstream.requests) == before + 1


def test_a_proof_replayed_after_a_reconfigure_is_refused(
    start_kong: C.StartKong, authz: MockAuthorizationServer, upstream: EchoUpstream
) -> None:
    """Every change of Kong's configuration (of any entity) starts new instances of the plugin."""
    document = C.declarative(jwt_config(authz, proof_of_possession_dpop="strict"))
    kong = start_kong(document)
    client = Client(authz)
    before = len(upstream.requests)
    captured = client.proof(kong)
    assert C.call(kong, headers=client.headers(captured)).status_code == 200
    kong.reload(document | {"consumers": [{"username": "someone-else"}]})
    replayed = C.call(kong, headers=client.headers(captured))
    assert_replay_refused(replayed)
    assert len(upstream.requests) == before + 1
