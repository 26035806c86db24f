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
	l := &Link{net: n, name: name, upstream: upstream, ctl: [2]*control{newControl(), newControl()}}
	p, err := l.startProxy("127.0.0.1:0")
	if err != nil {
		if errors.Is(err, toxiproxy.ErrProxyAlreadyExists) {
			err = ErrNameTaken
		}
		return nil, fmt.Errorf("netfault: link %q: %w", name, err)
	}
	// Start has returned, so the accept goroutine's write of the bound
	// address happened before this read.
	l.addr, l.proxy = p.Listen, p
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
	// ctl holds the faults in force per Direction; every proxy of the Link
	// obeys it (see toxics.go).
	ctl [2]*control

	mu sync.Mutex
	// proxy is the current toxiproxy proxy. A stopped proxy is never
	// started again: lifting a partition starts a fresh one on the same
	// address.
	proxy       *proxy
	active      []Fault // in the order applied
	partitioned bool
	// hold keeps the port bound while partitioned (holdPort); nil when
	// not partitioned or where it could not be held.
	hold    io.Closer
	severed bool
	closed  bool
}

// proxy is a toxiproxy proxy and the channel its switches watch, closed
// when the Link retires it.
type proxy struct {
	*toxiproxy.Proxy
	retired chan struct{}
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
// replaced (it moves to the end of Faults); applying an identical fault
// again changes nothing. Partition stops the proxy. Other faults applied
// while partitioned take effect when the partition is lifted with Remove
// (Heal removes them all). Apply, Remove and Heal never wait for a
// connection: they switch the Link's control, which every connection
// watches (toxics.go).
func (l *Link) Apply(f Fault) error {
	if f == nil {
		return fmt.Errorf("netfault: %s: apply nil: %w", l.name, ErrInvalidFault)
	}
	id, err := f.id()
	if err == nil {
		err = f.check()
	}
	if err != nil {
		return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return fmt.Errorf("netfault: %s: apply %v: %w", l.name, f, err)
	}
	if _, ok := f.(Partition); ok {
		if !l.partitioned {
			l.retire()
			l.partitioned = true
			l.holdLocked()
			l.active = append(l.active, f)
		}
		l.net.logger.Debug("netfault: fault applied", "link", l.name, "fault", f.String())
		return nil
	}
	if i := l.find(id); i >= 0 {
		if l.active[i] == f {
			return nil
		}
		l.active = slices.Delete(l.active, i, i+1)
	}
	l.ctl[f.dir()].update(func(c *config) { f.set(c, true) })
	l.active = append(l.active, f)
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
	if _, ok := removed.(Partition); ok {
		if err := l.restart(); err != nil {
			return err
		}
	} else {
		l.ctl[removed.dir()].update(func(c *config) { removed.set(c, false) })
	}
	l.active = slices.Delete(l.active, i, i+1)
	l.net.logger.Debug("netfault: fault removed", "link", l.name, "fault", removed.String())
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
	for _, f := range l.active {
		if _, ok := f.(Partition); !ok {
			l.ctl[f.dir()].update(func(c *config) { f.set(c, false) })
		}
	}
	if l.partitioned {
		if err := l.restart(); err != nil {
			l.active = slices.DeleteFunc(l.active, func(f Fault) bool { _, ok := f.(Partition); return !ok })
			return err
		}
	}
	l.active = nil
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
		l.retire()
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
	if !l.partitioned && !l.severed {
		l.retire()
	}
	err := l.net.srv.Collection.Remove(l.name)
	if errors.Is(err, toxiproxy.ErrProxyNotFound) {
		err = nil // a restart that failed had removed it
	}
	l.mu.Unlock()

	l.net.forget(l)
	l.net.logger.Debug("netfault: link closed", "link", l.name)
	if err != nil {
		return fmt.Errorf("netfault: %s: close: %w", l.name, err)
	}
	return nil
}

// Faults returns the active faults in the order they were applied.
func (l *Link) Faults() []Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.active)
}

// startProxy starts a proxy for the Link on listen, its switches bound to
// the Link's control before it accepts a connection. Listening on a port
// the Link held until just now is tried for a while: a connection holding
// it as its local port may end.
func (l *Link) startProxy(listen string) (*proxy, error) {
	p := &proxy{Proxy: toxiproxy.NewProxy(l.net.srv, l.name, listen, l.upstream), retired: make(chan struct{})}
	if err := l.net.srv.Collection.Add(p.Proxy, false); err != nil {
		return nil, fmt.Errorf("add proxy: %w", err)
	}
	err := l.addSwitches(p)
	if err == nil {
		for range 50 {
			if err = p.Start(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err != nil {
		close(p.retired)
		_ = l.net.srv.Collection.Remove(l.name)
		return nil, fmt.Errorf("start proxy on %s: %w", listen, err)
	}
	return p, nil
}

func (l *Link) addSwitches(p *proxy) error {
	for _, d := range []Direction{Downstream, Upstream} {
		s, _ := d.stream()
		body, err := json.Marshal(map[string]any{"name": typeSwitch + "(" + d.String() + ")", "type": typeSwitch, "stream": s, "toxicity": 1})
		if err != nil {
			return err
		}
		w, err := p.Toxics.AddToxicJson(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("add the switch: %w", err)
		}
		sw := w.Toxic.(*switchToxic)
		sw.ctl, sw.retired = l.ctl[d], p.retired
	}
	return nil
}

// retire stops the current proxy for good; l.mu is held. Its switches end
// every stream first (so every chain ends, also one whose writer has
// exited), then Stop closes the sockets. A stopped proxy is replaced, never
// restarted.
func (l *Link) retire() {
	close(l.proxy.retired)
	l.proxy.Stop()
}

// restart ends a partition with a fresh proxy on the same address; l.mu is
// held. The faults in force stay in force: they are the Link's control.
func (l *Link) restart() error {
	// The retired proxy is stopped, so Remove only forgets it. Our Network
	// holds the name meanwhile, so nobody else can take it.
	// ErrProxyNotFound: an earlier restart removed it and then failed.
	if err := l.net.srv.Collection.Remove(l.name); err != nil && !errors.Is(err, toxiproxy.ErrProxyNotFound) {
		return fmt.Errorf("netfault: %s: replace proxy: %w", l.name, err)
	}
	// l.addr is the bound "127.0.0.1:port", so this listens on the same
	// port, which the hold kept until now. Without a hold another socket
	// may have taken it; then the link stays partitioned.
	l.releaseLocked()
	p, err := l.startProxy(l.addr)
	if err != nil {
		return fmt.Errorf("netfault: %s: listen again: %w", l.name, err)
	}
	if p.Listen != l.addr {
		// Cannot happen with toxiproxy v2.12.0; guards the promise of Addr.
		l.proxy = p
		l.retire()
		return fmt.Errorf("netfault: %s: listening on %s, not %s", l.name, p.Listen, l.addr)
	}
	l.proxy = p
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
	return slices.IndexFunc(l.active, func(f Fault) bool {
		fid, _ := f.id()
		return fid == id
	})
}
