#!/usr/bin/env bash
# The zoo grid's figures and table (docs/results/mqar-zoo-cpu.md), from a directory of its runs:
# by default the records kept in the repository (scripts/keep_runs.py).
#
#   scripts/zoo-figures.sh [--page] [DIR]      # DIR: default docs/results/mqar-zoo-cpu
#
# Writes figure2.png and width_vs_length.png per family under docs/results/mqar-zoo-cpu/{ssm,
# recurrent,approx,approx-presets}/, each family with the attention and base_conv baselines, and
# prints the smallest-solving-width table (scripts/width_table.py). With --page it also writes
# the table, with a line of run counts (`zoology sweep status`), between the `<!-- zoo-table -->`
# and `<!-- /zoo-table -->` markers of docs/results/mqar-zoo-cpu.md, and the cost to solve
# (`zoology results show DIR --cost`) between `<!-- zoo-cost -->` and `<!-- /zoo-cost -->`.
set -euo pipefail
cd "$(dirname "$0")/.."
page=0
if [ "${1:-}" = "--page" ]; then page=1; shift; fi
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
table=$(scripts/width_table.py "$dir" --exe "$exe")
echo "$table"
if [ "$page" = 1 ]; then
  counts=$(scripts/with-torch "$exe" sweep status configs/mqar-zoo-cpu.toml --out "$dir" | awk 'NR == 1')
  counts="${counts#*: }"
  cost=$(scripts/with-torch "$exe" results show "$dir" --cost)
  ZOO_TABLE="$table" ZOO_COUNTS="$counts" ZOO_COST="$cost" python3 - <<'PY'
import datetime, os, re
p = "docs/results/mqar-zoo-cpu.md"
s = open(p).read()


def fill(s, name, body):
    """s with body between its one `<!-- name -->` / `<!-- /name -->` marker pair."""
    out, n = re.subn(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda m: f"<!-- {name} -->\n{body}<!-- /{name} -->", s, flags=re.S)
    if n != 1:
        raise SystemExit(f"zoo-figures: {p} has {n} {name} marker pairs; it needs exactly one")
    return out


s = fill(s, "zoo-cost", "```\n" + os.environ["ZOO_COST"].rstrip() + "\n```\n")
when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
body = (f"**{when}** (`scripts/zoo-figures.sh`, from the kept runs): {os.environ['ZOO_COUNTS']}.\n\n"
        + os.environ["ZOO_TABLE"].rstrip() + "\n\n"
        "Bold is the smallest width at or above 0.9; brackets give the narrower widths' best accuracy; "
        "\"> d (best a)\" means no width up to d solved; \"skipped (L = 16: > 256)\" was not trained "
        "(`harder`); \"—\" is not run yet.\n")
open(p, "w").write(fill(s, "zoo-table", body))
print(f"zoo-figures: wrote the table into {p}")
PY
fi
