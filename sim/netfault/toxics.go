package netfault

import (
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// netfault's own toxics, and why toxiproxy's are not enough.
//
// In toxiproxy v2.12.0 each connection direction is a chain of goroutines
// ("stubs") joined by unbuffered channels, starting with a noop and ending
// in the goroutine that writes to the socket. Two things go wrong with its
// own toxics under faults:
//
//   - Leaks. When a stub closes itself (limit_data after N bytes, reset_peer
//     on data, timeout when removed), it stops reading its input, but the
//     stub in front of it keeps running: the next chunk that arrives blocks
//     it, and the goroutine reading the socket behind it, forever. Each
//     connection that hits this leaks two goroutines and a 32 KiB buffer.
//     The variants below, once closed, keep consuming their input until the
//     chain ends.
//   - A hang. Every fault switch interrupts the last stub of each chain
//     (adding a toxic splices it in behind that stub; removing one pauses
//     it), under the proxy's lock. toxiproxy's toxics forward with a plain
//     channel send, so a stub holding a chunk for a socket writer that has
//     exited (its peer went away mid-stream) cannot be interrupted: the
//     switch waits forever, and with it the exiting writer, which needs the
//     same lock (toxiproxy issues #558, #427). So every chain ends in a
//     netfault toxic whose send can be interrupted: a permanent tail behind
//     the noop (tailToxic), then the faults, each of which either forwards
//     that way (latency, cut) or forwards nothing (blackhole, reset). A
//     chunk held when interrupted is kept in the stub's state and sent when
//     the stub runs again, or, when its toxic is removed, flushed within
//     flushWait. The one toxiproxy toxic left, Reset's inert reset_peer, is
//     never last (see Reset.spec and Link.removeToxics).
//   - A leak that no interrupt reaches: when a socket writer exits, toxiproxy
//     drops its chain from the proxy's list, so no later fault switch
//     touches it, and a chunk held for that writer blocks the chain and the
//     socket reader behind it for good. So each forwarding toxic also
//     watches its proxy's lifetime (lifetimes): when the link retires the
//     proxy, it closes and drains, and the chain ends.
//
// They are registered in toxiproxy's global toxic registry, the only way
// toxiproxy accepts a toxic type.
const (
	typeTail      = "netfault.tail"
	typeLatency   = "netfault.latency"
	typeBlackhole = "netfault.blackhole"
	typeCut       = "netfault.cut"
	typeReset     = "netfault.reset"
)

// flushWait bounds how long removing a toxic waits to hand on the chunk it
// holds, as toxiproxy bounds the chunks it moves on removal.
const flushWait = 5 * time.Second

func registerToxics() {
	toxics.Register(typeTail, new(tailToxic))
	toxics.Register(typeLatency, new(latencyToxic))
	toxics.Register(typeBlackhole, new(blackholeToxic))
	toxics.Register(typeCut, new(cutToxic))
	toxics.Register(typeReset, new(resetToxic))
}

// drain consumes a closed stub's input until the chain ends.
func drain(stub *toxics.ToxicStub) {
	for range stub.Input {
	}
}

// lifetimes hands each proxy's toxics a channel closed when the proxy is
// retired. toxiproxy builds every toxic from JSON (toxics.New), so a toxic
// can only name a Go value, here by the "life" attribute; like the toxic
// registry this is process-wide, and entries live as long as their proxy.
var lifetimes = struct {
	sync.Mutex
	next uint64
	m    map[uint64]chan struct{}
}{m: map[uint64]chan struct{}{}}

// newLifetime starts a lifetime; end closes and forgets it.
func newLifetime() (id uint64, end func()) {
	lifetimes.Lock()
	defer lifetimes.Unlock()
	lifetimes.next++
	id = lifetimes.next
	ch := make(chan struct{})
	lifetimes.m[id] = ch
	var once sync.Once
	return id, func() {
		once.Do(func() {
			lifetimes.Lock()
			delete(lifetimes.m, id)
			lifetimes.Unlock()
			close(ch)
		})
	}
}

// lifetime returns the channel of lifetime id; one already ended (or never
// started) is a closed channel.
func lifetime(id uint64) <-chan struct{} {
	lifetimes.Lock()
	defer lifetimes.Unlock()
	if ch, ok := lifetimes.m[id]; ok {
		return ch
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// held is the chunk a forwarding stub has taken from its input and not yet
// handed on; it lives in the stub's State, so it survives an interrupt.
type held struct {
	chunk *stream.StreamChunk
}

// forward hands on the held chunk unless interrupted first; it reports
// whether the chunk went. If the proxy retires first, the chunk is dropped
// and the stub closes and drains: on return false the toxic's Pipe returns.
func forward(stub *toxics.ToxicStub, h *held, retired <-chan struct{}) bool {
	select {
	case stub.Output <- h.chunk:
		h.chunk = nil
		return true
	case <-stub.Interrupt:
		return false
	case <-retired:
		h.chunk = nil
		stub.Close()
		drain(stub)
		return false
	}
}

// flush hands on the held chunk of a stub whose toxic is being removed
// (toxiproxy calls Cleanup after interrupting it, before it splices the
// stub out); a reader that is gone costs flushWait and the chunk.
func flush(stub *toxics.ToxicStub, h *held) {
	if h.chunk != nil {
		_ = stub.WriteOutput(h.chunk, flushWait)
		h.chunk = nil
	}
}

// tailToxic passes data through, as the noop does, but interruptibly: it is
// the permanent last-but-faults toxic of every chain, so that the noop is
// never last.
type tailToxic struct {
	Life uint64 `json:"life"`
}

func (*tailToxic) NewState() any { return new(held) }

func (t *tailToxic) Pipe(stub *toxics.ToxicStub) {
	h := stub.State.(*held)
	retired := lifetime(t.Life)
	for {
		if h.chunk != nil && !forward(stub, h, retired) {
			return
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			h.chunk = c
		}
	}
}

// latencyToxic is toxiproxy's latency without jitter: each chunk leaves
// Latency milliseconds after the proxy read it. Removing it hands on the
// chunk it holds at once, as the original does.
type latencyToxic struct {
	Latency int64  `json:"latency"`
	Life    uint64 `json:"life"`
}

func (*latencyToxic) NewState() any { return new(held) }

func (t *latencyToxic) Pipe(stub *toxics.ToxicStub) {
	h := stub.State.(*held)
	retired := lifetime(t.Life)
	delay := time.Duration(t.Latency) * time.Millisecond
	for {
		if h.chunk != nil {
			if wait := delay - time.Since(h.chunk.Timestamp); wait > 0 {
				timer := time.NewTimer(wait)
				select {
				case <-timer.C:
				case <-stub.Interrupt:
					timer.Stop()
					return
				case <-retired: // forward below closes and drains
					timer.Stop()
				}
			}
			if !forward(stub, h, retired) {
				return
			}
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			h.chunk = c
		}
	}
}

func (*latencyToxic) Cleanup(stub *toxics.ToxicStub) { flush(stub, stub.State.(*held)) }

// blackholeToxic is toxiproxy's "timeout" toxic with timeout 0: it swallows
// data and never closes the connection by itself. Removing it closes the
// stream, as the original does, because bytes it swallowed are gone and the
// stream cannot continue; unlike the original it then keeps draining.
type blackholeToxic struct{}

func (*blackholeToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
		}
	}
}

// Cleanup runs under toxiproxy's collection lock, while the chain cannot end
// (ending needs that lock), so the drain runs on its own goroutine; it ends
// when the chain does, shortly after the close.
func (*blackholeToxic) Cleanup(stub *toxics.ToxicStub) {
	stub.Close()
	go drain(stub)
}

// cutToxic is toxiproxy's limit_data: Bytes bytes pass, then it closes (on
// the first data when Bytes is 0) and drains.
type cutToxic struct {
	Bytes int64  `json:"bytes"`
	Life  uint64 `json:"life"`
}

type cutState struct {
	held
	sent int64
	cut  bool // Bytes have passed: close once the held chunk went
}

func (*cutToxic) NewState() any { return new(cutState) }

func (t *cutToxic) Pipe(stub *toxics.ToxicStub) {
	s := stub.State.(*cutState)
	retired := lifetime(t.Life)
	for {
		if s.chunk != nil && !forward(stub, &s.held, retired) {
			return
		}
		if s.cut {
			stub.Close()
			drain(stub)
			return
		}
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if left := max(t.Bytes-s.sent, 0); left < int64(len(c.Data)) {
				c = &stream.StreamChunk{Timestamp: c.Timestamp, Data: c.Data[:left]}
			}
			if len(c.Data) > 0 {
				s.chunk = c
				s.sent += int64(len(c.Data))
			}
			s.cut = s.sent >= t.Bytes
		}
	}
}

func (*cutToxic) Cleanup(stub *toxics.ToxicStub) { flush(stub, &stub.State.(*cutState).held) }

// resetToxic is toxiproxy's reset_peer with timeout 0, draining once it has
// closed. toxiproxy sets SO_LINGER 0 (close with RST) on a new connection
// only if its chain holds a *toxics.ResetToxic, so Reset also adds an inert
// reset_peer (toxicity 0: it never acts, deterministically) in front of this.
type resetToxic struct{}

func (*resetToxic) Pipe(stub *toxics.ToxicStub) {
	select {
	case <-stub.Interrupt:
		return
	case <-stub.Input:
		stub.Close()
		drain(stub)
	}
}
