-- One claim + one follow-up, as the work runner does it, in raw SQL: the
-- ceiling the runner is compared with (BenchmarkPgbench, scripts/bench-pgbench.sh).
-- Every transaction deletes one runnable row and inserts one, so a preloaded
-- queue keeps its size. The runner adds to this its timeouts (in the
-- claim) and a SAVEPOINT (pipelined with the DELETE: no extra round trip).
-- The claim looks from a floor first, as the runner's does (work.floor):
-- the due time of the client's last item less 100ms, kept in the session
-- (pgbench cannot carry a result into the next transaction in a pipeline),
-- and from the head of the queue in one claim out of 32 on average and
-- whenever nothing is claimable from the floor on.
\set head random(1, 32)
BEGIN;
DELETE FROM work WHERE id = coalesce((
	SELECT id FROM work WHERE NOT parked AND run_after <= now()
		AND run_after >= CASE WHEN :head = 1 THEN NULL ELSE nullif(current_setting('bench.floor', true), '')::timestamptz END
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1), (
	SELECT id FROM work WHERE NOT parked AND run_after <= now()
	ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1))
RETURNING id, time, kind, key, spec, attempts, set_config('bench.floor', (run_after - interval '100 ms')::text, false);
WITH ins AS (
	INSERT INTO work (kind, key, spec, run_after)
	VALUES ('noop', '', '{}', now())
	RETURNING id, kind
)
SELECT ins.id FROM ins, LATERAL pg_notify('work', ins.kind);
COMMIT;
