package nemesis

import (
	"context"

	"github.com/workproof/workproof/sim"
)

// Kind names of Postgres faults.
const (
	KindPostgresRestart = "postgres-restart" // the server crashes (immediate shutdown) and starts again
	KindSQLError        = "sql-error"        // a worker's next N writes fail with SQLSTATE Param
)

// restartKind crashes the run's own Postgres server and starts it again.
type restartKind struct{}

func (restartKind) Name() string { return KindPostgresRestart }
func (restartKind) Class() Class { return ClassPostgres }
func (restartKind) Doc() string {
	return "the run's Postgres server crashes (immediate shutdown) and starts again: every session is cut, acknowledged commits survive; only on a server private to the run"
}
func (restartKind) Draw(Drawer, Space) Fault   { return Fault{Kind: KindPostgresRestart} }
func (restartKind) Check(Fault, Space) error   { return nil }
func (restartKind) Available(e *sim.Env) error { return e.CanRestartPostgres() }
func (restartKind) Inject(ctx context.Context, e *sim.Env, _ Fault) error {
	return e.RestartPostgres(ctx)
}

// sqlErrorKind makes a worker's writes fail with a real server error.
type sqlErrorKind struct{ always }

func (sqlErrorKind) Name() string { return KindSQLError }
func (sqlErrorKind) Class() Class { return ClassPostgres }
func (sqlErrorKind) Doc() string {
	return "a worker's next N writes (to any of the system's tables, or Target's) fail with a real Postgres error: serialization failure, deadlock, lock timeout or statement timeout"
}
func (sqlErrorKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: KindSQLError, Worker: s.drawWorker(d, true), Param: pick(d, "code", sim.SQLErrorCodes()), N: pick(d, "times", times)}
}
func (sqlErrorKind) Check(f Fault, s Space) error {
	if err := s.checkWorker(f.Worker, true); err != nil {
		return err
	}
	if err := checkN(f.N, 1, 1000, "times"); err != nil {
		return err
	}
	return checkParam(f.Param, sim.SQLErrorCodes())
}
func (sqlErrorKind) Inject(ctx context.Context, e *sim.Env, f Fault) error {
	return e.InjectSQLError(ctx, f.Worker, f.Param, f.Target, f.N)
}
