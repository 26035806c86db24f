package work_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/work"
)

// countDone is an Observer that closes all once n items are done.
type countDone struct {
	n    int64
	done atomic.Int64
	all  chan struct{}
}

func (c *countDone) Begin(work.Item) func(work.Outcome) {
	return func(o work.Outcome) {
		if o == work.OutcomeDone && c.done.Add(1) == c.n {
			close(c.all)
		}
	}
}

func preload(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO work (kind) SELECT 'noop' FROM generate_series(1, $1)`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE work`); err != nil {
		b.Fatal(err)
	}
}

// runUntil runs a runner until c says enough, and reports items/s.
func runUntil(b *testing.B, pool *pgxpool.Pool, opts work.RunnerOptions, c *countDone) {
	b.Helper()
	opts.Observer = c
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	b.ResetTimer()
	m := startCPU()
	t0 := time.Now()
	go func() { ran <- work.NewRunner(pool, opts).Run(ctx) }()
	<-c.all
	elapsed := time.Since(t0)
	m.report(b, c.n, selfCPU()-m.self)
	b.StopTimer()
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(c.n)/elapsed.Seconds(), "items/s")
}

// cpuMeter says where the CPU of a run went, per item: the client's (this
// process, or pgbench) and the whole machine's (Postgres, the kernel's
// loopback, the client), so that the runner and pgbench are compared on
// what each costs and not only on the rate a shared machine let them reach.
type cpuMeter struct {
	machine time.Duration // every CPU's busy time at the start
	self    time.Duration // this process's CPU at the start
}

func startCPU() cpuMeter { return cpuMeter{machine: machineCPU(), self: selfCPU()} }

// report adds client-µs/item (client is the CPU the client used since the
// meter started) and machine-µs/item.
func (m cpuMeter) report(b *testing.B, items int64, client time.Duration) {
	if items <= 0 {
		return
	}
	b.ReportMetric(float64(client.Microseconds())/float64(items), "client-µs/item")
	if busy := machineCPU() - m.machine; busy > 0 {
		b.ReportMetric(float64(busy.Microseconds())/float64(items), "machine-µs/item")
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the busy time of every CPU (/proc/stat; 0 where there is
// none), at the kernel's tick of 10ms: enough over a run of seconds.
func machineCPU() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// BenchmarkClaim: claim + commit throughput with a no-op handler, draining a
// preloaded queue of b.N items.
func BenchmarkClaim(b *testing.B) {
	for _, s := range []work.Strategy{work.SkipLocked, work.Seed} {
		for _, w := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("strategy=%s/workers=%d", s, w), func(b *testing.B) {
				pool := newPool(b, newDB(b).DSN(), int32(w+2))
				preload(b, pool, b.N)
				runUntil(b, pool, work.RunnerOptions{
					Handlers: map[string]work.Handler{"noop": func(context.Context, *work.Tx, work.Item) error { return nil }},
					Workers:  w,
					Strategy: s,
				}, &countDone{n: int64(b.N), all: make(chan struct{})})
			})
		}
	}
}

// steadyQueue is the preloaded queue size of the follow-up benchmarks.
const steadyQueue = 1000

// BenchmarkClaimFollowUp: every item enqueues one follow-up, so the queue
// keeps its size: the same transaction as testdata/pgbench_claim.sql, run by
// the runner. Compare with BenchmarkPgbench at the same concurrency and
// notification policy: notify=spaced is the runner's default
// (RunnerOptions.NotifyEvery, one notification per 100ms: pgbench's
// notify=none and none-runner-*), notify=every sends one per follow-up
// (pgbench's notify=every). enqueue=tx inserts the follow-up with Enqueue
// (a round trip of its own: none-runner-pipeline), enqueue=at-commit with
// Tx.EnqueueAtCommit (with the COMMIT: none-runner-at-commit).
func BenchmarkClaimFollowUp(b *testing.B) {
	enqueuers := []struct {
		name string
		h    work.Handler
	}{
		{"tx", func(ctx context.Context, tx *work.Tx, _ work.Item) error {
			_, err := work.Enqueue(ctx, tx, work.Job{Kind: "noop"})
			return err
		}},
		{"at-commit", func(_ context.Context, tx *work.Tx, _ work.Item) error {
			return tx.EnqueueAtCommit(work.Job{Kind: "noop"})
		}},
	}
	for _, w := range []int{1, 4} {
		for _, n := range []struct {
			name  string
			every time.Duration
		}{{"spaced", 0}, {"every", -1}} {
			for _, e := range enqueuers {
				b.Run(fmt.Sprintf("strategy=skip-locked/workers=%d/notify=%s/enqueue=%s", w, n.name, e.name), func(b *testing.B) {
					pool := newPool(b, newDB(b).DSN(), int32(w+2))
					preload(b, pool, steadyQueue)
					runUntil(b, pool, work.RunnerOptions{
						Handlers:    map[string]work.Handler{"noop": e.h},
						Workers:     w,
						NotifyEvery: n.every,
					}, &countDone{n: int64(b.N), all: make(chan struct{})})
				})
			}
		}
	}
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPgbench runs with pgbench (skipped if pgbench is not on PATH),
// against a database of the same cluster preloaded like
// BenchmarkClaimFollowUp, the claim + follow-up transaction statement by
// statement (testdata/pgbench_claim.sql: notify=every;
// pgbench_claim_quiet.sql: notify=none), or the runner's own statements in
// its own round trips, without NOTIFY: pgbench_claim_runner.sql
// (none-runner-pipeline: Enqueue, two round trips) and
// pgbench_claim_runner_at_commit.sql (none-runner-at-commit:
// Tx.EnqueueAtCommit, one).
func BenchmarkPgbench(b *testing.B) {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		b.Skip("pgbench not on PATH")
	}
	for _, c := range []int{1, 4} {
		for _, script := range []struct{ notify, file string }{
			{"every", "testdata/pgbench_claim.sql"}, {"none", "testdata/pgbench_claim_quiet.sql"},
			{"none-runner-pipeline", "testdata/pgbench_claim_runner.sql"},
			{"none-runner-at-commit", "testdata/pgbench_claim_runner_at_commit.sql"},
		} {
			b.Run(fmt.Sprintf("clients=%d/notify=%s", c, script.notify), func(b *testing.B) {
				pgbench(b, bin, c, script.file)
			})
		}
	}
}

func pgbench(b *testing.B, bin string, c int, file string) {
	db := newDB(b)
	pool := newPool(b, db.DSN(), 2)
	preload(b, pool, steadyQueue)
	perClient := (b.N + c - 1) / c
	b.ResetTimer()
	meter := startCPU()
	cmd := exec.Command(bin, "-n", "-M", "prepared", "-c", strconv.Itoa(c), "-j", strconv.Itoa(min(c, 2)),
		"-t", strconv.Itoa(perClient), "-f", file, db.DSN())
	out, err := cmd.CombinedOutput()
	if err == nil {
		meter.report(b, int64(perClient*c), cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	}
	b.StopTimer()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no tps in pgbench output:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	b.ReportMetric(tps, "items/s")
}
