"""Mock OAuth 2 authorization server for the integration tests (a real HTTP server on 127.0.0.1).

    from tests.harness.mock_as import MockAuthorizationServer
    with MockAuthorizationServer(issuer_path="/realms/a", tls=False, resource="http://localhost:8000/mcp") as mock:
        token = mock.mint({"scope": "mcp:tools"}, alg="ES256")

Lifecycle / addresses
    MockAuthorizationServer(issuer_path="", port=0, tls=False, resource="http://localhost:8000/mcp",
                            *, host="127.0.0.1", mtls_port=0, public_base=None, mtls_public_base=None)
    start() / stop() / context manager. Two listeners: the main one (http, or https when tls=True) and an
    https "mtls" listener that asks for (optional) client certificates, serving the same paths.
    issuer                      f"{scheme}://127.0.0.1:{port}{issuer_path}" (no trailing slash); public_base
                                replaces "{scheme}://127.0.0.1:{port}" (for containers)
    url(path), mtls_url(path)   absolute URLs on the main / mtls listener
    jwks_uri, introspection_endpoint, token_endpoint   {issuer}/jwks, /introspect, /token
    mtls_introspection_endpoint, mtls_token_endpoint   same paths on the mtls listener
    ca_pem                      PEM of the self-signed CA that issued the server certificate (valid for
                                127.0.0.1 and localhost); the mtls listener always uses it, the main one when tls
    issue_client_cert(cn="mcp-client", self_signed=False) -> (cert_pem, key_pem)   client certs for mTLS
    port, mtls_port, metadata_urls (dict of the three discovery URLs), errors (internal mock errors; keep empty)

Discovery (same document on every path; GET)
    /.well-known/oauth-authorization-server{issuer_path}        switch discovery["oauth"]
    /.well-known/openid-configuration{issuer_path}              switch discovery["openid_inserted"]
    {issuer_path}/.well-known/openid-configuration              switch discovery["openid_appended"]
    (with issuer_path "" the last two are one URL, served while either switch is on). False -> 404.
    metadata_issuer_override: str | None   a different "issuer" value (RFC 8414 §3.3 / OIDC §4.3 tests)
    metadata_extra: dict                   merged over the document (e.g. point jwks_uri elsewhere)
    metadata() -> dict                     the document as served

Keys and tokens
    keys -> list[Key]        Key(.kid, .alg, .private_key, .public_jwk, .private_jwk, .published, .public_key);
                             by default one each of RS256, PS256, ES256, EdDSA (Ed25519); kids unique
    add_key(alg, kid=None, publish=True, jwk_alg=True) -> Key   also RS384/RS512/PS384/PS512/ES384/ES512;
                             jwk_alg=False omits "alg" from the published JWK
    remove_key(kid)          gone from the JWKS and from the keys the mock itself accepts
    rotate(alg) -> Key       new key published, older keys of that alg unpublished (still usable to mint)
    current_key(alg), key(kid), jwks() -> dict
    jwks_extra: list[dict]   raw JWKs appended to the published set
    mint(claims=None, alg="RS256", kid=None, key=None, headers=None, omit=()) -> str
        default claims iss, aud=resource, sub="user-1", client_id="mcp-client", scope="mcp:tools", iat, exp=iat+300,
        jti=uuid4; `claims` overrides/extends (a None value removes the claim); `omit` removes defaults.
        Header {"alg", "typ": "at+jwt", "kid"}; `headers` merges over it (a None value removes the entry; a
        different "alg" is written as given while the signature still uses the key's alg). kid: the current
        (newest published) key of alg; a kid of a held key selects that key; an unknown kid is only written
        into the header. key= signs with that Key.
    mint_unsigned(claims=None, header=None) -> str               alg "none", empty signature
    mint_hmac(secret, claims=None, alg="HS256", kid=None, headers=None) -> str   any bytes/str secret (e.g. a PEM)
    issue_opaque(claims=None, active=True) -> str   introspects as {"active": true, defaults..., "token_type":
        "Bearer", **claims}; active=False -> {"active": false}; unknown tokens -> {"active": false}
    revoke(token)            opaque or JWT: inactive from now on
    validate_token(token) -> dict | None   claims of an active token of this server (opaque or JWT signed by a
                             held key, unexpired, iss == issuer)

Clients (introspection and token endpoints; failure -> 401 {"error": "invalid_client"} + WWW-Authenticate)
    add_client(client_id, method, secret=None, public_jwk=None, cert_pem=None)
        method: client_secret_basic | client_secret_post | client_secret_jwt | private_key_jwt |
                tls_client_auth | self_signed_tls_client_auth | none          (rules: clientauth.py)
        several methods in one request -> 400 invalid_request; tls_* only succeed on the mtls listener.
    client_checks_enabled = True   False: any caller accepted (authentication still attempted and recorded)

Introspection (RFC 7662): POST form, token required (once), token_type_hint optional, other args recorded;
    wrong content-type / missing token -> 400 invalid_request; other methods -> 405.
Token exchange (RFC 8693) at token_endpoint: see MockAuthorizationServer._token. Knobs:
    exchange_expires_in = 300 (None -> no expires_in), exchange_invalid_error = "invalid_grant" (error for an
    invalid subject/actor token; RFC 8693 §2.2.2 says "invalid_request"), exchange_refuse: str | None,
    exchange_answer_extra: dict = {} (merged over the answer; a None value removes the member, e.g.
    {"issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"} or {"token_type": None}).
    The issued token: RS256, sub of the subject, aud = first audience, else first resource, else `resource`,
    scope = requested scope or the subject's, "act": {"sub": actor's sub} (nesting the subject's act).
    The answer: access_token, issued_token_type = the requested type (access token when none was requested),
    token_type "Bearer", expires_in, scope.

Faults (endpoint in "metadata", "jwks", "introspection", "token")
    fault(endpoint, mode, count=None)   modes None | "500" | "503" | "404" | "401" | "hang" | "drop" |
        "garbage" | "wrong_json" | "slow" (sleeps slow_seconds = 2.0); count: next N requests only
    release()                           wakes hanging requests (they then drop the connection); hangs end by
                                        themselves after 30 s and on stop()

Records
    requests -> list[Recorded(endpoint, method, path, headers, form, client_id_authenticated, auth_method_used,
        peer_cert_der, query, body, listener, fault, status, error, auth_error)]
    count(endpoint) -> int; reset_records()

Standalone: python -m tests.harness.mock_as --port 9090 [--issuer-path /x] [--resource URL] [--host 127.0.0.1]
    (see __main__.py) enables dev_endpoints: POST /_mint[?alg=ES256] and POST /_opaque, JSON claims ->
    {"access_token": ...}; GET /_stats -> {"metadata": n, "jwks": n, "introspection": n, "token": n}, the
    counts of count(endpoint) (read-only; scripts/cluster-check reads it). dev_endpoints is False on the class.
"""

from .keys import Key
from .mock import MockAuthorizationServer
from .state import Recorded

__all__ = ["MockAuthorizationServer", "Key", "Recorded"]
