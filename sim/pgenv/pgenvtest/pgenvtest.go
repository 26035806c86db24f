package pgenvtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/workproof/workproof/sim/pgenv"
)

// shared is the one server of a test binary. It is package state because a
// test binary has exactly one lifetime; Main owns its end.
var shared struct {
	mu      sync.Mutex
	main    bool // Main is running, so someone will close the server
	started bool
	srv     *pgenv.Server
	err     error
}

// Main runs the tests, closes the shared server, and then fails the binary if
// goroutines leaked (goleak; opts are passed to goleak.Find, e.g.
// goleak.IgnoreTopFunction). Call it from TestMain.
func Main(m *testing.M, opts ...goleak.Option) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()

	stop := closeOnInterrupt()
	code := m.Run()
	stop()
	if err := closeShared(); err != nil {
		fmt.Fprintf(os.Stderr, "pgenvtest: closing the shared server: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "pgenvtest: goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// closeOnInterrupt closes the shared server when the test binary is
// interrupted, then dies of the same signal, so an ephemeral cluster's
// directory does not outlive a Ctrl-C.
func closeOnInterrupt() (stop func()) {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	exited := make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer close(exited)
		select {
		case sig := <-ch:
			fmt.Fprintf(os.Stderr, "pgenvtest: %v: closing the shared Postgres server\n", sig)
			_ = closeShared()
			signal.Reset(sig)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(sig)
			}
			time.Sleep(time.Second)
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
	}
}

func closeShared() error {
	shared.mu.Lock()
	srv := shared.srv
	shared.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// Server returns the test binary's shared server, starting it on first use
// in pgenv's resolution order: $WORKPROOF_DATABASE_URL if set, else a
// container if a Docker engine answers, else an ephemeral cluster
// ($WORKPROOF_POSTGRES=dsn|container|local overrides; PG* variables are
// ignored here). It fails the
// test if there is none, or if TestMain does not call Main (nobody would close
// the server).
func Server(t testing.TB) *pgenv.Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("pgenvtest: call pgenvtest.Main(m) from TestMain: it closes the shared Postgres server")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.srv, shared.err = pgenv.Start(ctx, options())
		cancel()
	}
	if shared.err != nil {
		t.Fatalf("pgenvtest: no Postgres server: %v", shared.err)
	}
	return shared.srv
}

// options follows pgenv's resolution order ($WORKPROOF_DATABASE_URL, a
// Docker engine, the machine's binaries; $WORKPROOF_POSTGRES overrides it)
// except for the PG* variables: stray ones must not send tests to some other
// server. The choice is logged to stderr, which go test shows with -v or
// when the package fails.
func options() pgenv.Options {
	return pgenv.Options{
		IgnorePGEnv: true,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// DB returns a fresh database cloned from the template called name (made once
// per test binary by running migrate; nil migrate: empty). It is dropped in
// t.Cleanup.
func DB(t testing.TB, name string, migrate func(context.Context, *pgxpool.Pool) error) *pgenv.Database {
	t.Helper()
	srv := Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tpl, err := srv.Template(ctx, name, migrate)
	if err != nil {
		t.Fatalf("pgenvtest: template %q: %v", name, err)
	}
	db, err := srv.CreateDatabase(ctx, tpl)
	if err != nil {
		t.Fatalf("pgenvtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			t.Errorf("pgenvtest: %v", err)
		}
	})
	return db
}

// Pool returns a pool on d, closed in t.Cleanup (before d is dropped when d
// came from DB earlier in the same test).
func Pool(t testing.TB, d *pgenv.Database) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), d.DSN())
	if err != nil {
		t.Fatalf("pgenvtest: pool on %s: %v", d.Name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}
