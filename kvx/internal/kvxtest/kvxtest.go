// Package kvxtest runs a contract.System — kvx or a mutant — against a fresh
// Postgres database (package pgenvtest) and real fake providers on loopback,
// with workers whose clients point straight at the fakes. It is the small
// harness kvx's own tests need; crash scenarios belong to package sim.
package kvxtest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/kvx"
	"github.com/workproof/workproof/sim/pgenv"
	"github.com/workproof/workproof/sim/pgenv/pgenvtest"
)

// WaitLimit bounds every Wait: not a speed assertion, a guard that turns a
// system that never converges into a failure instead of a hung test.
const WaitLimit = 60 * time.Second

// Env is one system under test with its own database and fakes.
type Env struct {
	t        testing.TB
	Sys      contract.System
	Database *pgenv.Database
	DB       *pgxpool.Pool
	World    *fakes.World
	// Observer records every worker's items and flags two workers inside
	// one item or one key at once.
	Observer *Observer
}

// New starts fakes and a fresh database migrated with kvx.Migrate (every
// mutant shares kvx's schema), all released in t.Cleanup.
func New(t testing.TB, sys contract.System) *Env {
	t.Helper()
	return NewWith(t, sys, fakes.Options{})
}

// NewWith is New with the fakes configured by opts.
func NewWith(t testing.TB, sys contract.System, opts fakes.Options) *Env {
	t.Helper()
	db := pgenvtest.DB(t, "kvx", kvx.Migrate)
	pool := pgenvtest.Pool(t, db)
	w, err := fakes.Start(opts)
	if err != nil {
		t.Fatalf("kvxtest: start fakes: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("kvxtest: close fakes: %v", err)
		}
	})
	return &Env{t: t, Sys: sys, Database: db, DB: pool, World: w, Observer: NewObserver()}
}

// Deps returns a worker's dependencies: the fakes reached directly, over a
// transport whose idle
// connections are closed in t.Cleanup, a discarding logger, the real clock,
// a rand seeded with seed, and e.Observer.
func (e *Env) Deps(name string, seed uint64) contract.Deps {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	e.t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	services := map[string]contract.Service{}
	for _, srv := range e.World.Servers() {
		services[srv.Service()] = contract.Service{URL: srv.URL(), HTTPClient: hc}
	}
	return contract.Deps{
		Worker:   name,
		Services: services,
		Logger:   slog.New(slog.DiscardHandler),
		Clock:    fakes.RealClock(),
		Rand:     rand.New(rand.NewPCG(seed, 0x6b7678)),
		Observer: e.Observer,
	}
}

// StartWorker runs e.Sys.Work in a goroutine until the returned stop is
// called (or t.Cleanup calls it); stop waits for Work to return and reports
// its error. Calling stop twice is harmless.
func (e *Env) StartWorker(name string, seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	deps := e.Deps(name, seed)
	go func() { done <- e.Sys.Work(ctx, e.DB, deps) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("kvxtest: worker %s: %v", name, err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// Serve sends one request.
func (e *Env) Serve(req contract.Request) (contract.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), WaitLimit)
	defer cancel()
	return e.Sys.Serve(ctx, e.DB, req)
}

// MustServe sends one request that must succeed.
func (e *Env) MustServe(req contract.Request) contract.Response {
	e.t.Helper()
	resp, err := e.Serve(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Op, req.Instance, err)
	}
	return resp
}

// Inspect returns the system's snapshot.
func (e *Env) Inspect() contract.Snapshot {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitLimit)
	defer cancel()
	snap, err := e.Sys.Inspect(ctx, e.DB)
	if err != nil {
		e.t.Fatalf("inspect: %v", err)
	}
	return snap
}

// Wait polls the system's snapshot and the fakes' ledgers until cond holds,
// and returns both; it fails the test after WaitLimit.
func (e *Env) Wait(what string, cond func(contract.Snapshot, fakes.Snapshot) bool) (contract.Snapshot, fakes.Snapshot) {
	e.t.Helper()
	deadline := time.Now().Add(WaitLimit)
	for {
		snap, led := e.Inspect(), e.World.Snapshot()
		if cond(snap, led) {
			return snap, led
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %v for %s; system: %s; ledgers: %s", WaitLimit, what, Dump(snap), DumpLedger(led))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Settled reports that no instance has active work and no work is pending.
func Settled(s contract.Snapshot) bool {
	for _, in := range s.Instances {
		if in.HasActiveWork {
			return false
		}
	}
	return len(s.Work) == 0
}

// Instance returns the instance id from s, if present.
func Instance(s contract.Snapshot, id string) (contract.Instance, bool) {
	for _, in := range s.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return contract.Instance{}, false
}

// RunningVMs returns the running VMs owned by owner.
func RunningVMs(l fakes.Snapshot, owner string) []fakes.VM {
	var out []fakes.VM
	for _, vm := range l.VMs {
		if vm.Owner == owner && vm.State == "running" {
			out = append(out, vm)
		}
	}
	return out
}

// Deployments returns the live deployments owned by owner.
func Deployments(l fakes.Snapshot, owner string) []fakes.Deployment {
	var out []fakes.Deployment
	for _, d := range l.Deployments {
		if d.Owner == owner {
			out = append(out, d)
		}
	}
	return out
}

// Charges returns the charges owned by owner.
func Charges(l fakes.Snapshot, owner string) []fakes.Charge {
	var out []fakes.Charge
	for _, c := range l.Charges {
		if c.Owner == owner {
			out = append(out, c)
		}
	}
	return out
}

// Emails returns the emails owned by owner.
func Emails(l fakes.Snapshot, owner string) []fakes.Email {
	var out []fakes.Email
	for _, m := range l.Emails {
		if m.Owner == owner {
			out = append(out, m)
		}
	}
	return out
}

// Fired counts the ledger's requests on endpoint that a fault fired on.
func Fired(l fakes.Snapshot, endpoint string) int {
	n := 0
	for _, r := range l.Requests {
		if r.Endpoint == endpoint && r.Fault != "" {
			n++
		}
	}
	return n
}

// Dump renders a system snapshot for a failure message.
func Dump(s contract.Snapshot) string {
	var b strings.Builder
	for _, in := range s.Instances {
		fmt.Fprintf(&b, "\n  instance %+v", in)
	}
	for _, w := range s.Work {
		fmt.Fprintf(&b, "\n  work %+v", w)
	}
	return b.String()
}

// DumpLedger renders the fakes' state (not the request log) for a failure
// message.
func DumpLedger(l fakes.Snapshot) string {
	var b strings.Builder
	for _, vm := range l.VMs {
		fmt.Fprintf(&b, "\n  vm %s owner=%s size=%s state=%s token=%s", vm.ID, vm.Owner, vm.Size, vm.State, vm.ClientToken)
	}
	for _, d := range l.Deployments {
		fmt.Fprintf(&b, "\n  deployment %s owner=%s size=%s", d.Name, d.Owner, d.Size)
	}
	for _, c := range l.Charges {
		fmt.Fprintf(&b, "\n  charge %s owner=%s event=%s amount=%d", c.ID, c.Owner, c.Event, c.Amount)
	}
	for _, m := range l.Emails {
		fmt.Fprintf(&b, "\n  email %s owner=%s event=%s", m.ID, m.Owner, m.Event)
	}
	return b.String()
}

// Observer is a contract.Observer that records overlaps: two workers inside
// one item, or inside items with one key, at once.
type Observer struct {
	mu         sync.Mutex
	items      map[string]int
	keys       map[string]int
	outcomes   map[string]int
	violations []string
}

// NewObserver returns an empty observer.
func NewObserver() *Observer {
	return &Observer{items: map[string]int{}, keys: map[string]int{}, outcomes: map[string]int{}}
}

// Begin implements contract.Observer.
func (o *Observer) Begin(item, key string) func(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.items[item] > 0 {
		o.violations = append(o.violations, "two workers in item "+item)
	}
	if o.keys[key] > 0 {
		o.violations = append(o.violations, "two workers on key "+key)
	}
	o.items[item]++
	o.keys[key]++
	var once sync.Once
	return func(outcome string) {
		once.Do(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.items[item]--
			o.keys[key]--
			o.outcomes[outcome]++
		})
	}
}

// Violations returns every overlap seen.
func (o *Observer) Violations() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.violations...)
}

// Outcomes returns how many items ended with each outcome.
func (o *Observer) Outcomes() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.outcomes))
	for k, v := range o.outcomes {
		out[k] = v
	}
	return out
}
