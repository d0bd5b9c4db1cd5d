"""The Kong image, docker-compose and kong.yaml agree with the plugin's own name, socket and commands."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from kong_plugins.ai_mcp_oauth2 import NAME

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "KONG_PLUGINSERVER_" + NAME.upper().replace("-", "_")  # Kong: lower-case, "-" -> "_"


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "kong" / "Dockerfile").read_text()
    block = re.search(r"^ENV (.+?)(?:\n\n|\Z)", text, re.S | re.M)
    assert block, "kong/Dockerfile has no ENV block"
    pairs = shlex.split(block.group(1).replace("\\\n", " "))
    return dict(pair.split("=", 1) for pair in pairs)


def test_dockerfile_settings_agree_with_the_plugin() -> None:
    env = dockerfile_env()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert NAME in scripts, "the console script is named after the plugin"
    assert NAME in env["KONG_PLUGINS"].split(",")
    assert env["KONG_PLUGINSERVER_NAMES"] == NAME
    assert env[f"{KEY}_SOCKET"] == f"/usr/local/kong/{NAME}.socket"  # Kong's default, and the plugin's
    start = shlex.split(env[f"{KEY}_START_CMD"])
    query = shlex.split(env[f"{KEY}_QUERY_CMD"])
    assert start[0] == query[0] == f"/opt/{NAME}/bin/{NAME}"
    assert start[1:] == ["--kong-prefix", "/usr/local/kong"] and query[1:] == ["--dump"]
    text = (ROOT / "kong" / "Dockerfile").read_text()
    assert f"ln -s /opt/{NAME}/bin/{NAME} /usr/local/bin/{NAME}" in text  # Kong 3.9's default commands
    # the base image: Kong 3.9 on Ubuntu unless a build argument names another (kong.yml's input)
    assert re.search(r"^ARG KONG_IMAGE=kong:3\.9\.\d+-ubuntu\nFROM \$\{KONG_IMAGE\}$", text, re.M)


def test_readme_install_settings_are_the_images() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, value in dockerfile_env().items():
        if name.startswith("KONG_PLUGINSERVER_") and name.endswith(("_NAMES", "_SOCKET")):
            assert f"{name}={value}" in readme, name
    assert f"KONG_PLUGINS=bundled,{NAME}" in readme


def test_compose_and_kong_yaml_agree() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kong_yaml = yaml.safe_load((ROOT / "kong" / "kong.yaml").read_text())
    services = compose["services"]
    kong = services["kong"]
    assert "./kong/kong.yaml:/kong/kong.yaml:ro" in kong["volumes"]
    assert kong["environment"]["KONG_DECLARATIVE_CONFIG"] == "/kong/kong.yaml"
    service = kong_yaml["services"][0]
    upstream = urlsplit(service["url"])
    assert upstream.hostname in services and str(upstream.port) in services[upstream.hostname]["expose"]
    config = service["routes"][0]["plugins"][0]["config"]
    published = {p.split(":")[-2] for p in kong["ports"]}
    assert str(urlsplit(config["resource"]).port) in published
    issuer = urlsplit(config["authorization_servers"][0])
    assert str(issuer.port) in published
    assert services["authorization-server"]["network_mode"] == "service:kong"
    assert f"http://localhost:{issuer.port}" in services["authorization-server"]["command"]


def test_the_scripts_the_readme_names_exist_and_are_executable() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\bscripts/([a-z][a-z_-]*)\b", readme))
    assert {"test", "dev", "demo", "test-kong"} <= named
    for script in named:
        path = ROOT / "scripts" / script
        if path.suffix == "" and not (ROOT / "scripts" / f"{script}.py").exists():
            assert path.is_file() and os.access(path, os.X_OK), script


def test_the_distribution_ships_the_plugin_and_not_the_tests_or_the_benchmark() -> None:
    import setuptools

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = setuptools.find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    assert "kong_plugins.ai_mcp_oauth2" in shipped
    assert {name.split(".")[0] for name in shipped} == {"kong_plugins"}, shipped
    # both are importable packages, which setuptools' automatic discovery would otherwise ship
    assert (ROOT / "tests" / "__init__.py").is_file() and (ROOT / "bench" / "__init__.py").is_file()


def test_kong_keeps_every_body_the_plugin_may_read_in_memory() -> None:
    """Kong hands a plugin the body (kong.request.get_raw_body) only from nginx's in-memory buffer,
    client_body_buffer_size (Kong's default 8k): the image, the compose stack and the test stacks
    raise it, alike, to at least the default max_request_body_size."""
    from kong_plugins.ai_mcp_oauth2.schema import SCHEMA
    from tests.harness.kong_standin.settings import BODY_BUFFER_ENV, parse_nginx_size, read_settings
    from tests.harness.stack import plugin_env

    def fields(node: object) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict) and "type" in value:
                    found[key] = value
                found.update(fields(value))
        elif isinstance(node, list):
            for item in node:
                found.update(fields(item))
        return found

    default = fields(SCHEMA)["max_request_body_size"]["default"]
    assert default == 1024 * 1024
    image = dockerfile_env()[BODY_BUFFER_ENV]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kong"]["environment"]
    assert compose[BODY_BUFFER_ENV] == image == plugin_env("/p")[BODY_BUFFER_ENV]
    assert parse_nginx_size(image) >= default
    settings = read_settings(plugin_env("/p"), file_exists=lambda _: False)
    assert settings.client_body_buffer_size == parse_nginx_size(image)


def test_compose_serves_metrics_inside_its_network_and_prometheus_scrapes_them() -> None:
    """The compose Kong runs the image's start command plus exactly ``--metrics-address`` on a port
    it exposes to the compose network but does not publish; the ``metrics`` profile's Prometheus
    scrapes that address and is published on loopback only. The test stacks' start command
    (plugin_env) has no fixed metrics port: parallel stacks would collide."""
    from tests.harness.stack import plugin_env

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    kong = services["kong"]
    image_start = shlex.split(dockerfile_env()[f"{KEY}_START_CMD"])
    compose_start = shlex.split(kong["environment"][f"{KEY}_START_CMD"])
    assert compose_start[: len(image_start)] == image_start
    extra = compose_start[len(image_start) :]
    assert extra[0] == "--metrics-address" and len(extra) == 2, "the only difference from the image"
    host, port = extra[1].rsplit(":", 1)
    assert host == "0.0.0.0"  # the container's interfaces: reachable from the compose network only
    assert port in kong["expose"]
    assert not any(p.split(":")[-1].split("/")[0] == port for p in kong["ports"]), "metrics published on the host"
    assert "--metrics-address" not in plugin_env("/p")[f"{KEY}_START_CMD"]
    assert set(kong["environment"]) & set(dockerfile_env()) == {
        "KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE",
        f"{KEY}_START_CMD",
    }

    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["metrics"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    assert prometheus["ports"] == ["127.0.0.1:9091:9090"]
    assert "./kong/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / "kong" / "prometheus.yml").read_text())["scrape_configs"]
    assert [job.get("metrics_path", "/metrics") for job in scrape] == ["/metrics"]
    assert [target for job in scrape for c in job["static_configs"] for target in c["targets"]] == [f"kong:{port}"]
    # the default stack is the demo; the metrics profile adds Prometheus alone (the cluster profile:
    # tests/unit/test_compose_cluster.py)
    assert {name for name, service in services.items() if "profiles" not in service} == {
        "kong",
        "authorization-server",
        "mcp-server",
    }
    assert [name for name, service in services.items() if "metrics" in service.get("profiles", [])] == ["prometheus"]
    assert all(service.get("profiles") in (None, ["metrics"], ["cluster"]) for service in services.values())


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed (.ci/run installs it)"
)
@pytest.mark.parametrize(
    "profile", [[], ["--profile", "metrics"], ["--profile", "cluster"]], ids=["default", "metrics", "cluster"]
)
def test_docker_compose_accepts_the_file(profile: list[str]) -> None:
    done = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", *profile, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
