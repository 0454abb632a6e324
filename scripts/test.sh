#!/usr/bin/env bash
# The test command (README, CI): installs the project and its test tools into .venv, makes sure Redis and
# PostgreSQL run, then runs ruff, mypy and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# llama.cpp (for the end-to-end test) is built from source once and then reused from pip's wheel cache.
# A portable build: the host-tuned one uses AMX kernels that crash on some virtual machines.
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF \
-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,test,e2e]'
bash scripts/services.sh
# wrk for the bench smoke test; Debian's chromium for the browser test (tests/security/test_edge_browser.py).
missing=""
command -v wrk >/dev/null || missing="$missing wrk"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
# A Redis Cluster and a Sentinel setup on loopback (tests/redis_ha.py); systemd-analyze checks the unit file.
command -v redis-sentinel >/dev/null || missing="$missing redis-sentinel"
command -v systemd-analyze >/dev/null || missing="$missing systemd"
if [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
.venv/bin/ruff check src tests
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
