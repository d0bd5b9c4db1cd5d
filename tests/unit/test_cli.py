"""The console script (cli.py): gevent mode, monkey-patched before anything is imported, unless
``--threads``; ``-m`` refused. Run in subprocesses: patching is for the whole process."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import sys
sys.argv = ["ai-mcp-oauth2", *sys.argv[1:]]
from kong_plugins.ai_mcp_oauth2 import cli
cli.main()
from gevent import monkey
print("\\npatched" if monkey.is_module_patched("socket") else "\\nnot patched")
print("argv", " ".join(sys.argv[1:]))
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The probe as a script file, as the console script is (kong-pdk stats its main file)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ai_mcp_oauth2_probe.py"
        script.write_text(PROBE)
        return subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60, check=False
        )


def test_the_default_is_gevent_mode_patched_before_the_plugin_is_imported() -> None:
    result = run("--dump")
    dump, patched, argv = result.stdout.splitlines()[0], result.stdout.splitlines()[-2], result.stdout.splitlines()[-1]
    assert result.returncode == 0, result.stderr
    assert json.loads(dump)[0]["Name"] == "ai-mcp-oauth2"
    assert patched == "patched" and argv == "argv --dump -g"


def test_threads_selects_kong_pdks_thread_mode_unpatched() -> None:
    result = run("--threads", "--dump")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["not patched", "argv --dump"]


def test_multiprocessing_is_refused_before_anything_is_patched() -> None:
    result = run("-m", "--kong-prefix", "/tmp")
    assert result.returncode == 2 and "multiprocessing is not supported" in result.stderr


def test_a_bad_metrics_address_stops_the_start_command_with_a_message() -> None:
    with tempfile.TemporaryDirectory() as prefix:
        result = run("--metrics-address", "nowhere", "--kong-prefix", prefix)
    assert result.returncode == 2 and "--metrics-address takes HOST:PORT, got 'nowhere'" in result.stderr


def test_a_metrics_address_that_cannot_be_bound_stops_the_start_command_in_both_modes() -> None:
    import socket

    with socket.socket() as busy, tempfile.TemporaryDirectory() as prefix:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = "127.0.0.1:%d" % busy.getsockname()[1]
        for mode in ((), ("--threads",)):
            result = run(*mode, f"--metrics-address={address}", "--kong-prefix", prefix)
            assert result.returncode == 2, result.stderr
            assert f"--metrics-address {address}: cannot listen" in result.stderr
            assert not (Path(prefix) / "ai-mcp-oauth2.socket").exists()  # never started serving Kong


def test_help_lists_the_plugin_servers_own_options() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--threads", "--request-budget SECONDS", "--metrics-address HOST:PORT", "bind it to loopback"):
        assert option in result.stdout
