"""python -m tests.harness.mock_as: run the mock authorization server standalone (docker-compose service)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .mock import MockAuthorizationServer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.mock_as", description=__doc__)
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--mtls-port", type=int, default=9443)
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 inside containers)")
    p.add_argument("--issuer-path", default="")
    p.add_argument("--resource", default="http://localhost:8000/mcp")
    p.add_argument("--tls", action="store_true", help="serve the main listener over https")
    p.add_argument("--public-base", default=None, help="scheme://host:port the clients use, e.g. http://mock-as:9090")
    p.add_argument("--mtls-public-base", default=None)
    p.add_argument("--client-id", default="mcp-gateway")
    p.add_argument("--client-secret", default="gateway-secret")
    a = p.parse_args(argv)
    mock = MockAuthorizationServer(
        a.issuer_path,
        a.port,
        a.tls,
        a.resource,
        host=a.host,
        mtls_port=a.mtls_port,
        public_base=a.public_base,
        mtls_public_base=a.mtls_public_base,
    )
    mock.dev_endpoints = True
    mock.add_client(a.client_id, "client_secret_basic", secret=a.client_secret)
    mock.add_client(a.client_id + "-post", "client_secret_post", secret=a.client_secret)
    mock.add_client(a.client_id + "-public", "none")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with mock:
        print(
            json.dumps(
                {
                    "issuer": mock.issuer,
                    "jwks_uri": mock.jwks_uri,
                    "introspection_endpoint": mock.introspection_endpoint,
                    "token_endpoint": mock.token_endpoint,
                    "mtls_introspection_endpoint": mock.mtls_introspection_endpoint,
                    "clients": [
                        {"client_id": a.client_id, "client_secret": a.client_secret, "method": "client_secret_basic"},
                        {
                            "client_id": a.client_id + "-post",
                            "client_secret": a.client_secret,
                            "method": "client_secret_post",
                        },
                        {"client_id": a.client_id + "-public", "method": "none"},
                    ],
                    "dev_endpoints": [mock.url("/_mint"), mock.url("/_opaque"), mock.url("/_stats")],
                }
            ),
            flush=True,
        )
        if a.tls:
            print(mock.ca_pem, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
