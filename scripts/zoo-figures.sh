#!/usr/bin/env bash
# The zoo grid's figures and table (docs/results/mqar-zoo-cpu.md), from a directory of its runs:
# by default the records kept in the repository (scripts/keep_runs.py).
#
#   scripts/zoo-figures.sh [DIR]      # DIR: default docs/results/mqar-zoo-cpu
#
# Writes figure2.png and width_vs_length.png per family under docs/results/mqar-zoo-cpu/{ssm,
# recurrent,approx,approx-presets}/, each family with the attention and base_conv baselines, and
# prints the smallest-solving-width table (scripts/width_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-docs/results/mqar-zoo-cpu}"
exe="${ZOOLOGY:-target/release/zoology}"
[ -x "$exe" ] || { echo "zoo-figures: $exe not built; run scripts/with-torch cargo build --release" >&2; exit 2; }
fig=docs/results/mqar-zoo-cpu
base=attention,base_conv
for fam in \
  "ssm:s4,liquid_s4,gss,bigs,monarch_mixer" \
  "recurrent:mamba2,rwkv5,rwkv6,rwkv7,ttt_linear,ttt_mlp" \
  "approx:performer,bigbird,nystromformer,scatterbrain,native_sparse_attention" \
  "approx-presets:performer,bigbird_block2,nystromformer_m8,scatterbrain_w8,native_sparse_attention_w4"; do
  name="${fam%%:*}"
  # a partial grid: a family none of whose mixers has run yet is left as it was
  if msg=$(scripts/with-torch "$exe" plot "$dir" --no-curves --out "$fig/$name" --mixers "$base,${fam#*:}" 2>&1); then
    echo "zoo-figures: $fig/$name/"
  else
    echo "zoo-figures: $fig/$name/ not redrawn: ${msg##*Error: }" >&2
  fi
done
scripts/width_table.py "$dir" --exe "$exe"
