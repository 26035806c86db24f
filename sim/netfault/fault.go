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
// fault maps onto one toxiproxy toxic (or, for Partition, stopping the
// proxy), and none of them uses toxiproxy's unseeded randomness (toxicity
// strictly between 0 and 1, jitter), so a fault acts on every connection
// and the scenario's draws decide everything.
//
// A fault's identity on a Link is its kind plus its direction: applying a
// fault whose kind and direction are already active replaces it.
type Fault interface {
	// String is a stable, human name such as "latency(200ms,down)"; it is
	// meant for logs, histories and reports, and does not change between
	// releases for the same value.
	String() string

	// spec is what toxiproxy is told.
	spec() (toxicSpec, error)
	// id is the fault's identity on a Link (kind + direction), valid
	// whatever the other fields hold.
	id() (string, error)
}

// toxicSpec describes a fault to toxiproxy: the toxics to add, in order, to
// one direction. No toxics means Partition.
type toxicSpec struct {
	id     string
	stream string
	toxics []toxicDef
}

type toxicDef struct {
	name     string
	typ      string
	toxicity float32
	attrs    map[string]int64
}

func faultID(kind string, d Direction) (string, error) {
	if _, err := d.stream(); err != nil {
		return "", err
	}
	return kind + "(" + d.String() + ")", nil
}

// oneToxic is the spec of a fault made of one fully toxic toxic.
func oneToxic(kind string, d Direction, typ string, attrs map[string]int64) (toxicSpec, error) {
	s, err := d.stream()
	if err != nil {
		return toxicSpec{}, err
	}
	id, _ := faultID(kind, d)
	return toxicSpec{id: id, stream: s, toxics: []toxicDef{{name: id, typ: typ, toxicity: 1, attrs: attrs}}}, nil
}

// Latency delays every chunk of data in Dir by Delay, measured from when the
// proxy read it. It never drops or reorders data. Delay must be a positive
// whole number of milliseconds (toxiproxy's unit); anything else is
// rejected rather than rounded, so the String of an applied fault is exactly
// what was in force.
type Latency struct {
	Delay time.Duration
	Dir   Direction
}

func (f Latency) String() string { return fmt.Sprintf("latency(%v,%v)", f.Delay, f.Dir) }

func (f Latency) id() (string, error) { return faultID("latency", f.Dir) }

func (f Latency) spec() (toxicSpec, error) {
	if f.Delay <= 0 || f.Delay%time.Millisecond != 0 {
		return toxicSpec{}, fmt.Errorf("latency %v: want a positive whole number of milliseconds: %w", f.Delay, ErrInvalidFault)
	}
	return oneToxic("latency", f.Dir, typeLatency, map[string]int64{"latency": f.Delay.Milliseconds()})
}

// Blackhole swallows all data in Dir and never closes the connection by
// itself: the peer waits until its own deadline (TCP keepalive does not
// help; the proxy's sockets are healthy). It passes on the end of the
// stream, though: if the sending side closes, the receiving side sees EOF
// (so an HTTP server that closes after responding is not blackholed; with
// keep-alive it is). It behaves as toxiproxy's "timeout" toxic
// with timeout 0 (see toxics.go for why it is a netfault variant). Removing
// it (Heal, Remove) closes every connection open through the link, with
// FIN, because the swallowed bytes are gone and those streams cannot go on.
type Blackhole struct {
	Dir Direction
}

func (f Blackhole) String() string { return fmt.Sprintf("blackhole(%v)", f.Dir) }

func (f Blackhole) id() (string, error) { return faultID("blackhole", f.Dir) }

func (f Blackhole) spec() (toxicSpec, error) {
	return oneToxic("blackhole", f.Dir, typeBlackhole, nil)
}

// Reset closes a connection as soon as the next data arrives in Dir, dropping
// that data, as toxiproxy's "reset_peer" toxic with timeout 0. Connections
// opened while it is active are closed with RST (SO_LINGER 0), so the peers
// read ECONNRESET; connections that were already open when it was applied
// are closed with FIN and read EOF (toxiproxy sets the linger option only
// when a connection starts). Downstream (the zero value) lets the request
// reach the server and loses the response; Upstream loses the request.
type Reset struct {
	Dir Direction
}

func (f Reset) String() string { return fmt.Sprintf("reset(%v)", f.Dir) }

func (f Reset) id() (string, error) { return faultID("reset", f.Dir) }

func (f Reset) spec() (toxicSpec, error) {
	spec, err := oneToxic("reset", f.Dir, typeReset, nil)
	if err != nil {
		return spec, err
	}
	// The inert original only makes toxiproxy close new connections with
	// RST; see resetToxic. It forwards with a plain send, so it goes in
	// front, where the netfault.reset behind it always reads, and it is
	// removed first (removeToxics goes in this order): it is never the last
	// toxic of a chain (see toxics.go).
	linger := toxicDef{name: spec.id + ".linger", typ: "reset_peer", toxicity: 0, attrs: map[string]int64{"timeout": 0}}
	spec.toxics = append([]toxicDef{linger}, spec.toxics...)
	return spec, nil
}

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

func (f CutAfter) spec() (toxicSpec, error) {
	if f.Bytes < 0 {
		return toxicSpec{}, fmt.Errorf("cut-after %d bytes: %w", f.Bytes, ErrInvalidFault)
	}
	return oneToxic("cut-after", f.Dir, typeCut, map[string]int64{"bytes": f.Bytes})
}

// Partition takes the link down: the proxy stops listening, so new
// connections are refused (ECONNREFUSED), and every open connection is
// closed. Heal listens again on the same address.
type Partition struct{}

func (Partition) String() string { return "partition" }

func (Partition) id() (string, error) { return "partition", nil }

func (Partition) spec() (toxicSpec, error) { return toxicSpec{id: "partition"}, nil }
