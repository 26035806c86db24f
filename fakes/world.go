package fakes

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Server is what the four fake servers have in common.
type Server interface {
	Service() string // "cloud", "billing", "kube", "email"
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
	// Clock is shared by the four servers; zero: real time.
	Clock Clock
	// Logger; zero: discard.
	Logger *slog.Logger
	// MaxBody caps request bodies; zero: DefaultMaxBody.
	MaxBody int64
	// OmitReads leaves read-only requests out of the ledgers; zero: all
	// requests are recorded.
	OmitReads bool
	// Faults is the initial plan (each fault goes to its Service, or to all
	// four when Service is ""); zero: none.
	Faults Plan
	// TokenTTL: see CloudOptions; zero: DefaultTTL.
	TokenTTL time.Duration
	// KeyTTL: see BillingOptions; zero: DefaultTTL.
	KeyTTL time.Duration
	// Lag: see CloudOptions; zero: none.
	Lag time.Duration
}

// World is the four fakes of one run, sharing one clock and one ledger
// sequence (so Seq orders requests across services).
type World struct {
	Cloud   *CloudServer
	Billing *BillingServer
	Kube    *KubeServer
	Email   *EmailServer
}

// Start starts the four fakes on loopback.
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
	w := &World{}
	var err error
	if w.Cloud, err = NewCloudServer(CloudOptions{ServerOptions: so, TokenTTL: opts.TokenTTL, Lag: opts.Lag}); err != nil {
		return nil, err
	}
	if w.Billing, err = NewBillingServer(BillingOptions{ServerOptions: so, KeyTTL: opts.KeyTTL}); err != nil {
		w.Close()
		return nil, err
	}
	if w.Kube, err = NewKubeServer(KubeOptions{ServerOptions: so}); err != nil {
		w.Close()
		return nil, err
	}
	if w.Email, err = NewEmailServer(EmailOptions{ServerOptions: so}); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Servers returns the started servers: cloud, billing, kube, email.
func (w *World) Servers() []Server {
	var out []Server
	if w.Cloud != nil {
		out = append(out, w.Cloud)
	}
	if w.Billing != nil {
		out = append(out, w.Billing)
	}
	if w.Kube != nil {
		out = append(out, w.Kube)
	}
	if w.Email != nil {
		out = append(out, w.Email)
	}
	return out
}

// Close closes the four servers.
func (w *World) Close() error {
	var errs []error
	for _, s := range w.Servers() {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Snapshot merges the four ledgers; requests are sorted by Seq.
func (w *World) Snapshot() Snapshot {
	var ss []Snapshot
	for _, s := range w.Servers() {
		ss = append(ss, s.Snapshot())
	}
	return Merge(ss...)
}

// SetFaults replaces every server's plan with the faults for its service.
func (w *World) SetFaults(p Plan) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, s := range w.Servers() {
		if err := s.SetFaults(p); err != nil {
			return err
		}
	}
	return nil
}

// AddFault adds f to its service's plan (to all four when Service is "").
func (w *World) AddFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	for _, s := range w.Servers() {
		if err := s.AddFault(f); err != nil {
			return err
		}
	}
	return nil
}

// ClearFaults clears every plan.
func (w *World) ClearFaults() {
	for _, s := range w.Servers() {
		s.ClearFaults()
	}
}

// ClearFault removes the faults with this ID from every plan and reports how
// many.
func (w *World) ClearFault(id string) int {
	n := 0
	for _, s := range w.Servers() {
		n += s.ClearFault(id)
	}
	return n
}

// Faults returns the active plans merged (each fault names its service), so
// that SetFaults of the result restores them.
func (w *World) Faults() Plan {
	var p Plan
	for _, s := range w.Servers() {
		sp := s.Faults()
		p.Seed = sp.Seed
		p.Faults = append(p.Faults, sp.Faults...)
	}
	return p
}
