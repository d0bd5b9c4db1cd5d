"""The README's configuration reference is generated from the schema, never written twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_readme_configuration_reference_matches_the_schema() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert generated in (ROOT / "README.md").read_text(), "run scripts/config_reference.py --write"
    assert generated.count("\n| `") == 67  # 45 fields and 22 nested ones
