package pgenv_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// startOrSkip starts a server of one kind ("container" or "local"), or skips
// when the machine cannot have one — unless $WORKPROOF_POSTGRES asks for that
// kind, as CI does, and then a missing backend fails the test.
func startOrSkip(t *testing.T, use string) *pgenv.Server {
	t.Helper()
	s, err := pgenv.Start(context.Background(), pgenv.Options{Use: use})
	if errors.Is(err, pgenv.ErrNoPostgres) && os.Getenv(pgenv.EnvBackend) != use {
		t.Skipf("no %s backend on this machine (set %s=%s to make this a failure): %v", use, pgenv.EnvBackend, use, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Run("ephemeral", func(t *testing.T) {
		s := startOrSkip(t, "local")
		if s.Kind() != "ephemeral" {
			t.Fatalf("Kind = %q", s.Kind())
		}
		pgenvtest.Conformance(t, s)
	})
	t.Run("container", func(t *testing.T) {
		s := startOrSkip(t, "container")
		if s.Kind() != "container" {
			t.Fatalf("Kind = %q", s.Kind())
		}
		pgenvtest.Conformance(t, s)
	})
	// The dsn backend against $WORKPROOF_DATABASE_URL when set, else against
	// a private server of this test standing in for somebody else's.
	t.Run("dsn", func(t *testing.T) {
		dsn := os.Getenv(pgenv.EnvDSN)
		if dsn == "" {
			host, err := pgenv.Start(context.Background(), pgenv.Options{IgnorePGEnv: true})
			if errors.Is(err, pgenv.ErrNoPostgres) {
				t.Skipf("no server to stand in for a dsn server: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { host.Close() })
			dsn = host.DSN()
		}
		s, err := pgenv.Start(context.Background(), pgenv.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind() != "dsn" {
			t.Fatalf("Kind = %q", s.Kind())
		}
		pgenvtest.Conformance(t, s)
	})
}
