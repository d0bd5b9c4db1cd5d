"""The README a Kong user reads top-down, and the configuration reference generated from the schema."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"


def test_configuration_reference_matches_the_schema() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert generated in reference, "run scripts/config_reference.py --write"
    assert generated.count("\n| `") == 67  # 45 fields and 22 nested ones
    assert "(docs/configuration.md)" in README.read_text(), "the README links the reference"


def headings() -> dict[str, int]:
    """The README's level-2 headings and their line numbers (1-based)."""
    lines = README.read_text().splitlines()
    return {line[3:]: number for number, line in enumerate(lines, 1) if line.startswith("## ")}


def test_readme_is_short_and_puts_install_and_the_differences_first() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < 300
    found = headings()
    assert list(found)[:4] == [
        "Quick start",
        "Install into Kong",
        "Configure",
        "Differences from Kong Enterprise's plugin",
    ]
    assert found["Install into Kong"] <= 80
    table = lines.index("| topic | kind | this plugin |", found["Differences from Kong Enterprise's plugin"]) + 1
    assert table <= 80, "the differences table starts within the first screenful"
    for section in ("Operations", "Tests", "Performance", "Libraries", "Links"):
        assert section in found, section


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text()
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", text, re.S)
    assert block, "the quick start is a shell block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["docker compose up --build", "scripts/demo"]


def test_readme_benchmark_results_sit_between_their_markers() -> None:
    text = README.read_text()
    assert text.count("<!-- bench:results -->") == text.count("<!-- /bench:results -->") == 1
    results = text[text.index("<!-- bench:results -->") : text.index("<!-- /bench:results -->")]
    assert "| scenario |" in results
    assert "(docs/bench/latency.png)" in text and (ROOT / "docs" / "bench" / "latency.png").is_file()


def test_readme_names_every_runtime_dependency() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    libraries = README.read_text().split("## Libraries", 1)[1].lower()
    for requirement in dependencies:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name and f"`{name.group(0).lower()}" in libraries, requirement
