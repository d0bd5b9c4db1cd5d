"""One request in, one decision out: the plugin's access-phase logic, free of kong-pdk.

The gateway asks its :class:`RequestView` only for what a decision needs, because each question
is a PDK round trip over the plugin-server socket (behaviour §11): the headers and the path
always, the method only on a metadata path, the forwarded origin only when it must build a
challenge, a consumer only when ``consumer_claim`` is set. So a metadata request costs three
round trips and a rejected one at most five, or six when the consumer was looked up before the
refusal (the exchange endpoint refusing the token, a malformed actor-token header). An accepted
one is applied by ``plugin.py`` with one ``set_headers``, a ``clear_header`` per removed header
and one ``authenticate``.

Fail closed (behaviour §2): a bad config answers every request with 500 and a log line naming
the field; no request is let through unless the :class:`TokenVerifier` accepted its token.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import bearer, claims, cluster_cache, dpop, mcp, metadata, metrics, scopes
from .budget import request_budget
from .cluster_cache import ClusterCache
from .config import parse_config
from .errors import (
    JSON,
    ConfigError,
    Forbidden,
    InvalidRequest,
    InvalidToken,
    LengthRequired,
    MethodNotAllowed,
    Misconfigured,
    MissingToken,
    PayloadTooLarge,
    Refusal,
    Response,
)
from .http import HttpClient
from .schema import Config
from .token_exchange import TokenExchanger
from .tokens import CachingTokenVerifier


class RequestView(Protocol):
    """What the gateway may ask about the current request (each call may cost a round trip)."""

    def headers(self) -> Mapping[str, Sequence[str]]: ...

    def path(self) -> str: ...

    def method(self) -> str: ...

    def forwarded_origin(self) -> tuple[object, object, object]:
        """Kong's forwarded scheme, host and port."""
        ...

    def log(self, level: str, message: str) -> None: ...

    def load_consumer(self, value: str, by_username: bool) -> Mapping[str, Any] | None:
        """``kong.client.load_consumer``: by id (a UUID), then by username when allowed."""
        ...

    def raw_body(self, file_limit: int | None) -> bytes | None:
        """``kong.request.get_raw_body``: the request body, or None when Kong cannot return it. Kong
        keeps a body in memory up to ``nginx_http_client_body_buffer_size``; past that it reads the
        file nginx buffered it to only up to ``file_limit`` bytes (Kong 3.8+), never without one."""
        ...


@dataclass(frozen=True, slots=True)
class LetThrough:
    """The decision to let the request through, after these changes to the upstream request and
    Kong's identity (the other decision is a :class:`~.errors.Response` the plugin sends itself)."""

    set_headers: Mapping[str, str] = field(default_factory=dict)
    clear_headers: tuple[str, ...] = ()
    consumer: Mapping[str, Any] | None = None
    credential: Mapping[str, str] | None = None


Decision = Response | LetThrough


class TokenVerifier(Protocol):
    """Decides whether a bearer token is acceptable; raises a :class:`Refusal` if not."""

    def verify(self, token: str) -> Mapping[str, Any]:
        """Return the token's claims, or raise InvalidToken (401) or Unavailable (503)."""
        ...


class Exchanger(Protocol):
    """Trades a validated token for the upstream's (RFC 8693); raises a :class:`Refusal` if it cannot."""

    def exchange(self, subject_token: str, actor_token: str | None) -> str: ...


Services = tuple[TokenVerifier, Exchanger | None]


def default_services(config: Config, shared: ClusterCache | None = None) -> Services:
    """The instance's verifier and exchanger, sharing one outbound HTTP session and the instance's
    cluster cache, if it has one (behaviour §13)."""
    http = HttpClient(config)
    exchanger = TokenExchanger(config, http, time.time, shared) if config.token_exchange.enabled else None
    return CachingTokenVerifier(config, http, shared=shared), exchanger


_PREFIX = "ai-mcp-oauth2: "
MAX_HEADERS = 1000  # the most kong.request.get_headers() returns; plugin.py asks for that many
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Gateway:
    """The per-instance state and the decision for each request."""

    def __init__(self, raw_config: object, services: Callable[[Config], Services] | None = None) -> None:
        self.config: Config | None = None
        self.error: ConfigError | None = None
        self.metadata_body = b""
        self.metadata_paths: frozenset[str] = frozenset()
        self.header_claims: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self.verifier: TokenVerifier | None = None
        self.exchanger: Exchanger | None = None
        self.scope_rules: scopes.ScopeRules | None = None
        self.proofs: dpop.ProofChecker | None = None
        self.cluster: ClusterCache | None = None  # one per instance (it closes it): introspection, exchange, DPoP
        try:
            self.config = parse_config(raw_config)
            self.scope_rules = scopes.ScopeRules(self.config)
            self.metadata_body = metadata.document(self.config)
            _, self.metadata_paths = metadata.paths(self.config)
            self.header_claims = header_claims(self.config)
            if cluster_cache.shared_items(self.config):
                self.cluster = ClusterCache(self.config)  # no connection until it is used
            make = services or functools.partial(default_services, shared=self.cluster)
            self.verifier, self.exchanger = make(self.config)
            if self.config.proof_of_possession_dpop != "off":
                # with a cluster cache, DPoP replays always go through it (cluster_cache.shared_items)
                self.proofs = dpop.ProofChecker(self.config, time.time, self.cluster, dpop.NODE_MEMORY)
        except ConfigError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - an unforeseen config still fails closed, never a crash
            self.error = ConfigError("config", f"could not be read ({type(exc).__name__})")

    def close(self) -> None:
        """Release what the instance holds (the mTLS key's memory files, pooled connections) when
        Kong closes it. Idempotent; call it only when no request is being handled by this instance."""
        for service in (self.verifier, self.exchanger, self.cluster):
            close = getattr(service, "close", None)
            if callable(close):
                close()

    def handle(self, request: RequestView) -> Decision:
        config, rules = self.config, self.scope_rules
        if config is None or self.verifier is None or rules is None:
            assert self.error is not None
            request.log("err", f"{_PREFIX}invalid configuration, refusing all requests: {self.error}")
            return render(Misconfigured(), None, request)
        headers = request.headers()
        path = request.path()
        try:
            if sum(len(values) for values in headers.values()) >= MAX_HEADERS:
                # Kong's get_headers() silently drops what is past its limit: a spoofed claim header,
                # a second Authorization or the Content-Length could hide there.
                raise InvalidRequest("The request has too many headers")
            if path in self.metadata_paths:
                answer = self._metadata(request, headers)
                metrics.sink.request("metadata", answer.status, "metadata")
                return answer
            check_body_size(headers, config.max_request_body_size)
            try:
                scheme, token = bearer.extract_credential(headers, dpop=self.proofs is not None)
            except MissingToken as missing:
                if rules.active:
                    missing.scopes = challenge_hint(rules, headers)
                raise
            proof = self._proof(request, headers, path, scheme, token) if self.proofs is not None else None
            with request_budget():  # outbound work must end before Kong gives up and proxies
                token_claims = self.verifier.verify(token)
                if self.proofs is not None:
                    check_binding(self.proofs, proof, token_claims)
                if rules.active:
                    rules.check(token_claims, request_operations(config, rules, request, headers))
                consumer = find_consumer(config, request, token_claims)
                upstream_token = None
                if self.exchanger is not None:
                    upstream_token = self.exchanger.exchange(token, actor_token(config, headers))
        except Refusal as refusal:
            if self.proofs is not None and refusal.scheme is None and scheme_of(headers) == "dpop":
                refusal.scheme = "DPoP"  # RFC 9449 §7.1: errors of a DPoP request go on the DPoP challenge
            return render(refusal, config, request)
        metrics.sink.request("accepted", 200, "accepted")
        return upstream_changes(config, headers, token_claims, upstream_token, consumer, self.header_claims)

    def _proof(
        self, request: RequestView, headers: Mapping[str, Sequence[str]], path: str, scheme: str, token: str
    ) -> dpop.Proof | None:
        """Behaviour §14: the request's DPoP proof, checked, when it uses the DPoP scheme; in
        ``strict`` mode a bearer token is refused before any work."""
        assert self.proofs is not None and self.config is not None
        if scheme != "dpop":
            if self.config.proof_of_possession_dpop == "strict":
                raise InvalidToken("This resource accepts DPoP-bound access tokens only")
            return None
        url = metadata.origin(self.config, *request.forwarded_origin()) + path
        return self.proofs.check(list(headers.get("dpop") or []), request.method(), url, token)

    def _metadata(self, request: RequestView, headers: Mapping[str, Sequence[str]]) -> Response:
        method = request.method()
        if method in ("GET", "HEAD"):
            return metadata.metadata_response(self.metadata_body)
        if method == "OPTIONS":
            requested = headers.get("access-control-request-headers") or []
            return metadata.preflight_response(", ".join(requested) if requested else None)
        raise MethodNotAllowed()


def scheme_of(headers: Mapping[str, Sequence[str]]) -> str:
    """The lower-case authentication scheme of the request's (first) ``Authorization`` header."""
    values = headers.get("authorization") or [""]
    return values[0].strip(" \t").partition(" ")[0].lower()


def check_binding(proofs: dpop.ProofChecker, proof: dpop.Proof | None, token_claims: Mapping[str, Any]) -> None:
    """RFC 9449 §6–§7: a DPoP request's token is bound to the proof's key (``cnf.jkt``), and then
    the proof is used up (its ``jti``); a token bound to a key never comes as ``Bearer`` (§7.2)."""
    jkt = dpop.bound_thumbprint(token_claims)
    if jkt == "":
        raise InvalidToken("The access token's cnf is malformed")
    if proof is None:
        if jkt is not None:
            raise InvalidToken("The access token is DPoP-bound: present it with the DPoP scheme and a proof")
        return
    if jkt is None:
        raise InvalidToken("The access token is not DPoP-bound")
    if jkt != proof.jkt:
        raise InvalidToken("The access token is bound to another key than the DPoP proof's")
    proofs.first_use(proof)


def has_body(headers: Mapping[str, Sequence[str]]) -> bool | None:
    """Whether the request carries a body: True with a ``Transfer-Encoding`` or a ``Content-Length``
    above 0 (``check_body_size`` has already refused an invalid one), False with ``Content-Length: 0``,
    None (unknown) with neither: an HTTP/2 or HTTP/3 request may send a body without announcing its
    length, so only reading it tells."""
    if headers.get("transfer-encoding"):
        return True
    lengths = headers.get("content-length") or []
    if lengths:
        return any(value.strip() not in ("", "0") for value in lengths)
    return None


def request_operations(
    config: Config, rules: scopes.ScopeRules, request: RequestView, headers: Mapping[str, Sequence[str]]
) -> list[mcp.Operation | None]:
    """Behaviour §12.3: the MCP operations a request performs, for rules that depend on them.

    Without ``mcp_operations``: none (no body is read). With ``mcp_trust_routing_headers`` and a
    request of MCP 2026-07-28 or later naming its operation in ``Mcp-Method``/``Mcp-Name``: that
    operation, at no round trip. A request with ``Content-Length: 0``: none. Otherwise the JSON-RPC
    body (an empty one names no operation), read with one round trip, held to
    ``max_request_body_size`` whatever the headers said, and checked against the routing headers
    when they are present (a mismatch is ``400`` with JSON-RPC error ``-32020``). A body Kong cannot
    hand over (larger than its client body buffer) is refused, never proxied.
    """
    if not rules.uses_operations:
        return [None]
    if config.mcp_trust_routing_headers:
        trusted = mcp.trusted_operation(headers)
        if trusted is not None:
            return [trusted]
    if has_body(headers) is False:
        return [None]
    raw = request.raw_body(config.max_request_body_size or None)
    if raw is None:
        raise PayloadTooLarge("The request body is larger than the gateway can inspect")
    if 0 < config.max_request_body_size < len(raw):
        raise PayloadTooLarge()
    if raw == b"":
        return [None]  # no body after all (a GET over HTTP/2): no operation
    message = mcp.read_message(raw)
    mcp.check_agreement(headers, message)
    return list(message.operations)


def challenge_hint(rules: scopes.ScopeRules, headers: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """Behaviour §12.4: the scopes a ``401`` for a request without a token names: those of the
    operation its ``Mcp-Method``/``Mcp-Name`` name (a hint: trusted or not, nothing is decided on
    it), or the route's for a request without a body; None (``scopes_supported``) otherwise, or when
    that set is empty. No body is read for a request without a token."""
    try:
        operation = mcp.header_operation(headers)
    except Refusal:
        operation = None  # garbled routing headers: no hint from them
    if operation is None and has_body(headers):
        return None  # a body that may name any operation: scopes_supported
    return rules.hint(operation) or None


def actor_token(config: Config, headers: Mapping[str, Sequence[str]]) -> str | None:
    """Behaviour §9: the actor token from its request header, or the static one from config.

    A header value that is not a well-formed token (RFC 6750 §2.1 ``b64token``, as for the bearer
    token: no spaces, no bytes outside ASCII) is the client's malformed request, 400
    ``invalid_request``; it is never sent to the token endpoint.
    """
    request = config.token_exchange.request
    if request.actor_token_source == "config":
        return request.actor_token
    if request.actor_token_source == "header" and request.actor_token_header:
        values = headers.get(request.actor_token_header.lower()) or []
        if not values or not values[0]:
            return None
        if not bearer.well_formed(values[0]):
            raise InvalidRequest("The actor token header is malformed")
        return values[0]
    return None


def find_consumer(config: Config, request: RequestView, token_claims: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Behaviour §10: the Kong consumer named by ``consumer_claim``, looked up by ``consumer_by``.

    One ``kong.client.load_consumer`` call at most: Kong's own lookup with ``search_by_username``
    tries the id (for a UUID) and then the username. The answer is accepted only if the field it
    matched is one ``consumer_by`` allows. ``custom_id`` has no PDK lookup and is skipped.
    """
    if not config.consumer_claim:
        return None
    value = claims.resolve(token_claims, config.consumer_claim)
    if not isinstance(value, str) or not claims.sendable(value):
        value = ""
    by_id = "id" in config.consumer_by and bool(_UUID.match(value))
    by_username = "username" in config.consumer_by and value != ""
    consumer = None
    if by_id or by_username:
        found = request.load_consumer(value, by_username)
        if isinstance(found, Mapping) and (
            (by_id and found.get("id") == value) or (by_username and found.get("username") == value)
        ):
            consumer = found
    if consumer is None and not config.consumer_optional:
        raise Forbidden()
    return consumer


def upstream_changes(
    config: Config,
    headers: Mapping[str, Sequence[str]],
    token_claims: Mapping[str, Any],
    upstream_token: str | None = None,
    consumer: Mapping[str, Any] | None = None,
    mapped: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
) -> LetThrough:
    """Behaviour §8–§10: what the upstream request and Kong's identity become.

    Like Kong's own authentication plugins, the upstream learns the identity Kong settled on from
    ``X-Consumer-ID``, ``X-Consumer-Custom-ID``, ``X-Consumer-Username`` and
    ``X-Credential-Identifier``; copies of those (and of ``X-Anonymous-Consumer`` and
    ``X-Consumer-Groups``) sent by the client are removed, since upstreams behind Kong trust them.

    A configured header is always overwritten when its claim is present (``set_headers``
    replaces every value); when the claim is absent, the header is removed only if the client
    sent it, so an honest request costs no extra round trip. ``Authorization`` is removed unless
    ``passthrough_credentials``, or carries the exchanged token; the actor-token header is removed.

    Underscore variants: with nginx's ``underscores_in_headers on``, a client's ``X_Email``
    reaches the upstream, and CGI/WSGI-style servers read it as ``X-Email`` (both become
    ``HTTP_X_EMAIL``). So every header the plugin controls also removes each client header whose
    name is the same once ``_`` and ``-`` are one character (:func:`_wsgi_name`), by the name
    the client sent: Kong's ``clear_header`` matches names case-insensitively but keeps ``_``
    and ``-`` apart, as does ``set_headers``.
    """
    sent = _client_names(headers)
    values: dict[str, str] = {}
    clear: list[str] = []

    def control(name: str, value: str | None) -> None:
        """Send ``name: value`` upstream (None: not at all), and no client copy of it in any spelling."""
        if value is not None:
            values[name] = value
        for client_name in sent.get(_wsgi_name(name), ()):
            if client_name != name.lower():
                clear.append(client_name)  # another spelling: set_headers would not replace it
            elif value is None:
                clear.append(name)  # the same name: set_headers replaces it when there is a value

    if mapped is None:
        mapped = header_claims(config)
    for header, path in mapped:
        control(header, claims.header_value(claims.resolve(token_claims, path)))
    actor_header = config.token_exchange.request.actor_token_header
    if actor_header:
        control(actor_header, None)
    if upstream_token is not None:
        values["Authorization"] = f"Bearer {upstream_token}"
    elif not config.passthrough_credentials:
        clear.append("Authorization")  # the credential itself; a name without "-" has no underscore variant
    if not config.passthrough_credentials and "dpop" in headers:
        clear.append("DPoP")  # the proof (behaviour §14.4): only when sent, no round trip otherwise
    credential_value = claims.resolve(token_claims, config.credential_claim) if config.credential_claim else None
    credential = None
    if isinstance(credential_value, (str, int)) and not isinstance(credential_value, bool) and credential_value != "":
        if claims.header_value(str(credential_value)) is not None:
            credential = {"id": str(credential_value)}
    identity = {
        "X-Consumer-ID": consumer.get("id") if consumer else None,
        "X-Consumer-Custom-ID": consumer.get("custom_id") if consumer else None,
        "X-Consumer-Username": consumer.get("username") if consumer else None,
        "X-Credential-Identifier": credential["id"] if credential else None,
        "X-Anonymous-Consumer": None,
        "X-Consumer-Groups": None,
    }
    configured = {_wsgi_name(header) for header, _ in mapped}
    for name, value in identity.items():
        if _wsgi_name(name) in configured:
            continue  # the operator's own mapping of that header wins
        control(name, claims.header_value(value) if isinstance(value, str) and value else None)
    return LetThrough(
        set_headers=values, clear_headers=tuple(dict.fromkeys(clear)), consumer=consumer, credential=credential
    )


def header_claims(config: Config) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Behaviour §8: each configured header and the path of its claim (``claim_to_header`` names a
    top-level claim, ``upstream_headers`` a path into nested objects)."""
    return tuple((m.header, (m.claim,)) for m in config.claim_to_header) + tuple(
        (m.header, m.path) for m in config.upstream_headers
    )


def _wsgi_name(name: str) -> str:
    """A header name as CGI/WSGI-style upstreams tell names apart: case-insensitive, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


def _client_names(headers: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The header names the client sent, grouped by :func:`_wsgi_name` (names are ASCII, RFC 9110
    §5.1; any other name could only match through Unicode case folding, which no server does)."""
    names: dict[str, list[str]] = {}
    for name in headers:
        if name.isascii():
            names.setdefault(_wsgi_name(name), []).append(name)
    return names


def check_body_size(headers: Mapping[str, Sequence[str]], limit: int) -> None:
    """Behaviour §4: refuse a body above ``max_request_body_size`` (0 = no limit) before token work.

    The size is the declared ``Content-Length``; a body of unknown length (``Transfer-Encoding``)
    could exceed the limit unseen, so it is refused with 411 while a limit is set.
    """
    if limit <= 0:
        return
    lengths = headers.get("content-length") or []
    if lengths:
        values = {v.strip() for v in lengths}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise InvalidRequest("The Content-Length header is invalid")
        if int(next(iter(values))) > limit:
            raise PayloadTooLarge()
    elif headers.get("transfer-encoding"):
        raise LengthRequired()


def render(refusal: Refusal, config: Config | None, request: RequestView | None) -> Response:
    """The one exit point: a refusal becomes status, headers and JSON body (behaviour §4), counted
    by its class (behaviour §11.5)."""
    metrics.sink.refused(refusal)
    headers = {"Content-Type": JSON, "Cache-Control": "no-store"}
    if refusal.challenges and config is not None and request is not None:
        origin = metadata.origin(config, *request.forwarded_origin())
        named = refusal.scopes if refusal.scopes is not None else config.scopes_supported
        headers["WWW-Authenticate"] = www_authenticate(
            config, refusal, origin + metadata.paths(config)[0], scopes.advertised(named)
        )
    headers.update(refusal.extra_headers())
    return Response(refusal.status, headers, refusal.body())


def www_authenticate(config: Config, refusal: Refusal, resource_metadata: str, named: Sequence[str]) -> str:
    """The challenges of a ``401``/``403``: ``Bearer`` (RFC 6750 §3) with DPoP off; ``DPoP``
    (RFC 9449 §7.1, with ``algs``) alone in ``strict`` mode; in ``optional`` mode ``DPoP`` then
    ``Bearer`` (DPoP first: some DPoP clients retry with a nonce only when the header starts with it).
    The refusal's error goes on the challenge of the scheme it concerns (behaviour §14.4)."""
    params = refusal.challenge_params()
    mode = config.proof_of_possession_dpop
    if mode == "off":
        return bearer.challenge(params, resource_metadata, named)
    on_dpop = mode == "strict" or refusal.scheme == "DPoP"
    algs = dpop.signing_algorithms()
    proof = bearer.challenge(params if on_dpop else [], resource_metadata, named, scheme="DPoP", algs=algs)
    if mode == "strict":
        return proof
    return proof + ", " + bearer.challenge([] if on_dpop else params, resource_metadata, named)
