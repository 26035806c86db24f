#!/usr/bin/env bash
# Claim throughput of the work runner against pgbench running the same
# transaction (work/testdata/pgbench_claim.sql: claim one row, enqueue one
# follow-up, commit) on the same Postgres cluster, and the runner's no-op
# drain rate for both claim strategies.
#
# Usage: scripts/bench-pgbench.sh [benchtime]      (default 3s)
#
# Postgres comes from package sim/pgenv: $WORKPROOF_DATABASE_URL when set,
# else a private ephemeral cluster (fsync off). State which one you used
# when you quote the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

benchtime=${1:-3s}
command -v pgbench >/dev/null || { echo "bench-pgbench: pgbench not on PATH" >&2; exit 1; }

if [[ -n "${WORKPROOF_DATABASE_URL:-}" ]] && command -v psql >/dev/null; then
	echo "# server: $(psql "$WORKPROOF_DATABASE_URL" -Atc "SELECT 'PostgreSQL ' || current_setting('server_version') || ', fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit')")"
else
	echo "# server: ephemeral (sim/pgenv fast settings: fsync=off, synchronous_commit=off)"
fi
echo "# cpus: $(nproc)  benchtime: $benchtime"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'BenchmarkClaim$|BenchmarkClaimFollowUp|BenchmarkPgbench' -benchtime "$benchtime" -count 1 ./work/ | tee "$out"

# items/s of a benchmark line
rate() { awk -v name="$1" '$1 ~ name { for (i = 1; i < NF; i++) if ($(i+1) == "items/s") print $i }' "$out" | tail -1; }
runner=$(rate '^BenchmarkClaimFollowUp/strategy=skip-locked/workers=4')
pgb=$(rate '^BenchmarkPgbench/clients=4')
if [[ -n "$runner" && -n "$pgb" ]]; then
	awk -v r="$runner" -v p="$pgb" 'BEGIN { printf "\nrunner (skip-locked, 4 workers, claim+follow-up): %.0f items/s\npgbench (-c 4, same transaction):                 %.0f tps\nrunner / pgbench: %.0f%% (target >= 80%%)\n", r, p, 100 * r / p }'
fi
