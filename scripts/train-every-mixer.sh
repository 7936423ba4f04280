#!/usr/bin/env bash
# Trains every registered mixer (default config) for a short run on MQAR L=64, kv=4 through
# `zoology train`, and prints one line per mixer: first logged train loss → last, test accuracy.
# Usage: scripts/with-torch scripts/train-every-mixer.sh [OUT_DIR] [EPOCHS]
set -euo pipefail
out=${1:-/tmp/zoology-every-mixer}
epochs=${2:-2}
z=target/release/zoology
mkdir -p "$out"
cat > "$out/base.toml" <<'TOML'
seed = 1
[data]
vocab_size = 512
batch_size = 64
[[data.train]]
task = "mqar"
seq_len = 64
num_kv_pairs = 4
num_examples = 3000
[[data.test]]
task = "mqar"
seq_len = 64
num_kv_pairs = 4
num_examples = 300
[model]
d_model = 64
max_position_embeddings = 64
state_mixer = "identity"
embed_dropout = 0.0
[train]
lr = 3e-3
warmup_steps = 20
log_every_steps = 5
TOML
printf '%-18s %-22s %s\n' mixer "train loss first→last" "test acc"
for m in $("$z" mixers | awk '/^[a-z]/{print $1}'); do
  rm -rf "$out/$m"
  if "$z" train "$out/base.toml" --out "$out/$m" -q --set train.epochs="$epochs" --set "model.mixer={name=\"$m\"}" >/dev/null 2>"$out/$m.err"; then
    python3 - "$out/$m" "$m" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
tr = [l for l in lines if l["kind"] == "train"]
ev = [l for l in lines if l["kind"] == "eval"]
print(f"{sys.argv[2]:<18} {tr[0]['loss']:.3f} → {tr[-1]['loss']:.3f}          {ev[-1]['accuracy']:.3f}")
PY
  else
    echo "$m FAILED: $(tail -n 1 "$out/$m.err")"
  fi
done
