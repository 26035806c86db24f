package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/workproof/workproof/sim/pgenv"
)

// startPrivate starts a Postgres server for one run alone, of the same kind
// as shared, so that restarting it touches no other run.
func startPrivate(ctx context.Context, shared *pgenv.Server, log *slog.Logger) (*pgenv.Server, error) {
	if shared.Kind() == "dsn" {
		return nil, fmt.Errorf("a Postgres restart needs a server private to the run, and this one is shared (%s): %w", shared.Kind(), ErrUnavailable)
	}
	srv, err := pgenv.Start(ctx, pgenv.Options{Ephemeral: true, Logger: log})
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
		e.rec.LeaseLost(inc.name, "postgres-restart")
	}
	if err := e.private.Restart(ctx); err != nil {
		return fmt.Errorf("sim: restart Postgres: %w", err)
	}
	// The harness's own idle connections died with the server.
	e.admin.Reset()
	e.api.Reset()
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

// InjectSQLError makes the next times writes (insert, update or delete) of
// slot's current incarnation — every live worker's when slot is "*" — to
// any of the system's tables (or to table alone, when not "") fail with a
// real Postgres error of SQLSTATE code, raised by the server in the
// worker's own session: a statement-level trigger the harness installs in
// the run's database and removes in ClearSQLErrors (and in Finish).
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
	id := fmt.Sprintf("workproof_fault_%d", e.sqlFaults)
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	quoted := make([]string, len(apps))
	for i, a := range apps {
		quoted[i] = quoteLiteral(a)
	}
	install := func(tx pgx.Tx) error {
		tables := []string{table}
		if table == "" {
			rows, err := tx.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
				AND tablename NOT LIKE 'workproof\_%' ORDER BY tablename`)
			if err != nil {
				return err
			}
			if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
		}
		idents := make([]string, len(tables))
		for i, t := range tables {
			idents[i] = pgx.Identifier{t}.Sanitize()
		}
		// Every table's lock at once, or none: holding one while waiting for
		// another would deadlock with a worker that holds the second (its
		// claim) and wants the first. A short lock_timeout gives up
		// instead, and the caller tries again.
		stmts := []string{
			`SET LOCAL lock_timeout = '50ms'`,
			`LOCK TABLE ` + strings.Join(idents, ", ") + ` IN SHARE ROW EXCLUSIVE MODE`,
			`CREATE SEQUENCE ` + id + `_n`,
			`CREATE FUNCTION ` + id + `() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	IF split_part(current_setting('application_name'), ' ', 1) IN (` + strings.Join(quoted, ", ") + `) THEN
		IF nextval('` + id + `_n') <= ` + fmt.Sprint(times) + ` THEN
			RAISE EXCEPTION 'workproof: injected SQL error ` + code + ` on %', TG_TABLE_NAME USING ERRCODE = '` + code + `';
		END IF;
	END IF;
	RETURN NULL;
END $f$`,
		}
		for _, t := range idents {
			stmts = append(stmts, `CREATE TRIGGER `+id+` BEFORE INSERT OR UPDATE OR DELETE ON `+t+
				` FOR EACH STATEMENT EXECUTE FUNCTION `+id+`()`)
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	for {
		err = pgx.BeginFunc(ctx, e.admin, install)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != SQLLockTimeout || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // a worker is inside a transaction: let it finish
	}
	if err != nil {
		return fmt.Errorf("sim: inject SQL error %s: %w", code, err)
	}
	e.mu.Lock()
	e.sqlIDs = append(e.sqlIDs, id)
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
	ids := e.sqlIDs
	e.sqlIDs = nil
	e.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.ServeTimeout)
	defer cancel()
	var errs []error
	for _, id := range ids {
		// CASCADE drops the function's triggers with it.
		for _, q := range []string{`DROP FUNCTION IF EXISTS ` + id + `() CASCADE`, `DROP SEQUENCE IF EXISTS ` + id + `_n`} {
			if _, err := e.admin.Exec(ctx, q); err != nil {
				errs = append(errs, err)
			}
		}
		e.rec.FaultOff(Postgres, "sql-error "+id)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sim: clear SQL errors: %w", err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
