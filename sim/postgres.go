package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/pgenv"
)

// startPrivate starts a Postgres server for one run alone, of the same kind
// as shared (a cluster, a container), so that restarting it touches no
// other run.
func startPrivate(ctx context.Context, shared *pgenv.Server) (*pgenv.Server, error) {
	srv, err := shared.StartPrivate(ctx)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, fmt.Errorf("a Postgres restart needs a server private to the run, and this one (%s) is shared: %w", shared.Kind(), ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("sim: private server: %w", err)
	}
	return srv, nil
}

// CanRestartPostgres reports whether RestartPostgres can run: nil, or an
// error matching ErrUnavailable that says why not.
func (e *Env) CanRestartPostgres() error {
	if e.private == nil {
		return fmt.Errorf("a Postgres restart needs the run's own server (sim.Options.PrivateServer): %w", ErrUnavailable)
	}
	return nil
}

// restartBound bounds one restart of the run's server; the start itself
// takes ~0.2 s on a quiet machine, seconds on a loaded one.
const restartBound = time.Minute

// RestartPostgres crashes the run's own Postgres server (an immediate
// shutdown: every session is cut, nothing is checkpointed) and starts it
// again on the same address, as a database crash does. Every worker loses
// its sessions, and with them the claims they held. Commits Postgres
// acknowledged survive (synchronous_commit stays on).
func (e *Env) RestartPostgres(ctx context.Context) error {
	if err := e.CanRestartPostgres(); err != nil {
		return err
	}
	e.rec.FaultOn(Postgres, "restart")
	for _, inc := range e.liveIncarnations() {
		defer e.sessionLost(inc.name, "postgres-restart")()
	}
	// Once the server is down it must come back whatever ctx does: a
	// restart cut short by the end of a soak's traffic segment would leave
	// the run without a database for its checkpoint.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restartBound)
	defer cancel()
	if err := e.private.Restart(rctx); err != nil {
		return fmt.Errorf("sim: restart Postgres: %w", err)
	}
	// The harness's own idle connections died with the server.
	e.admin.Reset()
	e.mu.Lock()
	for _, c := range e.apis {
		c.pool.Reset()
	}
	e.mu.Unlock()
	e.rec.FaultOff(Postgres, "restart")
	return nil
}

// liveIncarnations returns the current incarnation of every slot that has
// not crashed, by slot name.
func (e *Env) liveIncarnations() []*incarnation {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*incarnation
	for _, s := range e.slots {
		if s.cur != nil && !s.cur.severed {
			out = append(out, s.cur)
		}
	}
	slices.SortFunc(out, func(a, b *incarnation) int { return strings.Compare(a.name, b.name) })
	return out
}

// SQL error codes an injected error can carry: the errors a worker's
// session meets under contention, each transient for a correct worker.
const (
	SQLSerializationFailure = "40001"
	SQLDeadlock             = "40P01"
	SQLLockTimeout          = "55P03"
	SQLStatementTimeout     = "57014"
)

// SQLErrorCodes lists the codes InjectSQLError takes, sorted.
func SQLErrorCodes() []string {
	return []string{SQLSerializationFailure, SQLDeadlock, SQLLockTimeout, SQLStatementTimeout}
}

// sqlFaultSchema is installed in the system's migrated template, so every
// run's database has it before any worker starts: a control table of the
// injected errors, and one statement-level trigger on each of the system's
// tables that raises the first matching one. Injecting then touches no
// table of the system, so it never waits for a lock a worker holds (it is
// injected from inside a worker's transaction, at a point of it).
const sqlFaultSchema = `
CREATE TABLE workproof_sql_faults (
	id     serial PRIMARY KEY,
	apps   text[] NOT NULL,  -- the sessions' application_name (first word): worker incarnations
	code   text NOT NULL,    -- the SQLSTATE raised
	times  int NOT NULL,     -- how many writes fail
	tables text[],           -- only writes to these; NULL: any
	seq    text NOT NULL     -- a sequence counting the writes it failed (not rolled back with them)
);
CREATE FUNCTION workproof_sql_fault() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE f record;
BEGIN
	FOR f IN SELECT * FROM workproof_sql_faults
	         WHERE split_part(current_setting('application_name'), ' ', 1) = ANY (apps)
	           AND (tables IS NULL OR TG_TABLE_NAME = ANY (tables))
	         ORDER BY id LOOP
		IF nextval(f.seq::regclass) <= f.times THEN
			RAISE EXCEPTION 'workproof: injected SQL error % on %', f.code, TG_TABLE_NAME USING ERRCODE = f.code;
		END IF;
	END LOOP;
	RETURN NULL;
END $f$;`

// installSQLFaults adds sqlFaultSchema to a freshly migrated database.
func installSQLFaults(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, sqlFaultSchema); err != nil {
		return fmt.Errorf("sim: install SQL faults: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
		AND tablename NOT LIKE 'workproof\_%' ORDER BY tablename`)
	if err != nil {
		return fmt.Errorf("sim: install SQL faults: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("sim: install SQL faults: %w", err)
	}
	for _, t := range tables {
		if _, err := db.Exec(ctx, `CREATE TRIGGER workproof_sql_fault BEFORE INSERT OR UPDATE OR DELETE ON `+
			pgx.Identifier{t}.Sanitize()+` FOR EACH STATEMENT EXECUTE FUNCTION workproof_sql_fault()`); err != nil {
			return fmt.Errorf("sim: install SQL faults on %s: %w", t, err)
		}
	}
	return nil
}

// InjectSQLError makes the next times writes (insert, update or delete) of
// slot's current incarnation — every live worker's when slot is "*" — to
// any of the system's tables (or to table alone, when not "") fail with a
// real Postgres error of SQLSTATE code, raised by the server in the
// worker's own session (by the trigger of sqlFaultSchema), until
// ClearSQLErrors (Finish clears them too).
func (e *Env) InjectSQLError(ctx context.Context, slot, code, table string, times int) error {
	if !slices.Contains(SQLErrorCodes(), code) {
		return fmt.Errorf("sim: SQL error code %q (want one of %v)", code, SQLErrorCodes())
	}
	if times < 1 {
		return fmt.Errorf("sim: SQL error times %d must be positive", times)
	}
	var apps []string
	if slot == "*" {
		for _, inc := range e.liveIncarnations() {
			apps = append(apps, inc.name)
		}
	} else {
		inc, err := e.current(slot)
		if err != nil {
			return err
		}
		apps = append(apps, inc.name)
	}
	if len(apps) == 0 {
		return nil // every worker is down: nothing to inject into
	}
	e.mu.Lock()
	e.sqlFaults++
	seq := fmt.Sprintf("workproof_sql_fault_%d", e.sqlFaults)
	e.mu.Unlock()
	var tables []string
	if table != "" {
		tables = []string{table}
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, e.admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE SEQUENCE `+seq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO workproof_sql_faults (apps, code, times, tables, seq) VALUES ($1, $2, $3, $4, $5)`,
			apps, code, times, tables, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("sim: inject SQL error %s: %w", code, err)
	}
	e.mu.Lock()
	e.sqlIDs = append(e.sqlIDs, seq)
	e.mu.Unlock()
	target := strings.Join(apps, ",") + "/" + Postgres
	if table != "" {
		target += "/" + table
	}
	e.rec.FaultOn(target, fmt.Sprintf("sql-error(%s,x%d)", code, times))
	return nil
}

// ClearSQLErrors removes every injected SQL error.
func (e *Env) ClearSQLErrors(ctx context.Context) error {
	e.mu.Lock()
	seqs := e.sqlIDs
	e.sqlIDs = nil
	e.mu.Unlock()
	if len(seqs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	if _, err := e.admin.Exec(ctx, `DELETE FROM workproof_sql_faults`); err != nil {
		return fmt.Errorf("sim: clear SQL errors: %w", err)
	}
	for _, seq := range seqs {
		if _, err := e.admin.Exec(ctx, `DROP SEQUENCE IF EXISTS `+seq); err != nil {
			return fmt.Errorf("sim: clear SQL errors: %w", err)
		}
	}
	e.rec.FaultOff(Postgres, "sql-error")
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
