"""Red team, DPoP (behaviour §14): an attacker holding a captured token and proof, or making proofs
with keys of their own. Each test failed before the fix its commit names."""

from __future__ import annotations

import json
import time
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from jwt.algorithms import RSAAlgorithm

from kong_plugins.ai_mcp_oauth2 import dpop, gateway
from kong_plugins.ai_mcp_oauth2.errors import InvalidDpopProof, InvalidToken, Response
from kong_plugins.ai_mcp_oauth2.gateway import Decision, Gateway, LetThrough

from .conftest import kong_config
from .fakes import Clock, make_key
from .test_dpop import TOKEN, URL, checker, proof


def test_a_proof_pushed_out_of_a_full_replay_memory_is_not_accepted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """§14.3: the memory holds REPLAY_ENTRIES proofs. An attacker with a bound token of their own
    fills it with fresh proofs of theirs; the victim's proof they captured, pushed out before it
    expired, must still be refused, not forgotten."""
    monkeypatch.setattr(dpop, "REPLAY_ENTRIES", 3)
    clock = Clock()
    check = checker(clock)
    victim = proof(clock=clock)
    check.first_use(check.check([victim], "POST", URL, TOKEN))
    attacker = make_key("ES256")
    for _ in range(3):
        clock.now += 1
        check.first_use(check.check([proof(attacker, clock=clock)], "POST", URL, TOKEN))
    with pytest.raises(InvalidDpopProof):
        check.first_use(check.check([victim], "POST", URL, TOKEN))
    clock.now += 1
    check.first_use(check.check([proof(clock=clock)], "POST", URL, TOKEN))  # a fresh proof still passes
    # the memory is the node's: a flood through an instance whose proofs live an hour holds up those
    # of another instance for no longer than the flood's own proofs' iat
    memory = dpop.ProofMemory(clock)
    hour, minute = checker(clock, dpop_proof_lifetime=3600), checker(clock, dpop_proof_lifetime=60)
    hour.replay.memory = minute.replay.memory = memory
    for _ in range(4):
        hour.first_use(hour.check([proof(attacker, clock=clock)], "POST", URL, TOKEN))
    clock.now += 1
    minute.first_use(minute.check([proof(clock=clock)], "POST", URL, TOKEN))


def test_an_iat_that_is_not_a_number_is_refused_not_an_internal_error() -> None:
    """Python's JSON reads ``NaN`` and ``Infinity``: a NaN ``iat`` passed both window comparisons
    and then failed ``int()``, a 500 (and an "unexpected" log line) for anyone, without a token."""
    clock = Clock()
    for iat in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(InvalidDpopProof) as raised:
            checker(clock).check([proof(clock=clock, iat=iat)], "POST", URL, TOKEN)
        assert raised.value.description == "The DPoP proof has no usable iat"
    for iat, description in (
        (10**400, "The DPoP proof is issued in the future"),
        (-(10**400), "The DPoP proof is too old"),
    ):
        with pytest.raises(InvalidDpopProof) as raised:
            checker(clock).check([proof(clock=clock, iat=iat)], "POST", URL, TOKEN)
        assert raised.value.description == description


def _b64(number: int) -> str:
    return dpop.b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


def test_a_proof_key_the_access_tokens_keys_could_not_be_is_refused_before_its_signature() -> None:
    """§14.2: the proof's key obeys the rules of the authorization server's keys (jwks.py): RSA of
    2048 to 8192 bits with an exponent of at most 32 bits. Otherwise one proof made the plugin do a
    public-key operation 30 times an ES256 check (a 3072-bit exponent, or a 16384-bit modulus)
    before any token work, or accepted a key nobody may sign tokens with."""
    rsa = make_key("RS256")
    numbers = rsa.private.public_key().public_numbers()
    assert checker().check([proof(rsa)], "POST", URL, TOKEN).jkt  # 2048 bits, e = 65537: fine
    unusable = "The DPoP proof's jwk is not a usable public key"
    odd = (1 << 3071) | (1 << 3069) | 12345
    for jwk in (
        {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(odd)},  # a 3072-bit exponent
        {"kty": "RSA", "n": _b64((1 << 16383) | 1), "e": "AQAB"},  # a 16384-bit modulus
    ):
        with pytest.raises(InvalidDpopProof) as raised:
            checker().check([proof(rsa, headers={"jwk": jwk})], "POST", URL, TOKEN)
        assert raised.value.description == unusable
    weak = generate_private_key(65537, 1024)  # a validly signed proof by a 1024-bit key
    weak_jwk = RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True)
    with pytest.raises(InvalidDpopProof) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about the key it is asked to sign with
        checker().check([proof(rsa, headers={"jwk": weak_jwk}, signing_key=weak)], "POST", URL, TOKEN)
    assert raised.value.description == unusable


@pytest.mark.parametrize("cnf", [{"jkt": 123}, {"jkt": ""}, {"jkt": ["abc"]}, {"jkt": None}, "abc", ["abc"]])
def test_a_token_with_a_cnf_the_plugin_cannot_read_is_not_a_bearer_token(cnf: object) -> None:
    """§14.3 (fail closed): a token whose ``cnf`` (or ``cnf.jkt``) is there but malformed was bound
    to something by its issuer; read as unbound, it passed as ``Bearer`` in ``optional`` mode."""
    check = checker()
    with pytest.raises(InvalidToken) as raised:
        gateway.check_binding(check, None, {"sub": "alice", "cnf": cnf})
    assert raised.value.description == "The access token's cnf is malformed"
    with pytest.raises(InvalidToken):
        gateway.check_binding(check, check.check([proof()], "POST", URL, TOKEN), {"sub": "alice", "cnf": cnf})
    gateway.check_binding(check, None, {"sub": "alice", "cnf": None})  # JSON null: no confirmation


def test_every_instance_of_the_plugin_shares_the_nodes_replay_memory() -> None:
    """§14.3 (and tests/faults/test_redteam_dpop.py through the stand-in): Kong starts one instance
    of a config per nginx worker and new ones on every reconfigure; a proof one of them accepted is
    refused by the others."""
    from .test_gateway import Claims, FakeRequest

    key = make_key("ES256")
    jkt = dpop.thumbprint(key.public_jwk())
    config = kong_config(proof_of_possession_dpop="strict")
    workers = [Gateway(config, services=lambda _: (Claims({"sub": "a", "cnf": {"jkt": jkt}}), None)) for _ in range(2)]
    captured = proof(key, clock=Clock(time.time()))

    def send(instance: Gateway) -> Decision:
        headers = {"authorization": [f"DPoP {TOKEN}"], "dpop": [captured]}
        return instance.handle(FakeRequest(headers, origin=("https", "mcp.example.com", 443)))

    assert isinstance(send(workers[0]), LetThrough)
    replayed = send(workers[1])
    assert isinstance(replayed, Response) and replayed.status == 401
    assert json.loads(replayed.body)["error_description"] == "The DPoP proof was used before"
