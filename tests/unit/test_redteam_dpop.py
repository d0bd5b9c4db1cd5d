"""Red team, DPoP (behaviour §14): an attacker holding a captured token and proof, or making proofs
with keys of their own. Each test failed before the fix its commit names."""

from __future__ import annotations

import pytest

from kong_plugins.ai_mcp_oauth2 import dpop
from kong_plugins.ai_mcp_oauth2.errors import InvalidDpopProof

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
