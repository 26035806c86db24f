package netfault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
)

var (
	// ErrSevered is returned by Apply, Remove and Heal on a Link that was
	// severed: a crashed incarnation's network never comes back.
	ErrSevered = errors.New("netfault: link severed")
	// ErrClosed is returned by operations on a closed Link or Network.
	ErrClosed = errors.New("netfault: closed")
	// ErrNameTaken is returned by Network.Link when a live Link already has
	// the name.
	ErrNameTaken = errors.New("netfault: link name taken")
	// ErrInvalidFault is returned for a nil fault or one whose fields are out
	// of range (see each fault type).
	ErrInvalidFault = errors.New("netfault: invalid fault")
)

// Options configures a Network.
type Options struct {
	// Logger receives a debug record for every link created or closed and
	// every fault applied, removed, healed or severed. Zero: discard.
	Logger *slog.Logger
}

// Network is an in-process toxiproxy server holding any number of Links.
// It is safe for concurrent use.
type Network struct {
	srv    *toxiproxy.ApiServer
	logger *slog.Logger
	// quiet carries a silent zerolog logger for the toxiproxy calls that log
	// through zerolog.Ctx(ctx): without one they would fall back to the
	// process-wide zerolog.DefaultContextLogger, which anybody may have set.
	quiet context.Context

	mu     sync.Mutex
	links  map[string]*Link
	closed bool
}

// setupGlobals guards the only writes netfault makes to global state, both
// in toxiproxy's dependencies; see New.
var setupGlobals sync.Once

// New starts an in-process toxiproxy server. It listens on nothing itself;
// each Link listens on its own loopback port.
func New(opts Options) (*Network, error) {
	// toxiproxy logs through the loggers we hand it (zerolog.Nop below), but
	// its bandwidth toxic writes to the global github.com/rs/zerolog/log
	// Logger, which defaults to stderr and cannot be injected. netfault never
	// adds that toxic; the global is silenced anyway so that no toxiproxy path
	// can ever write to a test's output. Side effect: other users of
	// zerolog/log.Logger in the same process are silenced too.
	//
	// The other global is toxiproxy's toxic registry: AddToxicJson only
	// accepts registered types, and netfault's leak-proof toxics (toxics.go)
	// must be registered under their own "netfault." names.
	//
	// Both are written once, and both are unavoidable short of forking
	// toxiproxy.
	setupGlobals.Do(func() {
		zlog.Logger = zerolog.Nop()
		registerToxics()
	})

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A logger at PanicLevel is stored in the context (a Disabled one would
	// not be) and filters out every record toxiproxy writes.
	quiet := zerolog.New(io.Discard).Level(zerolog.PanicLevel)
	return &Network{
		srv:    toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		logger: logger,
		quiet:  quiet.WithContext(context.Background()),
		links:  make(map[string]*Link),
	}, nil
}

// Close closes every Link (stopping its listener and closing its open
// connections). It is idempotent.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	links := slices.SortedFunc(maps.Values(n.links), func(a, b *Link) int { return strings.Compare(a.name, b.name) })
	n.mu.Unlock()

	var errs []error
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Link starts a proxy named name on 127.0.0.1 (a free port) that forwards
// each accepted connection to upstream ("host:port"). Names must be unique
// among the Network's live Links; the harness uses one per worker
// incarnation and upstream, e.g. "w1.2/postgres".
//
// The proxy dials upstream only when a client connects; if upstream is
// unreachable the client's connection is accepted and then closed (EOF),
// not refused.
func (n *Network) Link(name, upstream string) (*Link, error) {
	if name == "" {
		return nil, errors.New("netfault: link: empty name")
	}
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("netfault: link %q: upstream %q: %w", name, upstream, err)
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("netfault: link %q: network: %w", name, ErrClosed)
	}
	if _, ok := n.links[name]; ok {
		return nil, fmt.Errorf("netfault: link %q: %w", name, ErrNameTaken)
	}
	p := newProxy(n.srv, name, "127.0.0.1:0", upstream)
	if err := n.srv.Collection.Add(p.Proxy, false); err != nil {
		p.end()
		if errors.Is(err, toxiproxy.ErrProxyAlreadyExists) {
			err = ErrNameTaken
		}
		return nil, fmt.Errorf("netfault: link %q: add proxy: %w", name, err)
	}
	err := addTails(n.quiet, p)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		p.end()
		_ = n.srv.Collection.Remove(name)
		return nil, fmt.Errorf("netfault: link %q: start proxy: %w", name, err)
	}
	// Start has returned, so the accept goroutine's write of the bound
	// address happened before this read.
	l := &Link{net: n, name: name, upstream: upstream, addr: p.Listen, proxy: p}
	n.links[name] = l
	n.logger.Debug("netfault: link up", "link", name, "addr", l.addr, "upstream", upstream)
	return l, nil
}

func (n *Network) forget(l *Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.links[l.name] == l {
		delete(n.links, l.name)
	}
}

// Link is one proxy between clients and one upstream. Its faults change
// only through its methods, which are safe for concurrent use and
// serialised per Link.
type Link struct {
	net      *Network
	name     string
	upstream string
	addr     string

	mu sync.Mutex
	// proxy is the current toxiproxy proxy. A stopped proxy is never
	// started again: lifting a partition starts a fresh one on the same
	// address (see retire).
	proxy       *proxy
	active      []activeFault // in the order applied
	partitioned bool
	// hold keeps the port bound while partitioned (holdPort); nil when
	// not partitioned or where it could not be held.
	hold    io.Closer
	severed bool
	closed  bool
}

type activeFault struct {
	fault Fault
	spec  toxicSpec
}

// Name returns the name given to Network.Link.
func (l *Link) Name() string { return l.name }

// Upstream returns the "host:port" the Link forwards to.
func (l *Link) Upstream() string { return l.upstream }

// Addr returns the "127.0.0.1:port" to dial instead of the upstream. It
// never changes, also across Partition and Heal.
func (l *Link) Addr() string { return l.addr }

// Apply adds a fault; it acts on connections already open as well as on new
// ones. A fault of the same kind and direction that is already active is
// replaced (removed, then the new one added, so it moves to the end of
// Faults); applying an identical fault again changes nothing. Partition
// stops the proxy. Other faults applied while partitioned take effect when
// the partition is lifted with Remove (Heal removes them all).
//
// Apply (and Remove, Heal, Sever) never waits for a reader: toxiproxy
// pauses each connection's last toxic to splice in the new one, and
// netfault's toxics can be paused while they wait to write (toxics.go).
// Removing a Latency or CutAfter hands on the chunk each connection holds,
// waiting up to 5 s for each reader that has gone.
func (l *Link) Apply(f Fault) error {
	if f == nil {
		return fmt.Errorf("netfault: %s: apply nil: %w", l.name, ErrInvalidFault)
	}
	spec, err := f.spec()
	if err != nil {
		return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
	}
	if len(spec.toxics) == 0 { // Partition
		if !l.partitioned {
			// retire stops the proxy even when it reports an error.
			err := l.retire()
			l.partitioned = true
			l.holdLocked()
			l.active = append(l.active, activeFault{f, spec})
			if err != nil {
				return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
			}
		}
		l.net.logger.Debug("netfault: fault applied", "link", l.name, "fault", f.String())
		return nil
	}

	if i := l.find(spec.id); i >= 0 {
		if l.active[i].fault == f {
			return nil
		}
		// Replace by remove + add rather than toxiproxy's update: an update
		// decodes the new attributes into the toxic that running connections
		// are reading, which is a data race inside toxiproxy.
		if !l.partitioned {
			if err := l.removeToxics(l.active[i].spec); err != nil {
				return fmt.Errorf("netfault: %s: replace %v with %v: %w", l.name, l.active[i].fault, f, err)
			}
		}
		l.active = slices.Delete(l.active, i, i+1)
	}
	if !l.partitioned {
		if err := addToxics(l.net.quiet, l.proxy, spec); err != nil {
			return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
		}
	}
	l.active = append(l.active, activeFault{f, spec})
	l.net.logger.Debug("netfault: fault applied", "link", l.name, "fault", f.String())
	return nil
}

// Remove removes the active fault with f's kind and direction (f's other
// fields are ignored); it does nothing if there is none. Removing a
// Blackhole closes every connection open through the link; removing a
// Partition listens again on the same address, with the other active
// faults in force.
func (l *Link) Remove(f Fault) error {
	if f == nil {
		return fmt.Errorf("netfault: %s: remove nil: %w", l.name, ErrInvalidFault)
	}
	id, err := f.id()
	if err != nil {
		return fmt.Errorf("netfault: %s: remove %v: %w", l.name, f, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return fmt.Errorf("netfault: %s: remove %v: %w", l.name, f, err)
	}
	i := l.find(id)
	if i < 0 {
		return nil
	}
	removed := l.active[i]
	switch {
	case len(removed.spec.toxics) == 0:
		l.active = slices.Delete(l.active, i, i+1)
		if err := l.restart(); err != nil {
			l.active = slices.Insert(l.active, i, removed)
			return err
		}
	case l.partitioned:
		l.active = slices.Delete(l.active, i, i+1)
	default:
		if err := l.removeToxics(removed.spec); err != nil {
			return fmt.Errorf("netfault: %s: remove %v: %w", l.name, removed.fault, err)
		}
		l.active = slices.Delete(l.active, i, i+1)
	}
	l.net.logger.Debug("netfault: fault removed", "link", l.name, "fault", removed.fault.String())
	return nil
}

// Heal removes every fault and, if the link was partitioned, listens again
// on the same address. Removing a Blackhole closes every connection that was
// open through the link; other faults leave open connections alone (one
// already cut or reset stays closed).
func (l *Link) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return fmt.Errorf("netfault: %s: heal: %w", l.name, err)
	}
	if l.partitioned {
		kept := l.active
		l.active = nil
		if err := l.restart(); err != nil {
			l.active = kept
			return err
		}
	} else {
		// Not toxiproxy's ResetToxics: that would remove the tails too.
		var errs []error
		for _, a := range l.active {
			errs = append(errs, l.removeToxics(a.spec))
		}
		l.active = nil
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("netfault: %s: heal: %w", l.name, err)
		}
	}
	l.net.logger.Debug("netfault: healed", "link", l.name)
	return nil
}

// Sever is a crash of the incarnation that owns the link: the proxy stops
// listening and closes every open connection (FIN; the upstream sees the
// client go away), for good. Apply, Remove and Heal then return ErrSevered;
// Faults still lists what was active. Sever is idempotent. The name stays
// taken until Close.
func (l *Link) Sever() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("netfault: %s: sever: %w", l.name, ErrClosed)
	}
	if l.severed {
		return nil
	}
	l.severed = true
	if !l.partitioned {
		if err := l.retire(); err != nil {
			return fmt.Errorf("netfault: %s: sever: %w", l.name, err)
		}
	}
	l.net.logger.Debug("netfault: severed", "link", l.name)
	return nil
}

// Close stops the proxy, closes every open connection and frees the name.
// It is idempotent.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.releaseLocked()
	var errs []error
	if !l.partitioned && !l.severed {
		errs = append(errs, l.retire())
	}
	errs = append(errs, l.net.srv.Collection.Remove(l.name))
	l.mu.Unlock()

	l.net.forget(l)
	l.net.logger.Debug("netfault: link closed", "link", l.name)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netfault: %s: close: %w", l.name, err)
	}
	return nil
}

// Faults returns the active faults in the order they were applied.
func (l *Link) Faults() []Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Fault, len(l.active))
	for i, a := range l.active {
		out[i] = a.fault
	}
	return out
}

// retire stops the current proxy for good, closing its connections; l.mu
// is held.
//
// toxiproxy's Stop closes the sockets under running connections; a
// goroutine writing to one then fails and exits, and any data still in
// flight behind it blocks its chain forever (see toxics.go). So first a
// sink is spliced onto the end of every chain: from then on nothing reaches
// the writers, and after Stop every chain ends cleanly. The sinks stay in
// that proxy's chains, which is why a retired proxy is replaced, never
// restarted.
func (l *Link) retire() error {
	var errs []error
	for _, d := range []Direction{Downstream, Upstream} {
		s, _ := d.stream()
		sink := toxicSpec{stream: s, toxics: []toxicDef{{name: "netfault.sink(" + d.String() + ")", typ: typeBlackhole, toxicity: 1}}}
		errs = append(errs, addToxics(l.net.quiet, l.proxy, sink))
	}
	l.proxy.end()
	l.proxy.Stop()
	return errors.Join(errs...)
}

// restart ends a partition with a fresh proxy on the same address, carrying
// the active faults; l.mu is held.
func (l *Link) restart() error {
	p := newProxy(l.net.srv, l.name, l.addr, l.upstream)
	// The retired proxy is stopped, so Remove only forgets it. Our Network
	// holds the name meanwhile, so nobody else can take it.
	if err := l.net.srv.Collection.Remove(l.name); err != nil {
		p.end()
		return fmt.Errorf("netfault: %s: replace proxy: %w", l.name, err)
	}
	if err := l.net.srv.Collection.Add(p.Proxy, false); err != nil {
		p.end()
		return fmt.Errorf("netfault: %s: replace proxy: %w", l.name, err)
	}
	l.proxy = p // even if Start fails below: a later Heal replaces it again
	if err := addTails(l.net.quiet, p); err != nil {
		return fmt.Errorf("netfault: %s: %w", l.name, err)
	}
	for _, a := range l.active {
		if err := addToxics(l.net.quiet, p, a.spec); err != nil {
			return fmt.Errorf("netfault: %s: restore %v: %w", l.name, a.fault, err)
		}
	}
	// l.addr is the bound "127.0.0.1:port", so this listens on the same
	// port, which the hold kept until now. Without a hold another socket
	// may have taken it: the listen is tried for a while (a connection
	// holding it as its local port may end), then the link stays
	// partitioned.
	l.releaseLocked()
	var err error
	for range 50 {
		if err = p.Start(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("netfault: %s: listen again on %s: %w", l.name, l.addr, err)
	}
	if p.Listen != l.addr {
		// Cannot happen with toxiproxy v2.12.0; guards the promise of Addr.
		p.Stop()
		return fmt.Errorf("netfault: %s: listening on %s, not %s", l.name, p.Listen, l.addr)
	}
	l.partitioned = false
	return nil
}

// holdLocked binds the partitioned link's port (holdPort); l.mu is held. A
// port that cannot be held is only logged: lifting the partition then
// retries its listen.
func (l *Link) holdLocked() {
	if l.hold != nil {
		return
	}
	h, err := holdPort(l.addr)
	if err != nil {
		l.net.logger.Debug("netfault: port not held during the partition", "link", l.name, "err", err)
		return
	}
	l.hold = h
}

// releaseLocked lets go of the port held during a partition; l.mu is held.
func (l *Link) releaseLocked() {
	if l.hold != nil {
		_ = l.hold.Close()
		l.hold = nil
	}
}

// proxy is a toxiproxy proxy and the lifetime its toxics watch (see
// toxics.go); end it when the proxy is retired.
type proxy struct {
	*toxiproxy.Proxy
	life uint64
	end  func()
}

func newProxy(srv *toxiproxy.ApiServer, name, listen, upstream string) *proxy {
	life, end := newLifetime()
	return &proxy{Proxy: toxiproxy.NewProxy(srv, name, listen, upstream), life: life, end: end}
}

// addTails puts the permanent tail (see toxics.go) into both directions of
// a proxy that has no toxics and accepts no connections yet.
func addTails(ctx context.Context, p *proxy) error {
	for _, d := range []Direction{Downstream, Upstream} {
		s, _ := d.stream()
		tail := toxicSpec{stream: s, toxics: []toxicDef{{name: "netfault.tail(" + d.String() + ")", typ: typeTail, toxicity: 1}}}
		if err := addToxics(ctx, p, tail); err != nil {
			return err
		}
	}
	return nil
}

// addToxics adds a fault's toxics in order; each carries p's lifetime as
// its "life" attribute (toxics that have none ignore it).
func addToxics(ctx context.Context, p *proxy, spec toxicSpec) error {
	for i, t := range spec.toxics {
		attrs := map[string]int64{"life": int64(p.life)}
		maps.Copy(attrs, t.attrs)
		body, err := json.Marshal(struct {
			Name       string           `json:"name"`
			Type       string           `json:"type"`
			Stream     string           `json:"stream"`
			Toxicity   float32          `json:"toxicity"`
			Attributes map[string]int64 `json:"attributes,omitempty"`
		}{t.name, t.typ, spec.stream, t.toxicity, attrs})
		if err == nil {
			_, err = p.Toxics.AddToxicJson(bytes.NewReader(body))
		}
		if err != nil {
			for _, added := range spec.toxics[:i] {
				_ = p.Toxics.RemoveToxic(ctx, added.name)
			}
			return fmt.Errorf("add toxic %s: %w", t.name, err)
		}
	}
	return nil
}

// removeToxics removes a fault's toxics in the order they were added.
func (l *Link) removeToxics(spec toxicSpec) error {
	var errs []error
	for _, t := range spec.toxics {
		if err := l.proxy.Toxics.RemoveToxic(l.net.quiet, t.name); err != nil {
			errs = append(errs, fmt.Errorf("remove toxic %s: %w", t.name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *Link) usable() error {
	switch {
	case l.closed:
		return ErrClosed
	case l.severed:
		return ErrSevered
	}
	return nil
}

func (l *Link) find(id string) int {
	return slices.IndexFunc(l.active, func(a activeFault) bool { return a.spec.id == id })
}
