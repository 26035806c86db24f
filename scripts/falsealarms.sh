#!/usr/bin/env bash
# False-alarm job: runs the reference system (kvx) through every family many
# times with different root seeds and counts the examples and violations. The
# reference is correct by construction, so every violation is a false alarm
# of the harness: the job fails if there is one, and keeps its report.
#
# Usage: scripts/falsealarms.sh [runs] [checks]   (defaults: 20, 200)
#   runs    gates, with root seeds 1..runs (each runs the whole explore family)
#   checks  programs drawn per property family in each gate
# A run of the defaults draws runs x 4 x checks programs (16,000) and runs
# runs x ~850 explore experiments and runs x 21 named scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
checks=${2:-200}
out=${FALSEALARMS_OUT:-out/falsealarms}
mkdir -p "$out"
go build -o "$out/simrun" ./cmd/simrun
examples=0 bad=0 start=$SECONDS
for seed in $(seq "$runs"); do
	log="$out/gate-seed$seed.log"
	set +e
	"$out/simrun" gate -system kvx -seed "$seed" -checks "$checks" -explore-all -out "$out" >"$log" 2>&1
	code=$?
	set -e
	n=$(awk '/^family / { for (i = 1; i <= NF; i++) if ($(i+1) == "examples") s += $i } END { print s + 0 }' "$log")
	examples=$((examples + n))
	if [ "$code" -ne 0 ]; then
		bad=$((bad + 1))
		echo "falsealarms: seed $seed: exit $code — see $log and $(readlink -f "$out/latest")"
		grep -E '^(FAIL|\?)|^    [a-z-]+: ' "$log" | head -20 || true
	else
		echo "falsealarms: seed $seed: valid, $n examples ($((SECONDS - start))s so far)"
	fi
done
echo "falsealarms: $examples examples in $runs gates on the reference, $bad not valid, $((SECONDS - start))s"
[ "$bad" -eq 0 ]
