package sim_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/crash"
	"github.com/workproof/workproof/sim/history"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
	"github.com/workproof/workproof/sim/proc"
)

// workerProcess is this test binary run as a worker process of kvx.
func workerProcess() int {
	spec, err := proc.ReadSpec()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := proc.Serve(ctx, kvx.New(kvx.Options{}), spec, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// TestProcessWorkerKilledMidItem: with Options.Process every worker is a
// process; one is SIGKILLed while it is inside a provision held by a slow
// Kubernetes API. The process is gone (a real kill, not a frozen
// goroutine), its interval, reported by the child, ends as crashed, a new
// process takes the slot, and the run converges valid.
func TestProcessWorkerKilledMidItem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.New(ctx, sim.Options{System: kvx.New(kvx.Options{}), Server: pgenvtest.Server(t), Workers: 2, Seed: 5,
		Process: []string{exe}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := e.Crash("w1", crash.Rule{At: "kube:Apply"}); !errors.Is(err, sim.ErrUnavailable) {
		t.Errorf("Crash at a point of a worker process = %v, want ErrUnavailable", err)
	}
	if err := e.ProviderFault(fakes.Fault{Service: "kube", Endpoint: "Apply", Mode: fakes.ModeLatency, Latency: 3 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Serve(ctx, "c1", contract.Request{Op: contract.OpCreate, Instance: "i1", Size: "small"}); err != nil {
		t.Fatal(err)
	}
	var inside history.Interval
	if !sim.Await(ctx, time.Minute, func() bool {
		for _, iv := range e.Recorder().Snapshot().Intervals {
			if iv.Open() && iv.Key == "i1" {
				inside = iv
				return true
			}
		}
		return false
	}) {
		t.Fatal("no worker process reported entering the provision")
	}
	slot := inside.Worker[:2] // "w1.1" → "w1"
	pid := e.WorkerPid(slot)
	if pid == 0 {
		t.Fatalf("WorkerPid(%s) = 0 with Options.Process", slot)
	}
	if err := e.Kill(slot); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("worker process %d after Kill: signal 0 = %v, want ESRCH (the process is gone)", pid, err)
	}
	res, err := e.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != check.Valid {
		t.Errorf("verdict %s: %v", res.Verdict, res.Violations)
	}
	var cut, redone bool
	for _, iv := range e.Recorder().Snapshot().Intervals {
		cut = cut || iv.Seq == inside.Seq && iv.Outcome == history.IntervalCrashed
		redone = redone || iv.Item == inside.Item && iv.Outcome == "done"
	}
	if !cut || !redone {
		t.Errorf("killed interval ended as crashed: %v; item %s done later: %v", cut, inside.Item, redone)
	}
	if p := e.WorkerPid(slot); p == 0 || p == pid {
		t.Errorf("slot %s after Finish runs pid %d, want a new process (killed: %d)", slot, p, pid)
	}
}
