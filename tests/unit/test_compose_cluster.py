"""docker-compose's `cluster` profile (a Kong control plane with PostgreSQL, two data planes, Redis),
its decK file kong/cluster.yaml, and the two scripts that load and check it (scripts/cluster_stack.py).

No Docker engine here: the compose file is read as data (and by docker-compose itself in
test_packaging), the scripts run against stand-ins of the Admin API and of the data planes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.harness.httpserver import Handler, send, serve
from tests.harness.mock_as import MockAuthorizationServer

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "cluster_stack.py"
DEMO = {"kong", "authorization-server", "mcp-server"}
CLUSTER = {
    "postgres",
    "kong-migrations",
    "kong-certs",
    "kong-cp",
    "kong-dp1",
    "kong-dp2",
    "redis",
    "cluster-authorization-server",
}
KONG_NODES = {"kong-migrations", "kong-certs", "kong-cp", "kong-dp1", "kong-dp2"}
DATA_PLANES = ("kong-dp1", "kong-dp2")
# The plugin's cluster-cache extensions, with Kong openid-connect's names (issue 13), and Kong's
# shared Redis record: what kong/cluster.yaml may use beyond Kong's ai-mcp-oauth2 fields.
CLUSTER_CACHE_FIELDS = {"cluster_cache_strategy", "cluster_cache_redis", "cluster_cache_items"}
REDIS_FIELDS = {
    "host",
    "port",
    "username",
    "password",
    "database",
    "ssl",
    "ssl_verify",
    "server_name",
    "connect_timeout",
    "send_timeout",
    "read_timeout",
    "keepalive_pool_size",
    "keepalive_backlog",
    "connection_is_proxied",
    "sentinel_master",
    "sentinel_role",
    "sentinel_nodes",
    "sentinel_username",
    "sentinel_password",
    "cluster_nodes",
    "cluster_max_redirections",
}
CACHE_ITEMS = {"introspection", "token_exchange"}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def plugin_entry() -> dict[str, Any]:
    state = yaml.safe_load((ROOT / "kong" / "cluster.yaml").read_text())
    [service] = state["services"]
    [route] = service["routes"]
    [plugin] = route["plugins"]
    return dict(plugin)


def published(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container port -> (host address, host port) of a service's ``ports``."""
    found = {}
    for mapping in service.get("ports", []):
        parts = mapping.split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        found[parts[-1]] = (address, parts[-2])
    return found


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# ------------------------------------------------------------------ the compose file


def test_the_cluster_profile_holds_the_cluster_and_the_default_stack_is_the_demo() -> None:
    found = services()
    assert {name for name, service in found.items() if "profiles" not in service} == DEMO
    assert {name for name, service in found.items() if service.get("profiles") == ["cluster"]} == CLUSTER
    assert [name for name, service in found.items() if service.get("profiles") == ["metrics"]] == ["prometheus"]
    assert set(found) == DEMO | CLUSTER | {"prometheus"}
    for name in DEMO:  # the demo depends on nothing of the cluster
        assert not set(found[name].get("depends_on", {})) & CLUSTER, name


def test_every_kong_node_is_the_plugin_image() -> None:
    found = services()
    build = found["kong"]["build"]
    assert build["dockerfile"] == "kong/Dockerfile" and build["context"] == "."
    assert build["args"]["KONG_IMAGE"].startswith("${KONG_IMAGE:-kong:3.9.3-ubuntu}")
    for name in KONG_NODES:
        assert found[name]["build"] == build, name
        assert "image" not in found[name], name
    kong_dockerfile = {
        name for name, service in found.items() if service.get("build", {}).get("dockerfile") == build["dockerfile"]
    }
    assert kong_dockerfile == KONG_NODES | {"kong"}


def test_the_control_plane_runs_on_postgres_after_the_one_shot_services() -> None:
    found = services()
    cp, migrations = found["kong-cp"], found["kong-migrations"]
    database = {
        key: value for key, value in migrations["environment"].items() if key.startswith(("KONG_PG_", "KONG_DATABASE"))
    }
    assert database["KONG_DATABASE"] == "postgres" and database["KONG_PG_HOST"] == "postgres"
    assert {key: cp["environment"][key] for key in database} == database
    postgres = found["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", postgres["image"])
    assert postgres["environment"]["POSTGRES_USER"] == database["KONG_PG_USER"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == database["KONG_PG_PASSWORD"]
    assert postgres["environment"]["POSTGRES_DB"] == database["KONG_PG_DATABASE"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert migrations["command"] == ["kong", "migrations", "bootstrap"]
    assert migrations["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert cp["depends_on"] == {
        "kong-migrations": {"condition": "service_completed_successfully"},
        "kong-certs": {"condition": "service_completed_successfully"},
    }
    assert cp["environment"]["KONG_ROLE"] == "control_plane"
    assert cp["environment"]["KONG_PROXY_LISTEN"] == "off"
    assert cp["healthcheck"]["test"] == ["CMD", "kong", "health"]


def test_the_data_planes_follow_the_control_plane_with_its_certificate() -> None:
    found = services()
    cp = found["kong-cp"]["environment"]
    cluster_port = cp["KONG_CLUSTER_LISTEN"].rsplit(":", 1)[1]
    assert cluster_port in found["kong-cp"]["expose"]
    proxies = []
    for name in DATA_PLANES:
        dp = found[name]
        env = dp["environment"]
        assert env["KONG_ROLE"] == "data_plane" and env["KONG_DATABASE"] == "off", name
        assert env["KONG_CLUSTER_CONTROL_PLANE"] == f"kong-cp:{cluster_port}", name
        assert (env["KONG_CLUSTER_CERT"], env["KONG_CLUSTER_CERT_KEY"]) == (
            cp["KONG_CLUSTER_CERT"],
            cp["KONG_CLUSTER_CERT_KEY"],
        )
        assert not any(key.startswith("KONG_PG_") for key in env), name
        assert dp["depends_on"]["kong-cp"] == {"condition": "service_healthy"}, name
        assert dp["depends_on"]["redis"] == {"condition": "service_healthy"}, name
        assert dp["healthcheck"]["test"] == ["CMD", "kong", "health"]
        listen = env["KONG_PROXY_LISTEN"].rsplit(":", 1)[1]
        proxies.append(published(dp)[listen])
    assert proxies == [("0.0.0.0", "8100"), ("0.0.0.0", "8200")]


def test_the_cluster_certificate_is_generated_at_start_up_into_a_volume_never_the_repository() -> None:
    document = compose()
    found = document["services"]
    certs = found["kong-certs"]
    script = certs["command"][-1]
    assert certs["command"][:2] == ["sh", "-ec"] and certs["user"] == "root"
    assert "kong hybrid gen_cert /certs/cluster.crt /certs/cluster.key" in script
    assert "chown kong:kong /certs/cluster.crt /certs/cluster.key" in script  # the nodes run as kong
    assert certs["volumes"] == ["cluster-certs:/certs"]
    for name in ("kong-cp", *DATA_PLANES):
        assert found[name]["volumes"] == ["cluster-certs:/certs:ro"], name
        assert found[name]["environment"]["KONG_CLUSTER_CERT"].startswith("/certs/"), name
    assert set(document["volumes"]) == {"cluster-certs", "cluster-postgres"}  # named volumes, no bind mount
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"cluster.crt", "cluster.key"} <= set(ignored)  # `kong hybrid gen_cert`'s names in the current directory


def test_nothing_in_the_repository_is_a_key_or_a_certificate() -> None:
    private_key = re.compile(r"-----BEGIN [A-Z ]*PRIVATE" + r" KEY-----")
    skip = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    for path in ROOT.rglob("*"):
        if skip.intersection(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        assert path.suffix not in {".pem", ".key", ".crt", ".p12"}, path
        if path.stat().st_size < 5_000_000:
            assert not private_key.search(path.read_bytes().decode("latin-1")), path


def test_published_ports_do_not_clash_and_the_unauthenticated_ones_are_loopback_only() -> None:
    found = services()
    host_ports = [port for service in found.values() for _, port in published(service).values()]
    assert len(host_ports) == len(set(host_ports)), host_ports
    demo = {port for name in DEMO | {"prometheus"} for _, port in published(found[name]).values()}
    assert demo == {"8000", "8001", "9090", "9091"}
    assert published(found["kong-cp"]) == {"8001": ("127.0.0.1", "8101")}
    assert published(found["cluster-authorization-server"]) == {"9190": ("127.0.0.1", "9190")}
    for name in ("postgres", "redis", "kong-migrations", "kong-certs"):
        assert "ports" not in found[name], name


def test_redis_is_a_cache_inside_the_network() -> None:
    redis = services()["redis"]
    assert re.fullmatch(r"redis:7(\.\d+)*(-alpine)?", redis["image"])
    assert redis["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


# ------------------------------------------------------------------ kong/cluster.yaml and the compose file


def test_the_deck_file_names_what_the_compose_network_has() -> None:
    found = services()
    state = yaml.safe_load((ROOT / "kong" / "cluster.yaml").read_text())
    demo = yaml.safe_load((ROOT / "kong" / "kong.yaml").read_text())
    assert state["_format_version"] == "3.0"
    [service] = state["services"]
    upstream = urlsplit(service["url"])
    assert upstream.hostname == "mcp-server" and str(upstream.port) in found["mcp-server"]["expose"]
    assert service["routes"][0]["paths"] == demo["services"][0]["routes"][0]["paths"]
    config = plugin_entry()["config"]
    assert plugin_entry()["name"] == "ai-mcp-oauth2"

    mock = found["cluster-authorization-server"]
    assert mock["build"] == found["authorization-server"]["build"]  # the demo's mock, reused
    command = mock["command"]
    assert command[:3] == ["python", "-m", "tests.harness.mock_as"]
    introspection = urlsplit(config["introspection_endpoint"])
    assert (introspection.hostname, str(introspection.port)) == (
        "cluster-authorization-server",
        option(command, "--port"),
    )
    assert introspection.path == "/introspect"
    assert config["authorization_servers"] == [option(command, "--public-base")]
    issuer = urlsplit(option(command, "--public-base"))
    assert issuer.hostname == "localhost" and published(mock)[option(command, "--port")][1] == str(issuer.port)
    assert config["resource"] == option(command, "--resource")
    resource = urlsplit(config["resource"])
    assert resource.hostname == "localhost" and resource.path == "/mcp"
    assert published(found["kong-dp1"])["8000"][1] == str(resource.port)

    # the credentials the mock's command line registers (tests/harness/mock_as/__main__.py defaults)
    cli = (ROOT / "tests" / "harness" / "mock_as" / "__main__.py").read_text()
    assert f'"--client-id", default="{config["client_id"]}"' in cli
    assert f'"--client-secret", default="{config["client_secret"]}"' in cli
    assert config["client_auth"] == "client_secret_basic"

    assert config["cluster_cache_strategy"] == "redis"
    assert config["cluster_cache_redis"]["host"] == "redis" and "redis" in found
    assert str(config["cluster_cache_redis"].get("port", 6379)) in found["redis"]["expose"]


def test_the_deck_file_uses_only_the_plugins_fields() -> None:
    from kong_plugins.ai_mcp_oauth2.schema import SCHEMA

    config = plugin_entry()["config"]
    kong_fields = {name for field in SCHEMA for name in field}
    assert set(config) <= kong_fields | CLUSTER_CACHE_FIELDS, set(config) - kong_fields - CLUSTER_CACHE_FIELDS
    assert set(config) & CLUSTER_CACHE_FIELDS == CLUSTER_CACHE_FIELDS
    assert config["cluster_cache_strategy"] in {"off", "redis"}
    assert set(config["cluster_cache_redis"]) <= REDIS_FIELDS
    assert set(config["cluster_cache_items"]) <= CACHE_ITEMS


def test_the_deck_file_config_parses_with_the_plugins_schema() -> None:
    from kong_plugins.ai_mcp_oauth2.config import parse_config
    from kong_plugins.ai_mcp_oauth2.schema import SCHEMA

    assert CLUSTER_CACHE_FIELDS <= {name for field in SCHEMA for name in field}
    raw = plugin_entry()["config"]
    config = parse_config(raw)
    assert config.introspection_endpoint == raw["introspection_endpoint"]
    assert config.cluster_cache_strategy == "redis"
    assert config.cluster_cache_redis.host == "redis"
    assert set(config.cluster_cache_items) == {"introspection", "token_exchange"}


# ------------------------------------------------------------------ scripts/cluster_stack.py sync


class AdminApi(Handler):
    """Kong's Admin API as far as the sync uses it: records each call, keeps the plugins it is given."""

    calls: list[tuple[str, str, Any]] = []
    plugins: dict[str, list[dict[str, Any]]] = {}

    def handle_request(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body))
        parts = self.path.strip("/").split("/")
        if self.command == "GET" and self.path == "/status":
            send(self, 200, b"{}")
        elif self.command == "GET" and parts[-1] == "plugins":
            send(self, 200, json.dumps({"data": self.plugins.get("/".join(parts[:2]), [])}).encode())
        elif self.command == "PUT" and len(parts) == 4 and parts[2] == "plugins":
            if body["config"].get("refuse"):
                send(self, 400, b'{"message": "schema violation (config.refuse: unknown field)"}')
                return
            kept = self.plugins.setdefault("/".join(parts[:2]), [])
            kept[:] = [p for p in kept if p["id"] != parts[3]] + [{"id": parts[3], **body}]
            send(self, 200, json.dumps(body).encode())
        elif self.command == "PUT":
            send(self, 200, json.dumps(body).encode())
        else:
            send(self, 404, b'{"message": "Not found"}')


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_sync_loads_the_deck_file_through_the_admin_api_and_can_run_again() -> None:
    AdminApi.calls, AdminApi.plugins = [], {}
    state = yaml.safe_load((ROOT / "kong" / "cluster.yaml").read_text())
    service = state["services"][0]
    route = service["routes"][0]
    with serve(AdminApi) as url:
        done = run("sync", "--admin-url", url, "--wait", "10")
        assert done.returncode == 0, done.stderr
        first = list(AdminApi.calls)
        assert [(method, path) for method, path, _ in first[:4]] == [
            ("GET", "/status"),
            ("PUT", "/services/mcp-server"),
            ("PUT", "/services/mcp-server/routes/mcp"),
            ("GET", "/routes/mcp/plugins"),
        ]
        assert first[1][2] == {key: value for key, value in service.items() if key != "routes"}
        assert first[2][2] == {key: value for key, value in route.items() if key != "plugins"}
        method, path, body = first[4]
        assert method == "PUT" and re.fullmatch(r"/routes/mcp/plugins/[0-9a-f-]{36}", path)
        assert body == route["plugins"][0]
        assert "plugin ai-mcp-oauth2 on routes/mcp" in done.stdout

        AdminApi.calls = []
        again = run("sync", "--admin-url", url, "--wait", "10")
        assert again.returncode == 0, again.stderr
        assert [call for call in AdminApi.calls if call[1].startswith("/routes/mcp/plugins/")] == [first[4]]
        assert len(AdminApi.plugins["routes/mcp"]) == 1  # the same plugin, updated in place


def test_sync_reports_what_kong_refuses_and_what_it_cannot_load(tmp_path: Path) -> None:
    AdminApi.calls, AdminApi.plugins = [], {}
    state = yaml.safe_load((ROOT / "kong" / "cluster.yaml").read_text())
    state["services"][0]["routes"][0]["plugins"][0]["config"]["refuse"] = True
    refused = tmp_path / "refused.yaml"
    refused.write_text(yaml.safe_dump(state))
    consumers = tmp_path / "consumers.yaml"
    consumers.write_text(yaml.safe_dump({"_format_version": "3.0", "consumers": [{"username": "x"}]}))
    with serve(AdminApi) as url:
        done = run("sync", str(refused), "--admin-url", url, "--wait", "10")
        assert done.returncode == 1 and "400" in done.stderr and "schema violation" in done.stderr
        done = run("sync", str(consumers), "--admin-url", url, "--wait", "10")
        assert done.returncode == 1 and "consumers" in done.stderr
    done = run("sync", "--admin-url", url, "--wait", "1")  # stopped: nothing answers
    assert done.returncode == 1 and "no answer from the Admin API" in done.stderr


# ------------------------------------------------------------------ scripts/cluster_stack.py check

RESOURCE = "http://localhost:8100/mcp"


def data_planes(mock: MockAuthorizationServer, shared: bool) -> list[type[Handler]]:
    """Two stand-in data planes: each introspects a token it has not seen, at the mock, and keeps the
    answer; ``shared``: in one store for both (Redis, with its lock), else each in its own."""
    store: dict[str, bool] = {}
    lock = threading.Lock()

    def node() -> type[Handler]:
        local: dict[str, bool] = {}
        local_lock = threading.Lock()

        class DataPlane(Handler):
            def handle_request(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                cache, guard = (store, lock) if shared else (local, local_lock)
                with guard:
                    if token not in cache:
                        answer = requests.post(
                            mock.introspection_endpoint, data={"token": token}, auth=("mcp-gateway", "s"), timeout=10
                        ).json()
                        if not answer["active"]:
                            send(self, 401, b'{"error": "unauthorized"}')
                            return
                        cache[token] = True
                send(self, 200, b'{"jsonrpc": "2.0", "id": 1, "result": {}}')

        return DataPlane

    return [node(), node()]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-cache", "per-node-caches"])
def test_check_counts_one_introspection_per_token_across_the_data_planes(shared: bool) -> None:
    with MockAuthorizationServer(resource=RESOURCE) as mock:
        mock.dev_endpoints = True
        mock.add_client("mcp-gateway", "client_secret_basic", secret="s")
        first, second = data_planes(mock, shared)
        with serve(first) as dp1, serve(second) as dp2:
            done = run(
                "check", "--data-plane", dp1, "--data-plane", dp2, "--authorization-server", mock.url(""),
                "--resource", RESOURCE, "--concurrent", "4",
            )  # fmt: skip
        if shared:
            assert done.returncode == 0, done.stderr
            assert done.stdout.count("ok  ") == 6
            assert "4 concurrent requests per data plane: 8 requests, 200 each, 1 introspection(s)" in done.stdout
            assert "a token the authorization server refuses: 2 requests, 401 each, 2 introspection(s)" in done.stdout
            assert mock.count("introspection") == 1 + 1 + 1 + 2
        else:
            assert done.returncode == 1
            assert f"one token on {dp1} then {dp2}: 2 introspections, expected 1" in done.stderr
        assert mock.errors == []


def test_the_wrappers_run_the_script_whose_defaults_are_the_compose_clusters() -> None:
    for name, command in (("cluster-sync", "sync"), ("cluster-check", "check")):
        lines = (ROOT / "scripts" / name).read_text().splitlines()
        assert lines[-1] == f'exec .venv/bin/python scripts/cluster_stack.py {command} "$@"'
        assert 'source "$(dirname "$0")/_env.sh"' in lines
    spec = importlib.util.spec_from_file_location("cluster_stack", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    found = services()
    assert script.ADMIN_URL == "http://127.0.0.1:" + published(found["kong-cp"])["8001"][1]
    assert script.DATA_PLANES == tuple(f"http://localhost:{published(found[name])['8000'][1]}" for name in DATA_PLANES)
    command = found["cluster-authorization-server"]["command"]
    assert script.AUTHORIZATION_SERVER == option(command, "--public-base")
    assert script.RESOURCE == option(command, "--resource") == plugin_entry()["config"]["resource"]


def test_the_curl_calls_of_docs_cluster_md_send_what_the_deck_file_says() -> None:
    text = (ROOT / "docs" / "cluster.md").read_text()
    state = yaml.safe_load((ROOT / "kong" / "cluster.yaml").read_text())
    service = state["services"][0]
    route = service["routes"][0]
    calls = text[text.index("admin=http://127.0.0.1:8101") :]
    service_body, route_body = (json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", calls)[:2])
    assert service_body == {key: value for key, value in service.items() if key != "routes"}
    assert route_body == {key: value for key, value in route.items() if key != "plugins"}
    plugin = re.search(r"<<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert plugin and json.loads(plugin.group(1)) == route["plugins"][0]
    assert '"$admin/services/mcp-server/routes/mcp"' in text and '"$admin/routes/mcp/plugins"' in text
