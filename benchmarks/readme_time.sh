#!/usr/bin/env bash
# Time README command 1 as a newcomer runs it, and write the figure into docs/BENCHMARKS.md:
#
#   bash benchmarks/readme_time.sh            (from the repository root; minutes)
#
# It runs the README's first command itself (read from README.md's first code block, so the
# command timed is the command shown), with the demo's output in a fresh temporary --out
# folder, and times the set-up (scripts/setup.sh) and the sweep separately. The line between
# the "readme-time" markers in docs/BENCHMARKS.md is replaced by the figures, the machine
# (CPU model, cores, bf16 units) and the date. Run it on a quiet machine: nothing else running.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=$(awk '/^```/{n++; next} n==1' README.md | grep -v '^\s*#' | grep -v '^\s*$' | head -1)
case "$cmd" in
    "bash scripts/setup.sh && "*) ;;
    *) echo "readme_time: README command 1 is not 'bash scripts/setup.sh && ...': $cmd" >&2; exit 2 ;;
esac
job=${cmd#bash scripts/setup.sh && }
out=$(mktemp -d /tmp/readme-time-XXXX)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

start=$(date +%s.%N)
bash scripts/setup.sh > "$out/setup.log" 2>&1
mid=$(date +%s.%N)
eval "$job --out $out/runs" > "$out/sweep.log" 2>&1
end=$(date +%s.%N)

setup_s=$(printf '%.0f' "$(echo "$mid - $start" | bc)")
sweep_s=$(printf '%.0f' "$(echo "$end - $mid" | bc)")
mmss() { printf '%d min %02d s' $(( $1 / 60 )) $(( $1 % 60 )); }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
units=$(grep -o -m1 -w 'amx_bf16\|avx512_bf16' /proc/cpuinfo | head -1 || true)
line="README command 1 on $(date +%Y-%m-%d), $cpu, $(nproc) cores (${units:-no bf16 units}), load average"
line+=" $load_before before: the sweep $(mmss "$sweep_s"), the set-up $(mmss "$setup_s") (packages already"
line+=" installed are skipped), $(mmss $(( setup_s + sweep_s ))) in all. Measured by benchmarks/readme_time.sh."
python3 - "$line" <<'EOF'
import re, sys
from pathlib import Path
path = Path("docs/BENCHMARKS.md")
text = path.read_text()
block = f"<!-- readme-time -->\n{sys.argv[1]}\n<!-- /readme-time -->"
pattern = re.compile(r"<!-- readme-time -->.*?<!-- /readme-time -->", re.S)
path.write_text(pattern.sub(block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n")
EOF
echo "$line"
echo "logs: $out/setup.log $out/sweep.log"
