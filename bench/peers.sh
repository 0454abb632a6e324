#!/usr/bin/env bash
# llm-gateway next to LiteLLM and Portkey, measured in one run with the shared harness (../shared/bench):
# the mock called directly, bench/relay.py (a TCP relay that only passes bytes: the floor of any proxy),
# LiteLLM, Portkey, and llm-gateway with its full pipeline (master key + a virtual key, limits in memory or
# Redis, metrics, the SQLite ledger).
#   bench/peers.sh [targets...]   targets: direct relay litellm portkey llm-gateway llm-gateway-redis (default: all)
# MOCK_CHUNK_DELAY_MS=1 bench/peers.sh ... streams every target's chunks 1 ms apart (the harness' mock knob).
# Results: $OUT/results.jsonl (default /tmp/llm-gateway-peers) and the summary tables on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
export OUT="${OUT:-/tmp/llm-gateway-peers}" PY="${PY:-/tmp/bench-venv/bin/python}"
export REPEATS="${REPEATS:-1}" CONNS="${CONNS:-1 50}" STREAM_REQS="${STREAM_REQS:-200}" STREAM_CONC="${STREAM_CONC:-1 10}"
export QUIET_WAIT="${QUIET_WAIT:-30}" QUIET_PCT="${QUIET_PCT:-20}" LITELLM_LOCAL_MODEL_COST_MAP=True
mkdir -p "$OUT"
bash "$SHARED/setup.sh" peers >/dev/null
GW_PY="$ROOT/.venv/bin/python"
work=$(mktemp -d)

gateway_config() {  # $1: memory | redis
  cat > "$work/gateway-$1.yaml" <<YAML
server: {metrics_port: 0}
providers:
  - {name: mock, type: openai-compatible, base_url: "http://127.0.0.1:18000/v1", api_key: sk-upstream, models: [mock-model]}
auth: {master_key: sk-bench-master}
database: {url: "sqlite:///$work/ledger-$1.db"}
limits:
  rules:
    - {name: per-key, scope: key, window: 1m, requests: 100000000, tokens: 100000000000}
    - {name: per-user-day, scope: user, window: 1d, tokens: 100000000000}
    - {name: global, scope: global, window: 1m, requests: 100000000}
YAML
  if [ "$1" = redis ]; then printf 'redis: {url: "redis://127.0.0.1:6379/12"}\n' >> "$work/gateway-$1.yaml"; fi
  "$GW_PY" -m llm_gateway keys create --config "$work/gateway-$1.yaml" --alias bench --user bench-user --json |
    "$GW_PY" -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(direct relay litellm portkey llm-gateway llm-gateway-redis)
for t in "${targets[@]}"; do
  case "$t" in
    direct|litellm|portkey) bash "$SHARED/run_peers.sh" "$t" >/dev/null ;;
    relay)
      bash "$SHARED/bench_gateway.sh" relay "$GW_PY $HERE/relay.py --port 8090 --upstream 127.0.0.1:18000" \
        http://127.0.0.1:8090 mock-model >/dev/null ;;
    llm-gateway|llm-gateway-redis)
      mode=memory; [[ "$t" == *redis* ]] && mode=redis
      key=$(gateway_config $mode)
      API_KEY="$key" bash "$SHARED/bench_gateway.sh" "$t" \
        "$GW_PY -m llm_gateway --config $work/gateway-$mode.yaml --host 127.0.0.1 --port 8080" \
        http://127.0.0.1:8080 mock-model 'user: bench-user' >/dev/null ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
"$PY" "$SHARED/summarize.py" "$OUT/results.jsonl"
