package netfault

import (
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Leak-proof variants of toxiproxy's self-closing toxics.
//
// In toxiproxy v2.12.0 each connection direction is a chain of goroutines
// ("stubs") joined by unbuffered channels. When a stub closes itself
// (limit_data after N bytes, reset_peer on data, timeout when removed), it
// stops reading its input, but the stub in front of it keeps running: the
// next chunk that arrives blocks it, and the goroutine reading the socket
// behind it, forever. The same happens at the end of a chain when the
// goroutine writing to the socket fails and exits while more data is in
// flight (as in Proxy.Stop under traffic). Each connection that hits this
// leaks two goroutines and a 32 KiB buffer; goleak sees them.
//
// The variants below behave like the originals but, once closed, keep
// consuming their input until the chain ends (the socket behind it is
// closed, which the close they caused brings about), so nothing upstream of
// them can block. They are registered in toxiproxy's global toxic registry,
// the only way toxiproxy accepts a toxic type.
const (
	typeBlackhole = "netfault.blackhole"
	typeCut       = "netfault.cut"
	typeReset     = "netfault.reset"
)

func registerToxics() {
	toxics.Register(typeBlackhole, new(blackholeToxic))
	toxics.Register(typeCut, new(cutToxic))
	toxics.Register(typeReset, new(resetToxic))
}

// drain consumes a closed stub's input until the chain ends.
func drain(stub *toxics.ToxicStub) {
	for range stub.Input {
	}
}

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

// cutToxic is toxiproxy's limit_data, draining once it has cut.
type cutToxic struct {
	toxics.LimitDataToxic
}

func (t *cutToxic) Pipe(stub *toxics.ToxicStub) {
	t.LimitDataToxic.Pipe(stub)
	if stub.Closed() {
		drain(stub)
	}
}

// resetToxic is toxiproxy's reset_peer with timeout 0, draining once it has
// closed. toxiproxy sets SO_LINGER 0 (close with RST) on a new connection
// only if its chain holds a *toxics.ResetToxic, so Reset also adds an inert
// reset_peer (toxicity 0: it never acts, deterministically) next to this.
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
