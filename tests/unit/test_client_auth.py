"""RFC 8705 §2 TLS client authentication: the private key is held in memory files, never on disk."""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

import pytest

from kong_plugins.ai_mcp_oauth2.client_auth import ClientAuth
from kong_plugins.ai_mcp_oauth2.config import parse_config
from kong_plugins.ai_mcp_oauth2.errors import ConfigError
from kong_plugins.ai_mcp_oauth2.gateway import Gateway
from tests.harness.disk import files_containing

from .conftest import kong_config
from .fakes import Clock, make_client_cert

CERT, KEY = make_client_cert()
KEY_BODY = KEY.splitlines()[1].encode()  # 64 characters of this key's base64, found nowhere else


def tls_config(**overrides: Any) -> dict[str, Any]:
    return kong_config(
        **{
            "introspection_endpoint": "https://as.example.com/introspect",
            "client_id": "gw",
            "client_auth": "tls_client_auth",
            "tls_client_auth_cert": CERT,
            "tls_client_auth_key": KEY,
            **overrides,
        }
    )


def client_of(gateway: Gateway) -> ClientAuth:
    client = gateway.verifier.introspector.client  # type: ignore[union-attr]
    assert isinstance(client, ClientAuth)
    return client


def test_the_key_is_read_from_memory_files_and_no_file_under_the_temp_dir_holds_it() -> None:
    """It used to be written to a temporary directory that survived SIGTERM and config changes."""
    gateway = Gateway(tls_config())
    assert gateway.error is None
    assert files_containing(KEY_BODY, tempfile.gettempdir()) == []
    cert_path, key_path = client_of(gateway).cert or ("", "")
    assert cert_path.startswith("/proc/self/fd/") and key_path.startswith("/proc/self/fd/")
    assert os.readlink(cert_path).startswith("/memfd:ai-mcp-oauth2-client.crt")
    assert os.readlink(key_path).startswith("/memfd:ai-mcp-oauth2-client.key")
    for _ in range(2):  # each open starts at offset 0, as each new TLS connection needs
        with open(key_path) as key, open(cert_path) as cert:
            assert (key.read(), cert.read()) == (KEY, CERT)
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH).load_cert_chain(cert_path, key_path)
    gateway.close()


def test_close_frees_the_memory_files_and_is_idempotent() -> None:
    auth = ClientAuth(parse_config(tls_config()), Clock())
    paths = auth.cert or ("", "")
    auth.close()
    auth.close()
    for path in paths:  # the descriptor is closed (its number may only have been reused by another file)
        assert not os.path.exists(path) or not os.readlink(path).startswith("/memfd:ai-mcp-oauth2-client")


def test_gateway_close_closes_the_verifiers_and_the_exchangers_key_files() -> None:
    exchange = {"enabled": True, "token_endpoint": "https://as.example.com/token", "client_auth": "inherit"}
    gateway = Gateway(tls_config(token_exchange=exchange, passthrough_credentials=True))
    assert gateway.error is None
    exchanger_client = gateway.exchanger.client  # type: ignore[union-attr]
    paths = [*(client_of(gateway).cert or ()), *(exchanger_client.cert or ())]
    assert len(set(paths)) == 4 and all(os.path.exists(path) for path in paths)
    gateway.close()
    gateway.close()
    assert not [p for p in paths if os.path.exists(p) and os.readlink(p).startswith("/memfd:ai-mcp-oauth2-client")]
    Gateway({"resource": 1}).close()  # a failed instance has nothing to close


def test_without_memfd_create_the_config_fails_closed_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    gateway = Gateway(tls_config())
    assert isinstance(gateway.error, ConfigError) and gateway.error.field == "tls_client_auth_key"
    assert "never written to disk" in gateway.error.message
    assert files_containing(KEY_BODY, tempfile.gettempdir()) == []


def test_a_failing_memfd_create_fails_closed_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(name: str, flags: int = 0) -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "memfd_create", no_memory)
    with pytest.raises(ConfigError) as info:
        ClientAuth(parse_config(tls_config()), Clock())
    assert info.value.field == "tls_client_auth_key" and "OSError" in info.value.message
