#!/usr/bin/env bash
# Claim throughput of the work runner against pgbench running the same
# transaction (work/testdata/pgbench_claim*.sql: claim one row, enqueue one
# follow-up, commit; statement by statement with a NOTIFY per follow-up and
# without, and the runner's own statements in the runner's own round trips,
# for a follow-up of Enqueue and of Tx.EnqueueAtCommit) on the same Postgres
# cluster, plus the runner's no-op drain rate for both claim strategies
# (BenchmarkClaim).
#
# Usage: scripts/bench-pgbench.sh [benchtime] [rounds]   (defaults: 3s, 5)
#
# The runner-vs-pgbench comparison alternates the two for several rounds and
# reports the median of the per-round ratios, so that load from other
# processes hits both alike. Each round also gives the CPU per item of the
# client (the runner's process, or pgbench) and of the whole machine: on a
# machine the two saturate, the rate is the cores divided by the latter.
#
# Postgres comes from package sim/pgenv: $WORKPROOF_DATABASE_URL when set,
# else a private ephemeral cluster (fsync off). Quote the server line with
# the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

benchtime=${1:-3s}
rounds=${2:-5}
command -v pgbench >/dev/null || { echo "bench-pgbench: pgbench not on PATH" >&2; exit 1; }

if [[ -n "${WORKPROOF_DATABASE_URL:-}" ]] && command -v psql >/dev/null; then
	echo "# server: $(psql "$WORKPROOF_DATABASE_URL" -Atc "SELECT 'PostgreSQL ' || current_setting('server_version') || ', fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit')")"
else
	echo "# server: ephemeral (sim/pgenv fast settings: fsync=off, full_page_writes=off, synchronous_commit=on)"
fi
echo "# cpus: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)  benchtime: $benchtime  rounds: $rounds"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/work.test" ./work/
cd work # the benchmarks read testdata/ relative to the package

bench() { "$tmp/work.test" -test.run '^$' -test.bench "$1" -test.benchtime "$benchtime" | grep '^Benchmark'; }
# rate NAME UNIT: the figure in UNIT (items/s, client-µs/item, machine-µs/item) of the last line matching NAME
rate() { awk -v name="$1" -v unit="$2" 'index($1, name) == 1 { for (i = 1; i < NF; i++) if ($(i+1) == unit) r = $i } END { print r }'; }

echo
bench 'BenchmarkClaim$|BenchmarkClaimFollowUp|BenchmarkPgbench' | tee "$tmp/table"

# compare POLICY RUNNER PGBENCH: alternating rounds of the runner at 4
# workers and pgbench -c 4 on one notification policy, and their median ratio.
compare() {
	local policy=$1 runner=$2 pg=$3
	echo
	echo "# runner (skip-locked, 4 workers, claim + follow-up) vs pgbench -c 4, $policy, alternating"
	: >"$tmp/ratios"
	for i in $(seq "$rounds"); do
		bench "$runner\$" >"$tmp/r"
		bench "$pg\$" >"$tmp/p"
		r=$(rate "$runner" items/s <"$tmp/r") p=$(rate "$pg" items/s <"$tmp/p")
		awk -v i="$i" -v r="$r" -v p="$p" -v rc="$(rate "$runner" client-µs/item <"$tmp/r")" -v pc="$(rate "$pg" client-µs/item <"$tmp/p")" \
			-v rm="$(rate "$runner" machine-µs/item <"$tmp/r")" -v pm="$(rate "$pg" machine-µs/item <"$tmp/p")" \
			'BEGIN { printf "round %d: runner %.0f items/s, pgbench %.0f tps, %.0f%%; CPU per item: client %.0f against %.0f µs, machine %.0f against %.0f µs\n", i, r, p, 100 * r / p, rc, pc, rm, pm }'
		awk -v r="$r" -v p="$p" 'BEGIN { print r / p }' >>"$tmp/ratios"
	done
	sort -g "$tmp/ratios" | awk -v policy="$policy" '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "median runner / pgbench, %s: %.0f%% (range %.0f-%.0f%%; target >= 100%%)\n", policy, 100 * m, 100 * a[1], 100 * a[NR] }'
}
# The runner's default notifications (a follow-up notifies at most every
# 100ms) against pgbench without NOTIFY: first pgbench sending the claim +
# follow-up transaction statement by statement (pgbench_claim_quiet.sql),
# with the follow-up inserted by Enqueue and then by Tx.EnqueueAtCommit;
# then pgbench sending the runner's own statements in the runner's round
# trips (pgbench_claim_runner*.sql); last, both notifying on every
# follow-up (the runner's listener takes each notification; pgbench has no
# listener).
fu=BenchmarkClaimFollowUp/strategy=skip-locked/workers=4
pb=BenchmarkPgbench/clients=4
compare "Enqueue vs the transaction statement by statement" "$fu/notify=spaced/enqueue=tx" "$pb/notify=none"
compare "EnqueueAtCommit vs the transaction statement by statement" "$fu/notify=spaced/enqueue=at-commit" "$pb/notify=none"
compare "Enqueue vs the runner's statements and round trips (2)" "$fu/notify=spaced/enqueue=tx" "$pb/notify=none-runner-pipeline"
compare "EnqueueAtCommit vs the runner's statements and round trips (1)" "$fu/notify=spaced/enqueue=at-commit" "$pb/notify=none-runner-at-commit"
compare "a notification per follow-up, Enqueue vs statement by statement" "$fu/notify=every/enqueue=tx" "$pb/notify=every"
