package netfault

import (
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// How faults act, and why not through toxiproxy's toxics.
//
// In toxiproxy v2.12.0 each connection direction is a chain of goroutines
// ("stubs") joined by unbuffered channels, from the goroutine reading one
// socket to the one writing the other. Adding or removing a toxic on a live
// proxy pauses stubs of every chain under the proxy's lock, and that is
// fragile in three ways, each seen here:
//
//   - A hang. toxiproxy's toxics forward with a plain channel send, so a
//     stub holding a chunk for a socket writer that has exited (its peer
//     went away mid-stream) cannot be paused: the switch waits forever, and
//     so does the exiting writer, which needs the same lock (toxiproxy
//     issues #558, #427; it stopped a CI run).
//   - A panic. Removing a toxic whose stub has closed (a cut that cut, a
//     connection that ended) leaves the chain's stub list longer than its
//     toxic list, and a later add then indexes past the end (index out of
//     range in ToxicLink.AddToxic; a false-alarm gate hit it).
//   - Leaks. A stub that stops reading (a toxic that closed, a writer that
//     failed) blocks the stubs and the socket reader behind it for good.
//
// So netfault never adds or removes a toxic on a live proxy. Every proxy is
// born with one netfault toxic per direction, the switch, behind the
// initial noop, and faults are switched on and off in the switch's control
// (one per Link and direction, kept across a partition's new proxy), which
// every stub watches. A switch never blocks on anything but its input, its
// output, a change of its control and the end of its proxy, and when the
// Link retires the proxy every switch closes and drains, so every chain
// ends.
//
// The switch is registered in toxiproxy's global toxic registry, the only
// way toxiproxy accepts a toxic type.
const typeSwitch = "netfault.switch"

func registerToxics() { toxics.Register(typeSwitch, new(switchToxic)) }

// config is the faults in force in one direction of a Link. Its zero value
// is no fault.
type config struct {
	latency time.Duration // 0: none

	blackhole bool
	// blackholes counts the Blackholes applied so far: a stream that saw
	// number n swallow data ends once n is no longer in force.
	blackholes uint64

	cutOn bool
	cut   int64 // bytes each connection may still pass when cutOn
	// cuts counts the CutAfters applied so far: each restarts every
	// connection's count.
	cuts uint64

	reset bool
}

// control is a config that stubs watch: changed is closed (and replaced)
// on every change.
type control struct {
	mu      sync.Mutex
	cfg     config
	changed chan struct{}
}

func newControl() *control { return &control{changed: make(chan struct{})} }

func (c *control) load() (config, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg, c.changed
}

func (c *control) update(f func(*config)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.cfg)
	close(c.changed)
	c.changed = make(chan struct{})
}

// switchToxic applies its control's faults to one direction of every
// connection of a proxy. ctl and retired are set before the proxy starts,
// so every Pipe sees them.
type switchToxic struct {
	ctl     *control
	retired <-chan struct{}
}

// stubState is one connection direction's progress through the faults.
type stubState struct {
	held *stream.StreamChunk // read, not yet handed on
	// sawBlackhole is the number of the Blackhole that swallowed data of
	// this stream, 0 if none did.
	sawBlackhole uint64
	cuts         uint64 // the CutAfter that sent counts for
	sent         int64
	cutDone      bool // end the stream once held is handed on
}

func (*switchToxic) NewState() any { return new(stubState) }

func (t *switchToxic) Pipe(stub *toxics.ToxicStub) {
	s := stub.State.(*stubState)
	for {
		cfg, changed := t.ctl.load()
		if s.sawBlackhole != 0 && (!cfg.blackhole || cfg.blackholes != s.sawBlackhole) {
			// The bytes it swallowed are gone: the stream cannot go on.
			t.end(stub)
			return
		}
		if cfg.blackhole {
			s.sawBlackhole = cfg.blackholes
			s.held = nil
		}

		if s.held != nil {
			if wait := cfg.latency - time.Since(s.held.Timestamp); wait > 0 {
				timer := time.NewTimer(wait)
				select {
				case <-timer.C:
				case <-changed:
					timer.Stop()
					continue
				case <-t.retired:
					timer.Stop()
					t.end(stub)
					return
				case <-stub.Interrupt:
					timer.Stop()
					return
				}
			}
			select {
			case stub.Output <- s.held:
				s.held = nil
				if s.cutDone {
					t.end(stub)
					return
				}
			case <-changed:
			case <-t.retired:
				t.end(stub)
				return
			case <-stub.Interrupt:
				return
			}
			continue
		}

		select {
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			switch {
			case cfg.blackhole:
				s.sawBlackhole = cfg.blackholes
			case cfg.reset:
				t.end(stub) // dropping c
				return
			case cfg.cutOn:
				if s.cuts != cfg.cuts {
					s.cuts, s.sent = cfg.cuts, 0
				}
				if left := max(cfg.cut-s.sent, 0); left < int64(len(c.Data)) {
					c = &stream.StreamChunk{Timestamp: c.Timestamp, Data: c.Data[:left]}
				}
				s.sent += int64(len(c.Data))
				s.cutDone = s.sent >= cfg.cut
				if len(c.Data) == 0 {
					t.end(stub)
					return
				}
				s.held = c
			default:
				s.held = c
			}
		case <-changed:
		case <-t.retired:
			t.end(stub)
			return
		case <-stub.Interrupt:
			return
		}
	}
}

// end closes the stream towards the writer (which then closes its socket,
// with FIN) and consumes the input until the chain ends, so that nothing
// behind the stub blocks: the reader's socket is closed soon after, by the
// other direction's writer or by the proxy's Stop.
func (t *switchToxic) end(stub *toxics.ToxicStub) {
	stub.Close()
	for range stub.Input {
	}
}
