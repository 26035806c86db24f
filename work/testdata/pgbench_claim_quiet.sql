-- pgbench_claim.sql without its pg_notify: the transaction of a runner whose
-- follow-ups notify at most once per RunnerOptions.NotifyEvery (its default),
-- where a notification every 100ms costs nothing measurable.
-- One claim + one follow-up, as the work runner does it, in raw SQL: the
-- ceiling the runner is compared with (BenchmarkPgbench, scripts/bench-pgbench.sh).
-- Every transaction deletes one runnable row and inserts one, so a preloaded
-- queue keeps its size. The runner adds to this its set_config and SAVEPOINT
-- (pipelined with the DELETE, so no extra round trip).
BEGIN;
DELETE FROM work WHERE id = (
	SELECT id FROM work WHERE NOT parked AND run_after <= now()
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, time, kind, key, spec, attempts;
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ('noop', '', '{}', now())
	RETURNING id, kind
)
SELECT ins.id FROM ins;
COMMIT;
