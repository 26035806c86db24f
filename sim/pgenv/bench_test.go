//go:build linux

package pgenv

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// runDirs are the places an ephemeral cluster can live: the default (/dev/shm
// when it exists) and the disk behind os.TempDir(), for comparison.
func runDirs() []struct{ name, dir string } {
	dirs := []struct{ name, dir string }{{"default", ""}}
	if tmp := os.TempDir(); tmp != "/dev/shm" {
		dirs = append(dirs, struct{ name, dir string }{"tempdir", tmp})
	}
	return dirs
}

// BenchmarkStartFromCache measures Start of an ephemeral cluster once the
// initdb cache exists: copy the data directory, start postgres, wait until it
// accepts a connection (Close is not timed). Target ≤ 0.3 s.
func BenchmarkStartFromCache(b *testing.B) {
	ctx := context.Background()
	for _, rd := range runDirs() {
		b.Run(rd.name, func(b *testing.B) {
			opts := Options{Ephemeral: true, RunDir: rd.dir}
			warm, err := Start(ctx, opts) // fills the cache if needed
			if err != nil {
				b.Fatal(err)
			}
			warm.Close()
			var took []time.Duration
			for b.Loop() {
				t0 := time.Now()
				s, err := Start(ctx, opts)
				took = append(took, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportMedian(b, took)
		})
	}
}

// BenchmarkContainerStart measures Start of the container backend on the
// built-in engine: create and start a container from the image (present on
// the engine), wait until Postgres in it accepts a connection (Close, which
// removes the container, is not timed). Skipped without a Docker engine.
func BenchmarkContainerStart(b *testing.B) {
	needEngine(b)
	ctx := context.Background()
	opts := Options{Use: "container"}
	warm, err := Start(ctx, opts) // pulls the image if needed
	if err != nil {
		b.Fatal(err)
	}
	warm.Close()
	var took []time.Duration
	for b.Loop() {
		t0 := time.Now()
		s, err := Start(ctx, opts)
		took = append(took, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportMedian(b, took)
}

// BenchmarkCreateDatabase measures one clone of a small migrated template
// (CREATE DATABASE … TEMPLATE; the drop is not timed). Target ≤ 100 ms.
func BenchmarkCreateDatabase(b *testing.B) {
	ctx := context.Background()
	cases := []struct {
		name string
		opts Options
	}{}
	for _, rd := range runDirs() {
		cases = append(cases, struct {
			name string
			opts Options
		}{"ephemeral-" + rd.name, Options{Ephemeral: true, RunDir: rd.dir}})
	}
	if d, err := newDockerEngine(); err == nil && d.Ping(ctx) == nil {
		d.closeIdle()
		cases = append(cases, struct {
			name string
			opts Options
		}{"container", Options{Use: "container"}})
	}
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		cases = append(cases, struct {
			name string
			opts Options
		}{"dsn", Options{DSN: dsn}})
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Start(ctx, tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tpl, err := s.Template(ctx, "bench", func(ctx context.Context, p *pgxpool.Pool) error {
				_, err := p.Exec(ctx, `
					CREATE TABLE work (id bigserial PRIMARY KEY, kind text NOT NULL, args jsonb, run_at timestamptz NOT NULL DEFAULT now());
					CREATE INDEX ON work (run_at);
					CREATE TABLE instance (id bigserial PRIMARY KEY, name text UNIQUE, has_active_work bool NOT NULL DEFAULT false);
					INSERT INTO instance (name) SELECT 'i' || g FROM generate_series(1, 1000) g`)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			var took []time.Duration
			for b.Loop() {
				t0 := time.Now()
				db, err := s.CreateDatabase(ctx, tpl)
				took = append(took, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := db.Drop(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportMedian(b, took)
		})
	}
}

// reportMedian adds the median of single operations: on a shared machine the
// mean (ns/op) is pulled up by the few operations that waited for a CPU.
func reportMedian(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
}
