package pgenvtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

func TestMain(m *testing.M) { pgenvtest.Main(m) }

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL); INSERT INTO kv VALUES ('seed', 'from template')`)
	return err
}

// Each DB is a separate clone of the migrated template: writes to one are
// invisible in the other, and both start with the template's rows.
func TestDBIsolatedClones(t *testing.T) {
	ctx := t.Context()
	a := pgenvtest.Pool(t, pgenvtest.DB(t, "pgenvtest", migrate))
	b := pgenvtest.Pool(t, pgenvtest.DB(t, "pgenvtest", migrate))
	if _, err := a.Exec(ctx, `INSERT INTO kv VALUES ('only', 'a')`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pool *pgxpool.Pool
		want int
	}{{"a", a, 2}, {"b", b, 1}} {
		var n int
		if err := tc.pool.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("%s: %d rows, want %d", tc.name, n, tc.want)
		}
	}
}

func TestParallelDBs(t *testing.T) {
	for _, name := range []string{"p1", "p2", "p3", "p4"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool := pgenvtest.Pool(t, pgenvtest.DB(t, "pgenvtest", migrate))
			var v string
			if err := pool.QueryRow(t.Context(), `SELECT v FROM kv WHERE k = 'seed'`).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != "from template" {
				t.Errorf("seed = %q", v)
			}
		})
	}
}
