package netfault

import (
	"fmt"
	"strconv"
	"time"
)

// Direction says which half of a connection a fault acts on.
type Direction int

const (
	// Downstream is server → client (responses). It is the zero value, as in
	// toxiproxy, because losing or delaying a response after the server acted
	// is the interesting (ambiguous) case.
	Downstream Direction = iota
	// Upstream is client → server (requests).
	Upstream
)

// String returns "down", "up", or "Direction(n)" for an invalid value.
func (d Direction) String() string {
	switch d {
	case Downstream:
		return "down"
	case Upstream:
		return "up"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// stream is toxiproxy's name for the direction.
func (d Direction) stream() (string, error) {
	switch d {
	case Downstream:
		return "downstream", nil
	case Upstream:
		return "upstream", nil
	}
	return "", fmt.Errorf("direction %d: %w", int(d), ErrInvalidFault)
}

// Fault is one network fault a Link can carry. The set is closed: each
// fault is a setting of the Link's switch in one direction (toxics.go), or,
// for Partition, stopping the proxy; none uses randomness, so a fault acts
// on every connection and the scenario's draws decide everything.
//
// A fault's identity on a Link is its kind plus its direction: applying a
// fault whose kind and direction are already active replaces it.
type Fault interface {
	// String is a stable, human name such as "latency(200ms,down)"; it is
	// meant for logs, histories and reports, and does not change between
	// releases for the same value.
	String() string

	// id is the fault's identity on a Link (kind + direction), valid
	// whatever the other fields hold.
	id() (string, error)
	// check reports fields out of range.
	check() error
	// dir is the direction whose switch the fault sets (Partition: none).
	dir() Direction
	// set switches the fault on or off in its direction's config.
	set(c *config, on bool)
}

func faultID(kind string, d Direction) (string, error) {
	if _, err := d.stream(); err != nil {
		return "", err
	}
	return kind + "(" + d.String() + ")", nil
}

// Latency delays every chunk of data in Dir by Delay, measured from when the
// proxy read it. It never drops or reorders data. Delay must be a positive
// whole number of milliseconds; anything else is rejected rather than
// rounded, so the String of an applied fault is exactly what was in force.
// Removing it hands on what it holds at once.
type Latency struct {
	Delay time.Duration
	Dir   Direction
}

func (f Latency) String() string { return fmt.Sprintf("latency(%v,%v)", f.Delay, f.Dir) }

func (f Latency) id() (string, error) { return faultID("latency", f.Dir) }

func (f Latency) check() error {
	if f.Delay <= 0 || f.Delay%time.Millisecond != 0 {
		return fmt.Errorf("latency %v: want a positive whole number of milliseconds: %w", f.Delay, ErrInvalidFault)
	}
	return nil
}

func (f Latency) dir() Direction { return f.Dir }

func (f Latency) set(c *config, on bool) {
	c.latency = 0
	if on {
		c.latency = f.Delay
	}
}

// Blackhole swallows all data in Dir and never closes the connection by
// itself: the peer waits until its own deadline (TCP keepalive does not
// help; the proxy's sockets are healthy). It passes on the end of the
// stream, though: if the sending side closes, the receiving side sees EOF
// (so an HTTP server that closes after responding is not blackholed; with
// keep-alive it is). Removing it (Heal, Remove) closes every connection
// open through the link, with FIN, because the swallowed bytes are gone and
// those streams cannot go on.
type Blackhole struct {
	Dir Direction
}

func (f Blackhole) String() string { return fmt.Sprintf("blackhole(%v)", f.Dir) }

func (f Blackhole) id() (string, error) { return faultID("blackhole", f.Dir) }

func (Blackhole) check() error { return nil }

func (f Blackhole) dir() Direction { return f.Dir }

func (Blackhole) set(c *config, on bool) {
	if on && !c.blackhole {
		c.blackholes++
	}
	c.blackhole = on
}

// Reset closes a connection as soon as the next data arrives in Dir,
// dropping that data, with FIN: the peers read EOF (toxiproxy's reset_peer
// would close new connections with RST, but only as a toxic added to a
// live proxy, which netfault never does; see toxics.go). Downstream (the
// zero value) lets the request reach the server and loses the response;
// Upstream loses the request.
type Reset struct {
	Dir Direction
}

func (f Reset) String() string { return fmt.Sprintf("reset(%v)", f.Dir) }

func (f Reset) id() (string, error) { return faultID("reset", f.Dir) }

func (Reset) check() error { return nil }

func (f Reset) dir() Direction { return f.Dir }

func (Reset) set(c *config, on bool) { c.reset = on }

// CutAfter lets Bytes bytes through in Dir on each connection and then
// closes it (FIN), as toxiproxy's "limit_data": a response or request cut
// short. After an Upstream cut the proxy also drops the server's side at
// once, so a response already on its way is lost too. Bytes are counted per
// connection from the moment the fault is applied (for connections already
// open) or from the connection's start. Bytes must not be negative; 0 closes
// on the first data.
type CutAfter struct {
	Bytes int64
	Dir   Direction
}

func (f CutAfter) String() string { return fmt.Sprintf("cut-after(%dB,%v)", f.Bytes, f.Dir) }

func (f CutAfter) id() (string, error) { return faultID("cut-after", f.Dir) }

func (f CutAfter) check() error {
	if f.Bytes < 0 {
		return fmt.Errorf("cut-after %d bytes: %w", f.Bytes, ErrInvalidFault)
	}
	return nil
}

func (f CutAfter) dir() Direction { return f.Dir }

func (f CutAfter) set(c *config, on bool) {
	c.cutOn = on
	if on {
		c.cut = f.Bytes
		c.cuts++
	}
}

// Partition takes the link down: the proxy stops listening, so new
// connections are refused (ECONNREFUSED), and every open connection is
// closed. Heal listens again on the same address.
type Partition struct{}

func (Partition) String() string { return "partition" }

func (Partition) id() (string, error) { return "partition", nil }

func (Partition) check() error { return nil }

func (Partition) dir() Direction { return Downstream }

func (Partition) set(*config, bool) {}
