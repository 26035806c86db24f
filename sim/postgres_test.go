package sim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func newPrivateEnv(t *testing.T, workers int) *sim.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: workers, Seed: 5, PrivateServer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// A Postgres restart cuts every session, and every change Postgres
// acknowledged before it survives it: the run converges valid.
func TestRestartPostgresKeepsAcknowledgedCommits(t *testing.T) {
	ctx := context.Background()
	e := newPrivateEnv(t, 2)
	var accepted []string
	for _, id := range []string{"i1", "i2", "i3", "i4"} {
		if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: id, Size: "small"}); err == nil {
			accepted = append(accepted, id)
		}
	}
	if len(accepted) != 4 {
		t.Fatalf("accepted %v before the restart", accepted)
	}
	if err := e.RestartPostgres(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := e.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != check.Valid {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Violations)
	}
	got := map[string]bool{}
	for _, in := range res.Input.State.Instances {
		got[in.ID] = true
	}
	for _, id := range accepted {
		if !got[id] {
			t.Errorf("acknowledged create of %s lost in the restart", id)
		}
	}
	if len(events(e, history.EventLeaseLost)) != 2 {
		t.Errorf("lease losses %v, want one per worker", events(e, history.EventLeaseLost))
	}
}

// A restart completes even when its caller's ctx is already done (a soak's
// traffic segment ending): the run must never be left without a server.
func TestRestartPostgresCompletesAfterCtxEnds(t *testing.T) {
	e := newPrivateEnv(t, 1)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.RestartPostgres(done); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Serve(ctx, "u", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatalf("serve after the restart: %v", err)
	}
	if res, err := e.Finish(ctx); err != nil || res.Verdict != check.Valid {
		t.Fatalf("finish: %v %s %v", err, res.Verdict, res.Violations)
	}
}

// Without a server of its own a run cannot restart Postgres: unavailable,
// never a silent no-op.
func TestRestartPostgresUnavailableOnSharedServer(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.RestartPostgres(context.Background()); !errors.Is(err, sim.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// An injected SQL error is a real server error in the chosen worker's
// session only, as many times as asked, and gone once cleared.
func TestInjectSQLError(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	// The worker's own sessions are named by its incarnation; a session of
	// that name stands in for it here, so the test controls the statement.
	// The worker itself is frozen, so that its polls (a claim is a write)
	// do not meet the errors first.
	if err := e.Kill("w1"); err != nil {
		t.Fatal(err)
	}
	inc, _ := e.Incarnation("w1")
	worker := connectAs(t, e, inc)
	other := connectAs(t, e, "someone-else")
	if err := e.InjectSQLError(ctx, "w1", sim.SQLSerializationFailure, "", 2); err != nil {
		t.Fatal(err)
	}
	write := func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `UPDATE instances SET state = state WHERE false`)
		return err
	}
	for i := range 2 {
		var pe *pgconn.PgError
		if err := write(worker); !errors.As(err, &pe) || pe.Code != sim.SQLSerializationFailure {
			t.Fatalf("write %d of the worker: err = %v, want SQLSTATE 40001", i+1, err)
		}
	}
	if err := write(worker); err != nil {
		t.Fatalf("third write of the worker: %v (the fault was for two)", err)
	}
	if err := write(other); err != nil {
		t.Fatalf("another session's write: %v", err)
	}
	if err := e.InjectSQLError(ctx, "w1", sim.SQLLockTimeout, "instances", 5); err != nil {
		t.Fatal(err)
	}
	if err := e.ClearSQLErrors(ctx); err != nil {
		t.Fatal(err)
	}
	if err := write(worker); err != nil {
		t.Fatalf("after clear: %v", err)
	}
	if err := e.InjectSQLError(ctx, "w1", "99999", "", 1); err == nil {
		t.Fatal("an unknown SQLSTATE must be refused")
	}
}

func connectAs(t *testing.T, e *sim.Env, app string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(e.Database().DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = app
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
