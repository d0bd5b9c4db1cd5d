# Sourced by the scripts: a virtual environment in ./.venv with the project and its test
# dependencies, created from the package registry on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import kong_plugins.ai_mcp_oauth2, pytest, yaml, msgpack, mcp, requests_oauth2client" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
