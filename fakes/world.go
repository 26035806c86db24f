package fakes

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server is what the fake servers have in common.
type Server interface {
	Service() string // its Spec's name
	URL() string     // "http://127.0.0.1:port"
	Addr() string    // "127.0.0.1:port", for a proxy's upstream
	Close() error
	Snapshot() Snapshot
	SetFaults(p Plan) error
	AddFault(f Fault) error
	ClearFaults()
	ClearFault(id string) int
	Faults() Plan
}

var (
	_ Server = (*CloudServer)(nil)
	_ Server = (*BillingServer)(nil)
	_ Server = (*KubeServer)(nil)
	_ Server = (*EmailServer)(nil)
)

// Options configures a World.
type Options struct {
	// Clock is shared by the servers; zero: real time.
	Clock Clock
	// Logger; zero: discard.
	Logger *slog.Logger
	// MaxBody caps request bodies; zero: DefaultMaxBody.
	MaxBody int64
	// OmitReads leaves read-only requests out of the ledgers; zero: all
	// requests are recorded.
	OmitReads bool
	// Faults is the initial plan (each fault goes to its Service, or to
	// every server when Service is ""); zero: none.
	Faults Plan
	// TokenTTL: see CloudOptions; zero: DefaultTTL.
	TokenTTL time.Duration
	// KeyTTL: see BillingOptions; zero: DefaultTTL.
	KeyTTL time.Duration
	// Lag: see CloudOptions; zero: none.
	Lag time.Duration
}

// World is the fakes of one run, one server per Spec, sharing one clock and
// one ledger sequence (so Seq orders requests across services).
type World struct {
	servers []Server // in Specs order
	byName  map[string]Server
	atMost  []string // services without idempotency

	mu      sync.Mutex
	endedAt map[string]int64 // owner → the mark of the Forget that last found a lifetime of it ended
}

// Start starts every provider of Specs on loopback.
func Start(opts Options) (*World, error) {
	if err := opts.Faults.Validate(); err != nil {
		return nil, err
	}
	so := ServerOptions{
		Clock:     opts.Clock,
		Logger:    opts.Logger,
		MaxBody:   opts.MaxBody,
		OmitReads: opts.OmitReads,
		Faults:    opts.Faults,
		seq:       new(atomic.Int64),
	}
	if so.Clock == nil {
		so.Clock = realClock{}
	}
	w := &World{byName: map[string]Server{}}
	for _, spec := range Specs() {
		srv, err := spec.start(opts, so)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("fakes: start %s: %w", spec.Name, err)
		}
		w.servers = append(w.servers, srv)
		w.byName[spec.Name] = srv
		if spec.AtMostOnce {
			w.atMost = append(w.atMost, spec.Name)
		}
	}
	return w, nil
}

// Server returns the server of service name, or nil.
func (w *World) Server(name string) Server { return w.byName[name] }

// Servers returns the started servers, in Specs order.
func (w *World) Servers() []Server { return slices.Clone(w.servers) }

// Close closes every server.
func (w *World) Close() error {
	var errs []error
	for _, s := range w.servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Snapshot merges the ledgers; requests are sorted by Seq.
func (w *World) Snapshot() Snapshot {
	var ss []Snapshot
	for _, s := range w.servers {
		ss = append(ss, s.Snapshot())
	}
	m := Merge(ss...)
	m.AtMostOnce = slices.Clone(w.atMost)
	return m
}

// Forget drops from every server's ledger the oldest requests, up to the
// last one in upTo, as far as they have ended. It is for a run of hours
// that has proven what those requests did (see history.Recorder.Forget).
//
// What a server keeps as state (VMs, deployments, charges, emails,
// idempotency records) stays, but for lifetimes that ended before the
// latest ended one: without that, a soak's memory grows with every
// lifetime it ever ran. ended reports the owners the system under test no
// longer has an instance for (nil: none). An owner ended reports and that
// upTo shows with no live VM, no deployment and no request in flight has
// ended a lifetime; the state it made since the Forget that last found it
// so is its latest ended lifetime's, and stays: a worker that re-creates
// the owner meets it as it would meet a real provider's (a reused client
// token, an idempotency key or a list of the owner's charges). What it made
// before then — its terminated VMs and their client tokens, its charges
// and their idempotency records, its emails — goes. A real cloud forgets
// terminated VMs too; a real billing service keeps charges longer, so a
// bug that only shows against a lifetime two or more back is not seen by a
// run that forgets.
func (w *World) Forget(upTo Snapshot, ended func(owner string) bool) {
	var mark int64
	for _, r := range upTo.Requests {
		mark = max(mark, r.Seq+1)
	}
	for _, s := range w.servers {
		if f, ok := s.(interface{ forget(int64) }); ok {
			f.forget(mark)
		}
	}
	gone := endedOwners(upTo, ended)
	if len(gone) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.endedAt == nil {
		w.endedAt = map[string]int64{}
	}
	before := map[string]int64{}
	for o := range gone { // each owner on its own: the order does not matter
		m, seen := w.endedAt[o]
		switch {
		case !seen:
			w.endedAt[o] = mark
		case w.madeSince(o, m): // a later lifetime that ended too
			before[o] = m
			w.endedAt[o] = mark
		}
	}
	if len(before) == 0 {
		return
	}
	for _, s := range w.servers {
		if f, ok := s.(ownerState); ok {
			f.forgetBefore(before)
		}
	}
}

// ownerState is a server whose state World.Forget may drop by owner.
type ownerState interface {
	madeSince(owner string, seq int64) bool // state of owner made by a request of Seq ≥ seq
	forgetBefore(before map[string]int64)   // drop owner o's state made by a request of Seq < before[o]
}

func (w *World) madeSince(owner string, seq int64) bool {
	for _, s := range w.servers {
		if f, ok := s.(ownerState); ok && f.madeSince(owner, seq) {
			return true
		}
	}
	return false
}

// endedOwners returns the owners of upTo's state that ended reports and
// that upTo shows nothing live or in flight for.
func endedOwners(upTo Snapshot, ended func(string) bool) map[string]bool {
	if ended == nil {
		return nil
	}
	gone := map[string]bool{}
	note := func(owner string) {
		if owner != "" {
			if _, seen := gone[owner]; !seen {
				gone[owner] = ended(owner)
			}
		}
	}
	for _, vm := range upTo.VMs {
		note(vm.Owner)
	}
	for _, ch := range upTo.Charges {
		note(ch.Owner)
	}
	for _, e := range upTo.Emails {
		note(e.Owner)
	}
	for _, vm := range upTo.VMs {
		if vm.State != "terminated" {
			gone[vm.Owner] = false
		}
	}
	for _, d := range upTo.Deployments {
		gone[d.Owner] = false
	}
	for _, r := range upTo.Requests {
		if r.End.IsZero() {
			gone[r.Owner] = false
		}
	}
	maps.DeleteFunc(gone, func(_ string, g bool) bool { return !g })
	return gone
}

// SetFaults replaces every server's plan with the faults for its service.
func (w *World) SetFaults(p Plan) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, s := range w.servers {
		if err := s.SetFaults(p); err != nil {
			return err
		}
	}
	return nil
}

// AddFault adds f to its service's plan (to every server when Service is "").
func (w *World) AddFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	for _, s := range w.servers {
		if err := s.AddFault(f); err != nil {
			return err
		}
	}
	return nil
}

// ClearFaults clears every plan.
func (w *World) ClearFaults() {
	for _, s := range w.servers {
		s.ClearFaults()
	}
}

// ClearFault removes the faults with this ID from every plan and reports how
// many.
func (w *World) ClearFault(id string) int {
	n := 0
	for _, s := range w.servers {
		n += s.ClearFault(id)
	}
	return n
}

// Faults returns the active plans merged (each fault names its service), so
// that SetFaults of the result restores them.
func (w *World) Faults() Plan {
	var p Plan
	for _, s := range w.servers {
		sp := s.Faults()
		p.Seed = sp.Seed
		p.Faults = append(p.Faults, sp.Faults...)
	}
	return p
}

// Cloud, Billing, Kube and Email return the typed servers, for tests that
// reach into one; nil when the World runs no such service.
func (w *World) Cloud() *CloudServer     { s, _ := w.byName[ServiceCloud].(*CloudServer); return s }
func (w *World) Billing() *BillingServer { s, _ := w.byName[ServiceBilling].(*BillingServer); return s }
func (w *World) Kube() *KubeServer       { s, _ := w.byName[ServiceKube].(*KubeServer); return s }
func (w *World) Email() *EmailServer     { s, _ := w.byName[ServiceEmail].(*EmailServer); return s }
