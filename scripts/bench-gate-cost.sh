#!/usr/bin/env bash
# What a gate costs as it grows: the default gate on kvx without explore
# (simrun gate -families named,crash,network,provider,chaos) for a grid of
# instance ids per drawn program (-instances) and worker slots (-workers),
# and for longer programs (-steps), each cell run several times. Each run
# prints one line: its cell, wall time, the machine's busy share over it,
# and per family its examples' median and longest time and their checks'
# median (the gate report's example_median_ms, example_max_ms,
# check_median_ms).
#
# Usage: scripts/bench-gate-cost.sh [runs]   (default 2)
#
# A run takes 15-30 s on 2 cores; the whole grid (12 cells) about 10 minutes
# at 2 runs. Run it on a quiet machine and quote the load line with the
# numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-2}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-gate-cost: runs must be a positive integer, not \"$runs\"" >&2; exit 2; }
echo "# cpus: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)  runs per cell: $runs"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/simrun" ./cmd/simrun

# busy: the jiffies all cores spent not idle, and all of them, from /proc/stat.
busy() { awk '/^cpu / { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print total - idle, total }' /proc/stat; }

cell() { # instances workers steps
	for r in $(seq "$runs"); do
		read -r b0 t0 < <(busy)
		s0=$(date +%s.%N)
		"$tmp/simrun" gate -families named,crash,network,provider,chaos -instances "$1" -workers "$2" -steps "$3" \
			-out "$tmp/out" >"$tmp/gate.log" 2>&1 || { echo "instances=$1 workers=$2 steps=$3 run $r: gate failed:"; tail -5 "$tmp/gate.log"; exit 1; }
		s1=$(date +%s.%N)
		read -r b1 t1 < <(busy)
		fams=$(awk '
			/"name":/ { gsub(/[",]/, "", $2); name = $2 }
			/"example_median_ms":/ { gsub(/,/, "", $2); med = $2 }
			/"example_max_ms":/ { gsub(/,/, "", $2); mx = $2 }
			/"check_median_ms":/ { gsub(/,/, "", $2); printf " %s=%.0f/%.0f/%.1fms", name, med, mx, $2 }
		' "$tmp/out/latest/report.json")
		awk -v c="instances=$1 workers=$2 steps=$3 run=$r" -v s0="$s0" -v s1="$s1" -v b="$((b1 - b0))" -v t="$((t1 - t0))" -v f="$fams" \
			'BEGIN { printf "%s wall=%.1fs busy=%.0f%%%s\n", c, s1 - s0, 100 * b / t, f }'
		rm -rf "$tmp/out"
	done
}

for instances in 1 3 10; do
	for workers in 2 4 8; do
		cell "$instances" "$workers" 20
	done
done
for steps in 10 40; do
	cell 3 2 "$steps"
done
