package pgcontainer_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/scenarios"
	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/pgenv/pgcontainer"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// In CI an interrupted rapid run must not leave a junk fail file.
	if os.Getenv("CI") != "" {
		_ = flag.Set("rapid.nofailfile", "true")
	}
	goleak.VerifyTestMain(m)
}

// start gives a server from the testcontainers engine, or skips when no
// Docker engine answers — unless WORKPROOF_POSTGRES=container asks for one,
// as CI does.
func start(t *testing.T) (*pgenv.Server, *pgcontainer.Engine) {
	t.Helper()
	e := pgcontainer.New(pgcontainer.Options{})
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgenv.Start(ctx, pgenv.Options{Use: "container", Engine: e})
	if errors.Is(err, pgenv.ErrNoPostgres) && os.Getenv(pgenv.EnvBackend) != "container" {
		t.Skipf("no Docker engine for testcontainers-go (set %s=container to make this a failure): %v", pgenv.EnvBackend, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind() != "container" {
		t.Fatalf("Kind = %q", s.Kind())
	}
	return s, e
}

// The testcontainers engine keeps every promise the built-in one does.
func TestConformance(t *testing.T) {
	s, _ := start(t)
	pgenvtest.Conformance(t, s)
}

// A workproof Verify family against Postgres in a container started by
// testcontainers-go.
func TestVerifyCrashFamily(t *testing.T) {
	s, _ := start(t)
	t.Cleanup(func() { s.Close() })
	scenarios.Verify(t, kvx.New(kvx.Options{}), scenarios.Options{
		Server:   s,
		Families: []string{scenarios.FamilyCrash},
		Budget:   scenarios.Budget{Checks: 4},
	})
}
