"""Self-tests of the mock OAuth authorization server (tests/harness/mock_as)."""

from __future__ import annotations

import base64
import http.client as httpclient
import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.harness.mock_as import MockAuthorizationServer
from tests.harness.mock_as import keys as K

RESOURCE = "http://localhost:8000/mcp"
TE = "urn:ietf:params:oauth:grant-type:token-exchange"
AT = "urn:ietf:params:oauth:token-type:access_token"
BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET = "s3cret-that-is-long-enough-for-hs512-0123456789abcdef0123456789ab"


@pytest.fixture
def mock():
    with MockAuthorizationServer(issuer_path="/realms/test") as m:
        yield m
        assert m.errors == []


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


def _verify(mock, token, **kw):
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in mock.jwks()["keys"] if k["kid"] == header["kid"])
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[header["alg"]],
        audience=kw.pop("audience", RESOURCE),
        issuer=mock.issuer,
        **kw,
    )


def _assertion(mock, client_id, key, alg, aud=None, **claims):
    c = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud or mock.issuer,
        "exp": int(time.time()) + 60,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
    }
    c.update(claims)
    return jwt.encode(c, key, algorithm=alg)


# ------------------------------------------------------------------ discovery
def test_discovery_documents_on_each_path(mock, http):
    urls = mock.metadata_urls
    assert urls["oauth"].endswith("/.well-known/oauth-authorization-server/realms/test")
    assert urls["openid_inserted"].endswith("/.well-known/openid-configuration/realms/test")
    assert urls["openid_appended"].endswith("/realms/test/.well-known/openid-configuration")
    assert mock.issuer == f"http://127.0.0.1:{mock.port}/realms/test"
    for url in urls.values():
        r = http.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        d = r.json()
        assert d["issuer"] == mock.issuer
        assert d["jwks_uri"] == mock.jwks_uri == mock.issuer + "/jwks"
        assert d["introspection_endpoint"] == mock.introspection_endpoint == mock.issuer + "/introspect"
        assert d["token_endpoint"] == mock.token_endpoint == mock.issuer + "/token"
        assert TE in d["grant_types_supported"]
        assert d["mtls_endpoint_aliases"]["introspection_endpoint"] == mock.mtls_introspection_endpoint
    # not the un-inserted forms
    assert http.get(mock.url("/.well-known/oauth-authorization-server")).status_code == 404
    assert http.get(mock.issuer + "/.well-known/oauth-authorization-server").status_code == 404
    assert mock.count("metadata") == 3


@pytest.mark.parametrize("switch", ["oauth", "openid_inserted", "openid_appended"])
def test_discovery_switches(mock, http, switch):
    mock.discovery[switch] = False
    for name, url in mock.metadata_urls.items():
        assert http.get(url).status_code == (404 if name == switch else 200)


def test_discovery_issuer_override_and_extra(mock, http):
    mock.metadata_issuer_override = "https://evil.example/realms/test"
    mock.metadata_extra = {"jwks_uri": "http://127.0.0.1:1/nowhere"}
    d = http.get(mock.metadata_urls["oauth"]).json()
    assert d["issuer"] == "https://evil.example/realms/test" and d["jwks_uri"] == "http://127.0.0.1:1/nowhere"
    assert mock.issuer == f"http://127.0.0.1:{mock.port}/realms/test"


def test_discovery_without_issuer_path(http):
    with MockAuthorizationServer() as m:
        assert m.issuer == f"http://127.0.0.1:{m.port}" and not m.issuer.endswith("/")
        assert http.get(m.url("/.well-known/oauth-authorization-server")).json()["issuer"] == m.issuer
        assert http.get(m.url("/.well-known/openid-configuration")).json()["jwks_uri"] == m.url("/jwks")
        m.discovery["openid_inserted"] = False
        assert http.get(m.url("/.well-known/openid-configuration")).status_code == 200
        m.discovery["openid_appended"] = False
        assert http.get(m.url("/.well-known/openid-configuration")).status_code == 404
        assert http.post(m.url("/.well-known/oauth-authorization-server")).status_code == 405


def test_bad_issuer_path_rejected():
    with pytest.raises(ValueError):
        MockAuthorizationServer(issuer_path="/x/")


# ------------------------------------------------------------------ keys and minting
def test_jwks_content(mock, http):
    ks = http.get(mock.jwks_uri).json()["keys"]
    assert sorted(k["alg"] for k in ks) == sorted(["RS256", "PS256", "ES256", "EdDSA"])
    assert len({k["kid"] for k in ks}) == 4
    for k in ks:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k", "oth"} & set(k), k
        assert k["use"] == "sig"
    assert {k["kty"] for k in ks} == {"RSA", "EC", "OKP"}
    assert next(k for k in ks if k["alg"] == "EdDSA")["crv"] == "Ed25519"
    assert all("d" in k.private_jwk for k in mock.keys)


def test_add_key_variants_and_jwks_extra(mock, http):
    for alg in ("RS384", "RS512", "PS384", "PS512", "ES384", "ES512"):
        mock.add_key(alg)
    bare = mock.add_key("ES256", kid="no-alg", jwk_alg=False)
    hidden = mock.add_key("RS256", publish=False)
    mock.jwks_extra = [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "RSA", "kid": "broken"}]
    ks = http.get(mock.jwks_uri).json()["keys"]
    kids = [k["kid"] for k in ks]
    assert "no-alg" in kids and "alg" not in next(k for k in ks if k["kid"] == "no-alg")
    assert hidden.kid not in kids and kids[-2:] == ["hmac", "broken"]
    assert next(k for k in ks if k.get("alg") == "ES512")["crv"] == "P-521"
    _verify(mock, mock.mint(key=bare))
    with pytest.raises(ValueError):
        mock.add_key("HS256")
    with pytest.raises(ValueError):
        mock.add_key("ES256", kid="no-alg")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA", "RS512", "ES384", "PS384"])
def test_mint_verifies_with_published_key(mock, alg):
    if alg not in {k.alg for k in mock.keys}:
        mock.add_key(alg)
    tok = mock.mint(alg=alg)
    claims = _verify(mock, tok)
    assert jwt.get_unverified_header(tok)["typ"] == "at+jwt"
    assert claims["sub"] == "user-1" and claims["client_id"] == "mcp-client" and claims["scope"] == "mcp:tools"
    assert claims["exp"] - claims["iat"] == 300 and uuid.UUID(claims["jti"])
    assert mock.validate_token(tok)["jti"] == claims["jti"]


def test_mint_overrides(mock):
    tok = mock.mint(
        {"scope": "a b", "aud": ["x", RESOURCE], "extra": {"n": 1}, "client_id": None},
        omit=["jti"],
        headers={"typ": None, "cty": "x"},
    )
    h = jwt.get_unverified_header(tok)
    assert "typ" not in h and h["cty"] == "x"
    c = _verify(mock, tok)
    assert c["scope"] == "a b" and c["extra"] == {"n": 1} and "jti" not in c and "client_id" not in c
    # unknown kid is only written into the header; header alg can lie
    t2 = mock.mint(kid="nope", headers={"alg": "RS512"})
    assert jwt.get_unverified_header(t2) == {"alg": "RS512", "typ": "at+jwt", "kid": "nope"}
    ec = next(k for k in mock.keys if k.alg == "ES256")
    assert jwt.get_unverified_header(mock.mint(kid=ec.kid))["alg"] == "ES256"


def test_rotation(mock, http):
    old = mock.current_key("RS256")
    new = mock.rotate("RS256")
    kids = [k["kid"] for k in http.get(mock.jwks_uri).json()["keys"]]
    assert new.kid in kids and old.kid not in kids
    assert jwt.get_unverified_header(mock.mint())["kid"] == new.kid
    old_tok = mock.mint(key=old)
    assert jwt.get_unverified_header(old_tok)["kid"] == old.kid
    assert mock.validate_token(old_tok) is not None  # still held, only unpublished
    mock.remove_key(old.kid)
    assert mock.validate_token(old_tok) is None
    with pytest.raises(KeyError):
        mock.remove_key(old.kid)


def test_unsigned_and_hmac(mock):
    t = mock.mint_unsigned({"sub": "attacker"})
    h, p, s = t.split(".")
    assert s == "" and json.loads(K.b64url_decode(h))["alg"] == "none"
    assert json.loads(K.b64url_decode(p))["sub"] == "attacker"
    assert mock.validate_token(t) is None
    pem = mock.current_key("RS256").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    t = mock.mint_hmac(pem, kid=mock.current_key("RS256").kid)
    header, claims, si, sig = K.split(t)
    assert header["alg"] == "HS256" and K.verify("HS256", si, sig, pem)
    assert mock.validate_token(t) is None
    assert K.split(mock.mint_hmac("k", alg="HS512"))[0]["alg"] == "HS512"


# ------------------------------------------------------------------ client authentication
def _introspect(http, mock, data=None, **kw):
    return http.post(mock.introspection_endpoint, data=dict({"token": "x"}, **(data or {})), **kw)


def test_client_secret_basic(mock, http):
    mock.add_client("gw", "client_secret_basic", secret="pw")
    assert _introspect(http, mock, auth=("gw", "pw")).status_code == 200
    r = _introspect(http, mock, auth=("gw", "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client" and "WWW-Authenticate" in r.headers
    assert _introspect(http, mock, auth=("nobody", "pw")).status_code == 401
    assert _introspect(http, mock).status_code == 401
    recs = mock.requests
    assert recs[0].client_id_authenticated == "gw" and recs[0].auth_method_used == "client_secret_basic"
    assert recs[1].client_id_authenticated is None and recs[1].auth_error


def test_client_secret_basic_requires_form_encoding(mock, http):
    cid, secret = "a:b c", "p@ss:w rd+%"
    mock.add_client(cid, "client_secret_basic", secret=secret)
    good = base64.b64encode(f"{quote_plus(cid)}:{quote_plus(secret)}".encode()).decode()
    raw = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    assert _introspect(http, mock, headers={"Authorization": "Basic " + good}).status_code == 200
    assert _introspect(http, mock, headers={"Authorization": "Basic " + raw}).status_code == 401
    # a space left as-is (not '+') is not form-encoding either
    mock.add_client("x y", "client_secret_basic", secret="z")
    assert (
        _introspect(http, mock, headers={"Authorization": "Basic " + base64.b64encode(b"x y:z").decode()}).status_code
        == 401
    )
    assert (
        _introspect(http, mock, headers={"Authorization": "Basic " + base64.b64encode(b"x+y:z").decode()}).status_code
        == 200
    )


def test_client_secret_post(mock, http):
    mock.add_client("gw", "client_secret_post", secret="pw")
    assert _introspect(http, mock, {"client_id": "gw", "client_secret": "pw"}).status_code == 200
    assert _introspect(http, mock, {"client_id": "gw", "client_secret": "no"}).status_code == 401
    assert _introspect(http, mock, {"client_secret": "pw"}).status_code == 401
    # registered for post, tried basic
    assert _introspect(http, mock, auth=("gw", "pw")).status_code == 401
    assert mock.requests[0].auth_method_used == "client_secret_post"


def test_two_methods_at_once_refused(mock, http):
    mock.add_client("gw", "client_secret_basic", secret="pw")
    r = _introspect(http, mock, {"client_id": "gw", "client_secret": "pw"}, auth=("gw", "pw"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    a = _assertion(mock, "gw", SECRET, "HS256")
    r = _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}, auth=("gw", "pw"))
    assert r.status_code == 400


def test_client_secret_jwt(mock, http):
    mock.add_client("jc", "client_secret_jwt", secret=SECRET)
    for alg in ("HS256", "HS384", "HS512"):
        a = _assertion(mock, "jc", SECRET, alg)
        r = _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a})
        assert r.status_code == 200, r.text
    # replay
    r = _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a})
    assert r.status_code == 401 and "replay" in mock.requests[-1].auth_error
    bad = {
        "wrong aud": _assertion(mock, "jc", SECRET, "HS256", aud="https://evil.example"),
        "expired": _assertion(mock, "jc", SECRET, "HS256", exp=int(time.time()) - 5),
        "wrong secret": _assertion(mock, "jc", SECRET + "x", "HS256"),
        "iss != sub": _assertion(mock, "jc", SECRET, "HS256", sub="other"),
        "no jti": _assertion(mock, "jc", SECRET, "HS256", jti=None),
    }
    for why, a in bad.items():
        r = _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a})
        assert r.status_code == 401, why
    a = _assertion(mock, "jc", SECRET, "HS256")
    assert _introspect(http, mock, {"client_assertion_type": "urn:wrong", "client_assertion": a}).status_code == 401
    # aud = the endpoint URL, or a list containing the token endpoint
    for aud in (mock.introspection_endpoint, ["x", mock.token_endpoint]):
        a = _assertion(mock, "jc", SECRET, "HS256", aud=aud)
        assert (
            _introspect(
                http, mock, {"client_assertion_type": BEARER, "client_assertion": a, "client_id": "jc"}
            ).status_code
            == 200
        )
    assert mock.requests[0].auth_method_used == "client_secret_jwt"


def test_private_key_jwt(mock, http):
    signer = K.new_key("ES256")
    other = K.new_key("ES256")
    mock.add_client("pk", "private_key_jwt", public_jwk=signer.public_jwk)
    a = _assertion(mock, "pk", signer.private_key, "ES256", aud=mock.introspection_endpoint)
    assert _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}).status_code == 200
    assert mock.requests[-1].auth_method_used == "private_key_jwt"
    a = _assertion(mock, "pk", other.private_key, "ES256")
    assert _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}).status_code == 401
    # an HMAC assertion keyed with the public JWK text must not pass
    a = _assertion(mock, "pk", json.dumps(signer.public_jwk) + "x" * 40, "HS256")
    assert _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}).status_code == 401
    rsa = K.new_key("PS256")
    mock.add_client("pk2", "private_key_jwt", public_jwk=rsa.public_jwk)
    a = _assertion(mock, "pk2", rsa.private_key, "RS256")  # JWK says PS256
    assert _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}).status_code == 401
    a = _assertion(mock, "pk2", rsa.private_key, "PS256")
    assert _introspect(http, mock, {"client_assertion_type": BEARER, "client_assertion": a}).status_code == 200


def test_client_none_and_checks_disabled(mock, http):
    mock.add_client("pub", "none")
    assert _introspect(http, mock, {"client_id": "pub"}).status_code == 200
    assert mock.requests[-1].auth_method_used == "none"
    mock.add_client("gw", "client_secret_basic", secret="pw")
    assert _introspect(http, mock, {"client_id": "gw"}).status_code == 401
    mock.client_checks_enabled = False
    assert _introspect(http, mock).status_code == 200
    assert _introspect(http, mock, auth=("gw", "wrong")).status_code == 200
    assert mock.requests[-1].client_id_authenticated is None


def test_add_client_validation(mock):
    with pytest.raises(ValueError):
        mock.add_client("x", "magic")
    with pytest.raises(ValueError):
        mock.add_client("x", "client_secret_basic")
    with pytest.raises(ValueError):
        mock.add_client("x", "tls_client_auth")


# ------------------------------------------------------------------ introspection
def test_introspection_results(mock, http):
    mock.client_checks_enabled = False
    tok = mock.issue_opaque({"scope": "mcp:tools mcp:admin", "username": "ann"})
    d = _introspect(http, mock, {"token": tok, "token_type_hint": "access_token", "extra": "1"}).json()
    assert d["active"] is True and d["scope"] == "mcp:tools mcp:admin" and d["username"] == "ann"
    assert d["iss"] == mock.issuer and d["aud"] == RESOURCE and d["sub"] == "user-1"
    assert d["client_id"] == "mcp-client" and d["token_type"] == "Bearer" and d["exp"] > time.time()
    assert _introspect(http, mock, {"token": mock.issue_opaque(active=False)}).json() == {"active": False}
    assert _introspect(http, mock, {"token": "unknown"}).json() == {"active": False}
    assert "aud" not in _introspect(http, mock, {"token": mock.issue_opaque({"aud": None})}).json()
    assert _introspect(http, mock, {"token": mock.issue_opaque({"exp": 5})}).json() == {"active": False}
    jwt_tok = mock.mint({"sub": "bob"}, alg="EdDSA")
    d = _introspect(http, mock, {"token": jwt_tok}).json()
    assert d["active"] is True and d["sub"] == "bob"
    mock.revoke(jwt_tok)
    mock.revoke(tok)
    assert _introspect(http, mock, {"token": jwt_tok}).json() == {"active": False}
    assert _introspect(http, mock, {"token": tok}).json() == {"active": False}
    rec = mock.requests[0]
    assert rec.endpoint == "introspection" and rec.method == "POST" and rec.path == "/realms/test/introspect"
    assert rec.form == {"token": [tok], "token_type_hint": ["access_token"], "extra": ["1"]}
    assert rec.headers["content-type"] == "application/x-www-form-urlencoded"


def test_introspection_request_errors(mock, http):
    mock.client_checks_enabled = False
    r = http.get(mock.introspection_endpoint)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = http.post(mock.introspection_endpoint, json={"token": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert http.post(mock.introspection_endpoint, data={"token_type_hint": "x"}).status_code == 400
    assert http.post(mock.introspection_endpoint, data=[("token", "a"), ("token", "b")]).status_code == 400
    assert mock.count("introspection") == 4


# ------------------------------------------------------------------ token exchange
def _exchange(http, mock, data, **kw):
    base = {"grant_type": TE, "subject_token_type": AT}
    if isinstance(data, dict):
        base.update(data)
        data = base
    else:
        data = list(base.items()) + data
    return http.post(mock.token_endpoint, data=data, **kw)


def test_exchange_happy_path(mock, http):
    mock.add_client("gw", "client_secret_basic", secret="pw")
    subject = mock.mint({"sub": "alice", "scope": "mcp:tools"})
    actor = mock.issue_opaque({"sub": "agent-7"})
    r = _exchange(
        http,
        mock,
        [
            ("subject_token", subject),
            ("audience", "https://api-1"),
            ("audience", "https://api-2"),
            ("scope", "read write"),
            ("actor_token", actor),
            ("actor_token_type", AT),
            ("requested_token_type", AT),
        ],
        auth=("gw", "pw"),
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["issued_token_type"] == AT and d["token_type"] == "Bearer" and d["expires_in"] == 300
    assert d["scope"] == "read write"
    c = _verify(mock, d["access_token"], audience="https://api-1")
    assert jwt.get_unverified_header(d["access_token"])["alg"] == "RS256"
    assert c["sub"] == "alice" and c["act"] == {"sub": "agent-7"} and c["scope"] == "read write"
    assert c["client_id"] == "gw"
    rec = mock.requests[-1]
    assert rec.endpoint == "token" and rec.form["audience"] == ["https://api-1", "https://api-2"]
    assert rec.auth_method_used == "client_secret_basic"


def test_exchange_resource_and_expiry(mock, http):
    mock.client_checks_enabled = False
    mock.exchange_expires_in = None
    r = _exchange(
        http, mock, [("subject_token", mock.issue_opaque()), ("resource", "https://r1"), ("resource", "https://r2")]
    )
    d = r.json()
    assert "expires_in" not in d and "act" not in _verify(mock, d["access_token"], audience="https://r1")
    mock.exchange_expires_in = 60
    d = _exchange(http, mock, {"subject_token": mock.mint()}).json()
    c = _verify(mock, d["access_token"])
    assert d["expires_in"] == 60 and c["exp"] - c["iat"] in (59, 60, 61) and c["scope"] == "mcp:tools"


def test_exchange_answer_names_the_requested_type_and_can_be_changed(mock, http):
    mock.client_checks_enabled = False
    jwt_type = "urn:ietf:params:oauth:token-type:jwt"
    d = _exchange(http, mock, {"subject_token": mock.mint(), "requested_token_type": jwt_type}).json()
    assert d["issued_token_type"] == jwt_type and d["token_type"] == "Bearer"
    assert _exchange(http, mock, {"subject_token": mock.mint()}).json()["issued_token_type"] == AT
    mock.exchange_answer_extra = {
        "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token",
        "token_type": None,
    }
    d = _exchange(http, mock, {"subject_token": mock.mint()}).json()
    assert d["issued_token_type"] == "urn:ietf:params:oauth:token-type:refresh_token" and "token_type" not in d
    assert "access_token" in d


def test_exchange_refusals(mock, http):
    mock.add_client("gw", "client_secret_post", secret="pw")
    auth = {"client_id": "gw", "client_secret": "pw"}
    good = mock.mint()

    def err(data, status=400):
        r = _exchange(http, mock, dict(auth, **data))
        assert r.status_code == status, (data, r.text)
        return r.json()["error"]

    assert err({"subject_token": good, "subject_token_type": None}) == "invalid_request"
    assert err({"actor_token": good}) == "invalid_request"
    assert err({"subject_token": good, "actor_token_type": AT}) == "invalid_request"
    assert err({"subject_token": good, "subject_token_type": "urn:x"}) == "invalid_request"
    assert err({"subject_token": good, "grant_type": "client_credentials"}) == "unsupported_grant_type"
    assert err({"subject_token": "garbage"}) == "invalid_grant"
    assert err({"subject_token": mock.mint({"exp": int(time.time()) - 10})}) == "invalid_grant"
    assert err({"subject_token": mock.mint_unsigned()}) == "invalid_grant"
    assert err({"subject_token": good, "actor_token": "nope", "actor_token_type": AT}) == "invalid_grant"
    impostor = K.new_key("RS256", kid=mock.current_key("RS256").kid)  # same kid, key not held by the mock
    assert err({"subject_token": mock.mint(key=impostor)}) == "invalid_grant"
    mock.exchange_invalid_error = "invalid_request"
    assert err({"subject_token": "garbage"}) == "invalid_request"
    mock.exchange_refuse = "invalid_target"
    assert err({"subject_token": good}) == "invalid_target"
    assert err({"subject_token": good, "client_secret": "bad"}, 401) == "invalid_client"
    assert http.get(mock.token_endpoint).status_code == 405


# ------------------------------------------------------------------ faults
@pytest.mark.parametrize("mode,status", [("500", 500), ("503", 503), ("404", 404), ("401", 401)])
def test_fault_status(mock, http, mode, status):
    mock.fault("jwks", mode, count=2)
    assert [http.get(mock.jwks_uri).status_code for _ in range(3)] == [status, status, 200]
    assert [r.fault for r in mock.requests] == [mode, mode, None]
    if mode == "401":
        assert http.get(mock.jwks_uri).status_code == 200
        mock.fault("introspection", "401")
        r = _introspect(http, mock)
        assert r.json()["error"] == "invalid_client" and "WWW-Authenticate" in r.headers


def test_fault_garbage_and_wrong_json(mock, http):
    mock.fault("metadata", "garbage")
    r = http.get(mock.metadata_urls["oauth"])
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    mock.fault("metadata", "wrong_json")
    assert isinstance(http.get(mock.metadata_urls["openid_appended"]).json(), list)
    mock.fault("metadata", None)
    assert http.get(mock.metadata_urls["oauth"]).json()["issuer"] == mock.issuer


def test_fault_drop(mock, http):
    mock.fault("token", "drop", count=1)
    with pytest.raises(requests.ConnectionError):
        http.post(mock.token_endpoint, data={"grant_type": TE})
    assert mock.count("token") == 1 and mock.requests[0].status is None
    assert http.post(mock.token_endpoint, data={"grant_type": TE}).status_code == 401


def test_fault_slow(mock, http):
    mock.slow_seconds = 0.3
    mock.fault("jwks", "slow")
    assert http.get(mock.jwks_uri).status_code == 200
    assert mock.requests[-1].fault == "slow"


def test_fault_hang_released(mock):
    mock.fault("introspection", "hang")
    out = {}

    def call():
        with requests.Session() as s:
            try:
                s.post(mock.introspection_endpoint, data={"token": "x"}, timeout=10)
                out["r"] = "answered"
            except requests.ConnectionError:
                out["r"] = "dropped"

    th = threading.Thread(target=call)
    t = time.monotonic()
    th.start()
    for _ in range(100):
        if mock.count("introspection"):
            break
        time.sleep(0.02)
    time.sleep(0.2)
    assert th.is_alive()
    mock.release()
    th.join(5)
    assert out["r"] == "dropped" and time.monotonic() - t < 5


def test_hang_does_not_block_stop():
    m = MockAuthorizationServer().start()
    m.fault("jwks", "hang")
    errs = []

    def call():
        try:
            with requests.Session() as s:
                s.get(m.jwks_uri, timeout=10)
        except requests.RequestException as e:
            errs.append(e)

    th = threading.Thread(target=call)
    th.start()
    while not m.count("jwks"):
        time.sleep(0.02)
    t = time.monotonic()
    m.stop()
    th.join(5)
    assert time.monotonic() - t < 3 and errs and not th.is_alive()


def test_fault_validation(mock):
    with pytest.raises(ValueError):
        mock.fault("nope", "500")
    with pytest.raises(ValueError):
        mock.fault("jwks", "explode")


# ------------------------------------------------------------------ TLS and mTLS
def test_tls_listener_and_tls_client_auth(tmp_path):
    with MockAuthorizationServer(tls=True, issuer_path="/t") as m, requests.Session() as s:
        ca = tmp_path / "ca.pem"
        ca.write_text(m.ca_pem)
        assert m.issuer.startswith("https://127.0.0.1:")
        assert s.get(m.metadata_urls["oauth"], verify=str(ca)).json()["issuer"] == m.issuer
        with pytest.raises(requests.exceptions.SSLError):
            s.get(m.jwks_uri.replace("127.0.0.1", "localhost"), verify=True)
        assert s.get(m.jwks_uri.replace("127.0.0.1", "localhost"), verify=str(ca)).status_code == 200

        cert, key = m.issue_client_cert("gw")
        (tmp_path / "c.pem").write_text(cert)
        (tmp_path / "c.key").write_text(key)
        wrong_cert, wrong_key = m.issue_client_cert("other")
        (tmp_path / "w.pem").write_text(wrong_cert)
        (tmp_path / "w.key").write_text(wrong_key)
        m.add_client("gw", "tls_client_auth", cert_pem=cert)
        url = m.mtls_introspection_endpoint
        assert url.startswith(f"https://127.0.0.1:{m.mtls_port}/t/")
        r = s.post(
            url,
            data={"token": m.mint(), "client_id": "gw"},
            cert=(str(tmp_path / "c.pem"), str(tmp_path / "c.key")),
            verify=str(ca),
        )
        assert r.status_code == 200 and r.json()["active"] is True
        rec = m.requests[-1]
        assert rec.listener == "mtls" and rec.auth_method_used == "tls_client_auth" and rec.peer_cert_der
        assert rec.peer_cert_der == K_cert_der(cert)
        with requests.Session() as s2:
            r = s2.post(
                url,
                data={"token": "x", "client_id": "gw"},
                cert=(str(tmp_path / "w.pem"), str(tmp_path / "w.key")),
                verify=str(ca),
            )
            assert r.status_code == 401
        with requests.Session() as s3:
            assert s3.post(url, data={"token": "x", "client_id": "gw"}, verify=str(ca)).status_code == 401
            # the main listener never sees a client certificate
            assert (
                s3.post(m.introspection_endpoint, data={"token": "x", "client_id": "gw"}, verify=str(ca)).status_code
                == 401
            )
        assert m.errors == []


def K_cert_der(pem):
    from tests.harness.mock_as.tls import cert_der

    return cert_der(pem)


def test_self_signed_tls_client_auth(mock, http, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(mock.ca_pem)
    cert, key = mock.issue_client_cert("self", self_signed=True)
    (tmp_path / "s.pem").write_text(cert)
    (tmp_path / "s.key").write_text(key)
    mock.add_client("self", "self_signed_tls_client_auth", cert_pem=cert)  # after start: trusted from now on
    r = http.post(
        mock.mtls_introspection_endpoint,
        data={"token": mock.issue_opaque(), "client_id": "self"},
        cert=(str(tmp_path / "s.pem"), str(tmp_path / "s.key")),
        verify=str(ca),
    )
    assert r.status_code == 200 and r.json()["active"] is True
    assert mock.requests[-1].auth_method_used == "self_signed_tls_client_auth"
    # an unregistered self-signed certificate fails the handshake
    cert2, key2 = mock.issue_client_cert("stranger", self_signed=True)
    (tmp_path / "x.pem").write_text(cert2)
    (tmp_path / "x.key").write_text(key2)
    with requests.Session() as s, pytest.raises(requests.exceptions.RequestException):
        s.post(
            mock.mtls_introspection_endpoint,
            data={"token": "x", "client_id": "self"},
            cert=(str(tmp_path / "x.pem"), str(tmp_path / "x.key")),
            verify=str(ca),
        )


# ------------------------------------------------------------------ HTTP behaviour
def test_keepalive_and_content_length(mock):
    conn = httpclient.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/realms/test/jwks")
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200 and int(r.getheader("Content-Length", "")) == len(body)
            assert r.version == 11 and not r.will_close
        conn.request("GET", "/nothing")
        r = conn.getresponse()
        assert r.status == 404 and int(r.getheader("Content-Length", "")) == len(r.read())
    finally:
        conn.close()


def test_concurrent_requests(mock):
    mock.client_checks_enabled = False
    tok = mock.issue_opaque()

    def one(_):
        with requests.Session() as s:
            return s.post(mock.introspection_endpoint, data={"token": tok}).json()["active"]

    with ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(48)))
    assert mock.count("introspection") == 48
    mock.reset_records()
    assert mock.requests == [] and mock.count("introspection") == 0


def test_dev_endpoints_off_by_default(mock, http):
    assert http.post(mock.url("/_mint"), json={}).status_code == 404
    assert http.post(mock.url("/_opaque"), json={}).status_code == 404
    assert http.get(mock.url("/_stats")).status_code == 404


def test_stats_endpoint_reads_the_counts_and_changes_nothing(mock, http):
    mock.dev_endpoints = True
    empty = {"metadata": 0, "jwks": 0, "introspection": 0, "token": 0}
    assert http.get(mock.url("/_stats")).json() == empty
    tok = mock.issue_opaque()
    mock.add_client("c", "client_secret_basic", secret="s")
    for _ in range(3):
        assert _introspect(http, mock, {"token": tok}, auth=("c", "s")).json()["active"] is True
    http.get(mock.metadata_urls["oauth"])
    stats = http.get(mock.url("/_stats"))
    assert stats.status_code == 200 and stats.headers["cache-control"] == "no-store"
    assert stats.json() == {"metadata": 1, "jwks": 0, "introspection": 3, "token": 0}
    assert stats.json()["introspection"] == mock.count("introspection") == 3  # reading counts nothing
    for method in ("POST", "PUT", "DELETE"):
        refused = http.request(method, mock.url("/_stats"), json={})
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert http.get(mock.url("/_stats")).json()["introspection"] == 3
    mock.reset_records()
    assert http.get(mock.url("/_stats")).json() == empty


def test_cli(tmp_path):
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.mock_as", "--port", "0", "--mtls-port", "0", "--issuer-path", "/cli"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert p.stdout is not None
    try:
        info = json.loads(p.stdout.readline())
        assert info["issuer"].endswith("/cli") and info["clients"][0]["client_id"] == "mcp-gateway"
        with requests.Session() as s:
            tok = s.post(info["dev_endpoints"][0] + "?alg=ES256", json={"sub": "cli-user"}).json()["access_token"]
            assert jwt.get_unverified_header(tok)["alg"] == "ES256"
            jwk = next(
                k for k in s.get(info["jwks_uri"]).json()["keys"] if k["kid"] == jwt.get_unverified_header(tok)["kid"]
            )
            assert jwt.decode(tok, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=RESOURCE)["sub"] == "cli-user"
            op = s.post(info["dev_endpoints"][1], json={"scope": "x"}).json()["access_token"]
            c = info["clients"][0]
            d = s.post(
                info["introspection_endpoint"], data={"token": op}, auth=(c["client_id"], c["client_secret"])
            ).json()
            assert d["active"] is True and d["scope"] == "x"
            assert s.get(info["dev_endpoints"][2]).json()["introspection"] == 1
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()
    assert p.returncode == 0
