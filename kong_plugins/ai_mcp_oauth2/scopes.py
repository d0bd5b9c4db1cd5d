"""Which scopes a request needs, and whether its token grants them (behaviour §12).

- **Granted scopes** (RFC 8693 §4.2, RFC 9068 §2.2.3, RFC 7662 §2.2): the claim at ``scopes_claim``
  (default ``["scope"]``) as a space-separated string or an array of strings; any other type grants
  nothing. With the default path and no ``scope`` claim, ``scp`` (Entra ID, Okta) is read instead,
  never both and never for another path. Introspection results are read the same way.
- **Required scopes**, with Kong openid-connect's meaning of ``scopes_required``: each entry is a
  space-separated set that must all be granted; the entries are alternatives (``["a b", "c"]`` is
  (a and b) or c). The route's ``scopes_required`` applies to every request; the most specific
  ``mcp_operations`` entry for the request's operation (method and exact name, then method and
  prefix, longest first, then method alone) adds its own, which must hold as well. A batch needs
  what each of its members needs.
- **Hierarchy** (MCP 2026-07-28 ``basic/authorization``: "servers MUST account for scope
  hierarchies, where a broader scope implies narrower ones"): ``scope_hierarchy`` entries; holding
  a scope counts as holding every scope it implies, transitively, never the reverse. A cycle is a
  configuration error.
- **Challenge** (MCP 2026-07-28: a ``403`` with ``error="insufficient_scope"`` and every scope the
  current operation needs in a single challenge; RFC 6750 §3.1): the route's set plus the
  operation's set, for alternatives the first in configuration order. ``offline_access`` is never
  advertised (MCP 2026-07-28: servers SHOULD NOT include it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from . import claims
from .errors import ConfigError, InsufficientScope
from .mcp import NAME_PARAMS, Operation
from .schema import Config

NEVER_ADVERTISED = "offline_access"
RESOURCE_READ = "resources/read"  # the method whose name is a URI, with many spellings

Alternatives = tuple[frozenset[str], ...]
"""A requirement: one of these sets must be granted whole (empty: no requirement)."""


def granted(token_claims: Mapping[str, Any], scopes_claim: Sequence[str]) -> frozenset[str]:
    """The scopes the token (or introspection result) grants, read at ``scopes_claim``."""
    value = claims.resolve(token_claims, scopes_claim)
    if value is None and tuple(scopes_claim) == ("scope",):
        value = token_claims.get("scp")
    if isinstance(value, str):
        return frozenset(scope for scope in value.split(" ") if scope)
    if isinstance(value, list) and all(isinstance(scope, str) for scope in value):
        return frozenset(scope for scope in value if scope)
    return frozenset()


def alternatives(entries: Sequence[str]) -> Alternatives:
    """``scopes_required`` entries as sets, in configuration order."""
    return tuple(frozenset(entry.split(" ")) for entry in entries)


def implied(hierarchy: Sequence[Any]) -> dict[str, frozenset[str]]:
    """Each scope of ``scope_hierarchy`` with every scope it implies, transitively; a cycle is a
    ConfigError naming ``scope_hierarchy``. Iterative, so a long chain is no deeper than a short one."""
    direct: dict[str, list[str]] = {}
    for entry in hierarchy:
        direct.setdefault(entry.scope, []).extend(entry.implies)
    closure: dict[str, frozenset[str]] = {}
    for root in direct:
        if root in closure:
            continue
        path: list[str] = [root]  # the scopes being closed, each implying the next
        on_path = {root}
        pending: list[list[str]] = [list(direct.get(root, ()))]
        while path:
            if pending[-1]:
                narrower = pending[-1].pop()
                if narrower in on_path:
                    raise ConfigError("scope_hierarchy", f"scope {narrower} implies itself (a cycle)")
                if narrower not in closure:
                    path.append(narrower)
                    on_path.add(narrower)
                    pending.append(list(direct.get(narrower, ())))
                continue
            scope = path.pop()
            on_path.discard(scope)
            pending.pop()
            out: set[str] = set()
            for narrower in direct.get(scope, ()):
                out.add(narrower)
                out |= closure.get(narrower, frozenset())
            closure[scope] = frozenset(out)
    return closure


class ScopeRules:
    """The scope rules of one plugin instance, prepared once from its config."""

    def __init__(self, config: Config) -> None:
        self.scopes_claim = config.scopes_claim
        self.route_entries: tuple[str, ...] = config.scopes_required
        self.route = alternatives(config.scopes_required)
        self.implied = implied(config.scope_hierarchy)
        self.exact: dict[tuple[str, str], tuple[str, ...]] = {}
        # prefixes by method, then by length (longest first): a name is looked up once per length
        self.prefixes: dict[str, dict[int, dict[str, tuple[str, ...]]]] = {}
        self.by_method: dict[str, tuple[str, ...]] = {}
        owners: dict[tuple[str, Any], int] = {}  # which entry each key belongs to
        for i, entry in enumerate(config.mcp_operations, 1):
            where = f"mcp_operations[{i}]"
            if entry.name is not None and entry.method not in NAME_PARAMS:
                raise ConfigError(
                    where + ".name", "only " + ", ".join(NAME_PARAMS) + " name their tool, prompt or resource"
                )
            if entry.name is None:
                tables: list[tuple[str, dict[Any, Any], Any]] = [("method", self.by_method, entry.method)]
            elif entry.name.endswith("*"):
                tables = [
                    ("prefix", self.prefixes.setdefault(entry.method, {}).setdefault(len(name), {}), name)
                    for name in _spellings(entry.method, entry.name[:-1])
                ]
            else:
                tables = [("exact", self.exact, (entry.method, name)) for name in _spellings(entry.method, entry.name)]
            for kind, table, key in tables:
                owner = owners.setdefault((kind, (entry.method, key)), i)
                if owner != i:
                    raise ConfigError(where, f"mcp_operations[{owner}] names the same method and name")
                table[key] = entry.scopes_required
        self.prefixes = {
            method: dict(sorted(by_length.items(), reverse=True)) for method, by_length in self.prefixes.items()
        }
        self.sets: dict[tuple[str, ...], Alternatives] = {
            entries: alternatives(entries)
            for entries in (self.route_entries, *(entry.scopes_required for entry in config.mcp_operations))
        }
        self.uses_operations = bool(config.mcp_operations)
        self.active = bool(self.route or self.uses_operations)

    def operation_entries(self, operation: Operation | None) -> tuple[str, ...]:
        """The ``scopes_required`` of the most specific ``mcp_operations`` entry for ``operation``."""
        if operation is None:
            return ()
        name = operation.name
        if name is not None:
            found = self.exact.get((operation.method, name))
            if found is not None:
                return found
            for length, by_prefix in self.prefixes.get(operation.method, {}).items():
                if length <= len(name) and (found := by_prefix.get(name[:length])) is not None:
                    return found
        return self.by_method.get(operation.method, ())

    def needed(self, operations: Sequence[Operation | None]) -> list[tuple[str, ...]]:
        """The requirements a request with these operations must meet: the route's, then each
        operation's, each distinct operation looked up once. A resource URI is also looked up
        percent-decoded (RFC 3986 §2.1): MCP servers' URI templates match the decoded form, so
        ``secret%73`` must need what ``secrets`` needs."""
        found: dict[tuple[str, ...], None] = {self.route_entries: None} if self.route_entries else {}
        for operation in dict.fromkeys(operations):
            for candidate in _forms(operation):
                entries = self.operation_entries(candidate)
                if entries:
                    found.setdefault(entries)
        return list(found)

    def expand(self, scopes: frozenset[str]) -> frozenset[str]:
        """The granted scopes with every scope they imply."""
        if not self.implied:
            return scopes
        out = set(scopes)
        for scope in scopes:
            out |= self.implied.get(scope, frozenset())
        return frozenset(out)

    def check(self, token_claims: Mapping[str, Any], operations: Sequence[Operation | None]) -> None:
        """Raise :class:`~.errors.InsufficientScope` unless the token grants what the request needs."""
        needed = self.needed(operations)
        if not needed:
            return
        held = self.expand(granted(token_claims, self.scopes_claim))
        for entries in needed:
            if not any(alternative <= held for alternative in self.sets[entries]):
                raise InsufficientScope(challenged(needed))

    def hint(self, operation: Operation | None) -> tuple[str, ...]:
        """The scopes a ``401`` challenge names for a request that has no token yet."""
        return challenged(self.needed([operation]))


def challenged(needed: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Every scope of each requirement's first alternative that names one a client may ask for (not
    ``offline_access``), in configuration order, once each."""
    out: dict[str, None] = {}
    for entries in needed:
        for alternative in entries:
            named = [scope for scope in alternative.split(" ") if scope != NEVER_ADVERTISED]
            if named:
                out.update(dict.fromkeys(named))
                break
    return tuple(out)


def _forms(operation: Operation | None) -> list[Operation | None]:
    """The operation, and for ``resources/read`` every spelling of its URI (:func:`uri_forms`): each
    must be allowed. Tools and prompts are looked up by their exact name, so they have one."""
    if operation is None or operation.name is None or operation.method != RESOURCE_READ:
        return [operation]
    forms: list[Operation | None] = [operation]
    return forms + [Operation(operation.method, form) for form in uri_forms(operation.name)[1:]]


def uri_forms(uri: str) -> list[str]:
    """The spellings under which an MCP server may read the resource ``uri`` names, ``uri`` first:
    percent-decoded (RFC 3986 §2.1), without dot segments (§5.2.4), without query and fragment
    (URI templates such as ``logs://{service}{?level}`` match those off), and their combinations."""
    out = dict.fromkeys([uri])
    for base in (uri, unquote(uri)):
        for form in (base, _without_dot_segments(base)):
            out.setdefault(form)
            out.setdefault(_without_query(form))
    return list(out)


def _spellings(method: str, name: str) -> list[str]:
    """The keys a rule's name is registered under: as written, and for ``resources/read`` also its
    most normal form (decoded, without dot segments, query and fragment), which every spelling of a
    request's URI reaches through :func:`uri_forms`."""
    if method != RESOURCE_READ:
        return [name]
    return list(dict.fromkeys([name, _without_query(_without_dot_segments(unquote(name)))]))


def _without_query(uri: str) -> str:
    """``uri`` without its query and fragment."""
    cut = min((i for i in (uri.find("?"), uri.find("#")) if i >= 0), default=len(uri))
    return uri[:cut]


def _without_dot_segments(uri: str) -> str:
    """RFC 3986 §5.2.4 ``remove_dot_segments`` applied to the path of ``uri`` (scheme and authority kept)."""
    parts = urlsplit(uri)
    if not parts.path:
        return uri
    output: list[str] = []
    for segment in parts.path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    path = "/".join(output)
    if parts.path.endswith(("/.", "/..")):
        path += "/"
    return urlunsplit(parts._replace(path=path))


def advertised(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes a challenge or the metadata document may name: all but ``offline_access``."""
    return tuple(scope for scope in scopes if scope != NEVER_ADVERTISED)
