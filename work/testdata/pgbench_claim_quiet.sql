-- pgbench_claim.sql without its pg_notify: the transaction of a runner whose
-- follow-ups notify at most once per RunnerOptions.NotifyEvery (its default),
-- where a notification every 100ms costs nothing measurable.
-- One claim + one follow-up, as the work runner does it, in raw SQL: the
-- ceiling the runner is compared with (BenchmarkPgbench, scripts/bench-pgbench.sh).
-- Every transaction deletes one runnable row and inserts one, so a preloaded
-- queue keeps its size. The runner adds to this its timeouts (in the
-- claim) and a SAVEPOINT (pipelined with the DELETE: no extra round trip).
-- The claim looks from a floor, as the runner's does (work.floor): the due
-- time of the client's last item less 100ms, kept in the session (pgbench
-- cannot carry a result into the next transaction in a pipeline); one
-- claim in 32 on average looks from the head of the queue instead. (The
-- runner also looks from the head right after a claim from its floor found
-- nothing; on this steady queue none does.)
\set head random(1, 32)
BEGIN;
\if :head = 1
DELETE FROM work WHERE id = (
	SELECT id FROM work WHERE NOT parked AND run_after <= now()
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts, set_config('bench.floor', (run_after - interval '100 ms')::text, false);
\else
DELETE FROM work WHERE id = (
	SELECT id FROM work WHERE NOT parked AND run_after <= now()
		AND run_after >= coalesce(nullif(current_setting('bench.floor', true), '')::timestamptz, '-infinity')
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts, set_config('bench.floor', (run_after - interval '100 ms')::text, false);
\endif
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ('noop', '', '{}', now())
	RETURNING id, kind
)
SELECT ins.id FROM ins;
COMMIT;
