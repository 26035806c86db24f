package pgenvtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/pgenv"
)

// Conformance checks that s keeps every promise of package pgenv, whichever
// backend it came from (as testing/fstest.TestFS does for a file system):
// templates and isolated clones, never dropping a database it did not
// create, Close that cleans up and is idempotent, Restart and StartPrivate
// on a private server and errors.ErrUnsupported on a dsn one,
// synchronous_commit on. It takes s over and closes it.
//
// It starts one more server through StartPrivate on a private server; on a
// dsn server it creates and drops databases named workproof_….
func Conformance(t *testing.T, s *pgenv.Server) {
	t.Helper()
	ctx := context.Background()
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	private := s.Kind() != "dsn"
	adminDSN := s.DSN()

	t.Run("Server", func(t *testing.T) {
		host, port, err := net.SplitHostPort(s.HostPort())
		if err != nil || port == "" {
			t.Errorf("HostPort = %q: %v", s.HostPort(), err)
		}
		if ip := net.ParseIP(host); private && (ip == nil || !ip.IsLoopback()) {
			t.Errorf("HostPort host %q of a private server is not loopback", host)
		}
		if v := s.Version(); v == "" || v[0] < '1' || v[0] > '9' {
			t.Errorf("Version = %q", v)
		}
		if private {
			// With it off, a Restart loses acknowledged commits.
			if got := show(t, adminDSN, "synchronous_commit"); got != "on" {
				t.Errorf("synchronous_commit = %q, want on", got)
			}
			if got := show(t, adminDSN, "listen_addresses"); got != "127.0.0.1" {
				t.Errorf("listen_addresses = %q, want 127.0.0.1", got)
			}
			if s.Settings()["fsync"] != "off" {
				t.Errorf("Settings() = %v, want the fast defaults (fsync off)", s.Settings())
			}
		}
	})

	tpl, err := s.Template(ctx, "Conformance-Test", migrateKV)
	if err != nil {
		t.Fatalf("Template: %v", err)
	}

	t.Run("TemplateAndClones", func(t *testing.T) {
		if !strings.HasPrefix(tpl.Name, "workproof_tpl_conformance_test_") {
			t.Errorf("template name %q", tpl.Name)
		}
		again, err := s.Template(ctx, "Conformance-Test", nil)
		if err != nil || again != tpl {
			t.Errorf("second Template call: %p, %v; want %p", again, err, tpl)
		}
		a, err := s.CreateDatabase(ctx, tpl)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.CreateDatabase(ctx, tpl)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(a.Name, "workproof_conformance_test_") || len(a.Name) > 63 || a.Name == b.Name {
			t.Errorf("database names %q, %q", a.Name, b.Name)
		}
		exec(t, a.DSN(), `INSERT INTO kv VALUES ('only', 'a')`)
		if n := count(t, a.DSN()); n != 2 {
			t.Errorf("clone a: %d rows, want 2", n)
		}
		if n := count(t, b.DSN()); n != 1 {
			t.Errorf("clone b: %d rows, want 1 (the template's)", n)
		}
		via, err := pgconn.ParseConfig(a.DSNVia("127.0.0.1:9"))
		if err != nil || via.Host != "127.0.0.1" || via.Port != 9 || via.Database != a.Name {
			t.Errorf("DSNVia: %+v, %v", via, err)
		}
		for _, d := range []*pgenv.Database{a, b} {
			if err := d.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			if exists(t, adminDSN, d.Name) {
				t.Errorf("%s exists after Drop", d.Name)
			}
			if err := d.Drop(ctx); err != nil {
				t.Errorf("second Drop: %v", err)
			}
		}
	})

	t.Run("NeverDropsForeign", func(t *testing.T) {
		foreign := fmt.Sprintf("workproof_foreign_%d_%d", os.Getpid(), time.Now().UnixNano())
		exec(t, adminDSN, "CREATE DATABASE "+pgx.Identifier{foreign}.Sanitize())
		if !private {
			t.Cleanup(func() {
				exec(t, adminDSN, "DROP DATABASE IF EXISTS "+pgx.Identifier{foreign}.Sanitize()+" WITH (FORCE)")
			})
		}
		ours, err := s.CreateDatabase(ctx, tpl)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []*pgenv.Database{{Name: foreign}, {Name: ours.Name}, {Name: tpl.Name}, nil} {
			if err := d.Drop(ctx); !errors.Is(err, pgenv.ErrNotOwned) {
				t.Errorf("Drop(%v) = %v, want ErrNotOwned", d, err)
			}
		}
		if !exists(t, adminDSN, foreign) || !exists(t, adminDSN, ours.Name) {
			t.Fatal("a refused Drop dropped something")
		}
	})

	t.Run("Restart", func(t *testing.T) {
		if !private {
			if err := s.Restart(ctx); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Restart on a dsn server: %v, want errors.ErrUnsupported", err)
			}
			return
		}
		checkRestart(t, s, tpl)
	})

	t.Run("StartPrivate", func(t *testing.T) {
		p, err := s.StartPrivate(ctx)
		if !private {
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("StartPrivate on a dsn server: %v, want errors.ErrUnsupported", err)
			}
			if p != nil {
				p.Close()
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		if p.Kind() != s.Kind() || p.HostPort() == s.HostPort() {
			t.Errorf("private server: kind %q at %s; want kind %q at another address than %s", p.Kind(), p.HostPort(), s.Kind(), s.HostPort())
		}
		if p.Settings()["fsync"] != s.Settings()["fsync"] {
			t.Errorf("private server settings %v differ from %v", p.Settings(), s.Settings())
		}
		ptpl, err := p.Template(ctx, "kv", migrateKV)
		if err != nil {
			t.Fatal(err)
		}
		checkRestart(t, p, ptpl)
		pStarted := show(t, p.DSN(), "pg_postmaster_start_time")
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if stillServes(p.DSN(), pStarted) {
			t.Error("the private server still accepts connections after Close")
		}
		// The original is untouched by the private one's life.
		if n := count(t, mustClone(t, s, tpl).DSN()); n != 1 {
			t.Errorf("original server after StartPrivate: %d rows", n)
		}
	})

	t.Run("Close", func(t *testing.T) {
		kept := mustClone(t, s, tpl)
		started := show(t, adminDSN, "pg_postmaster_start_time")
		var wg sync.WaitGroup
		errs := make([]error, 3)
		closed = true
		for i := range errs { // concurrent, as an interrupt handler and a defer may
			wg.Go(func() { errs[i] = s.Close() })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close again: %v", err)
		}
		if err := kept.Drop(ctx); err != nil {
			t.Errorf("Drop after Close: %v", err)
		}
		if _, err := s.CreateDatabase(ctx, tpl); !errors.Is(err, pgenv.ErrClosed) {
			t.Errorf("CreateDatabase after Close: %v, want ErrClosed", err)
		}
		if private {
			if stillServes(adminDSN, started) {
				t.Error("the server still accepts connections after Close")
			}
			return
		}
		for _, name := range []string{kept.Name, tpl.Name} {
			if exists(t, adminDSN, name) {
				t.Errorf("Close left %s behind", name)
			}
		}
	})
}

func migrateKV(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL); INSERT INTO kv VALUES ('seed', 'template')`)
	return err
}

// checkRestart: acknowledged commits survive Restart, connections from
// before it are cut, the address stays, and the server works after it.
func checkRestart(t *testing.T, s *pgenv.Server, tpl *pgenv.Template) {
	t.Helper()
	ctx := context.Background()
	db := mustClone(t, s, tpl)
	before, startedBefore := s.HostPort(), show(t, s.DSN(), "pg_postmaster_start_time")
	conn, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i := range 200 {
		if _, err := conn.Exec(ctx, `INSERT INTO kv VALUES ($1, 'x')`, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.HostPort() != before {
		t.Errorf("HostPort changed from %s to %s", before, s.HostPort())
	}
	if after := show(t, s.DSN(), "pg_postmaster_start_time"); after == startedBefore {
		t.Errorf("postmaster start time unchanged (%s): no restart happened", after)
	}
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("a connection from before the restart still works")
	}
	if n := count(t, db.DSN()); n != 201 {
		t.Errorf("after Restart: %d rows, want 201 (acknowledged commits lost)", n)
	}
	if _, err := s.CreateDatabase(ctx, tpl); err != nil {
		t.Errorf("CreateDatabase after Restart: %v", err)
	}
}

func mustClone(t *testing.T, s *pgenv.Server, tpl *pgenv.Template) *pgenv.Database {
	t.Helper()
	db, err := s.CreateDatabase(context.Background(), tpl)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// show reads a setting (or, for pg_postmaster_start_time, that function)
// through a connection of its own.
func show(t *testing.T, dsn, name string) string {
	t.Helper()
	q := "SHOW " + name
	if name == "pg_postmaster_start_time" {
		q = "SELECT pg_postmaster_start_time()::text"
	}
	var v string
	withConn(t, dsn, func(c *pgx.Conn) error { return c.QueryRow(context.Background(), q).Scan(&v) })
	return v
}

func exists(t *testing.T, dsn, db string) bool {
	t.Helper()
	var ok bool
	withConn(t, dsn, func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&ok)
	})
	return ok
}

func count(t *testing.T, dsn string) int {
	t.Helper()
	var n int
	withConn(t, dsn, func(c *pgx.Conn) error { return c.QueryRow(context.Background(), `SELECT count(*) FROM kv`).Scan(&n) })
	return n
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	withConn(t, dsn, func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), sql)
		return err
	})
}

func withConn(t *testing.T, dsn string, f func(*pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := f(c); err != nil {
		t.Fatal(err)
	}
}

// stillServes reports whether the server that started at startTime still
// answers at dsn (another server that took the freed port does not count).
func stillServes(dsn, startTime string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false
	}
	defer c.Close(ctx)
	var st string
	err = c.QueryRow(ctx, "SELECT pg_postmaster_start_time()::text").Scan(&st)
	return err == nil && st == startTime
}
