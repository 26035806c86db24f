package netfault

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// These tests drive faults while data is in flight, the situations in which
// toxiproxy v2.12.0's own toxics and Stop leak goroutines (see toxics.go).
// Before netfault's workarounds each of them leaked: goleak fails them.

// checkLeaks fails t if goroutines started during t outlive its cleanups.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// pump keeps writing to and reading from c until c fails, then closes c.
func pump(t *testing.T, c net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := bytes.Repeat([]byte("w"), 4096)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
}

// streaming starts a pump through l and waits until data has made the
// round trip, so that chunks are in flight in both directions.
func streaming(t *testing.T, l *Link, echo *echoServer) net.Conn {
	t.Helper()
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)
	if err := c.SetDeadline(time.Now().Add(stuck)); err != nil {
		t.Fatal(err)
	}
	before := echo.received.Load()
	pump(t, c)
	waitFor(t, "traffic", func() bool { return echo.received.Load() > before+64<<10 })
	return c
}

func TestNoLeakWhenRemovingBlackholeUnderTraffic(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	for i := range 10 {
		dir := dirs[i%2]
		streaming(t, l, echo)
		apply(t, l, Blackhole{Dir: dir})
		time.Sleep(5 * time.Millisecond) // let data pile up at the blackhole
		if i%4 < 2 {
			heal(t, l)
		} else if err := l.Remove(Blackhole{Dir: dir}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNoLeakWhenStoppingUnderTraffic(t *testing.T) {
	for _, stop := range []string{"partition", "sever", "close", "network close"} {
		t.Run(stop, func(t *testing.T) {
			checkLeaks(t)
			echo := startEcho(t, nil)
			n := newNetwork(t)
			for i := range 5 {
				l := newLink(t, n, fmt.Sprint(i), echo.Addr())
				apply(t, l, Latency{Delay: time.Millisecond, Dir: dirs[i%2]})
				streaming(t, l, echo)
				switch stop {
				case "partition":
					apply(t, l, Partition{})
					heal(t, l)
				case "sever":
					if err := l.Sever(); err != nil {
						t.Fatal(err)
					}
				case "close":
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if stop == "network close" {
				if err := n.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestNoLeakWhenCuttingStreams(t *testing.T) {
	for _, f := range []Fault{CutAfter{Bytes: 120}, Reset{}, CutAfter{Bytes: 100 << 10, Dir: Upstream}, Reset{Dir: Upstream}} {
		t.Run(f.String(), func(t *testing.T) {
			checkLeaks(t)
			echo := startEcho(t, nil)
			l := newLink(t, newNetwork(t), "echo", echo.Addr())
			for range 5 {
				c := dial(t, l.Addr())
				mustRoundTrip(t, c)
				pump(t, c)
				apply(t, l, f) // acts on the streaming connection
				if _, err := readEnd(t, c); err != nil && !isConnError(err) {
					t.Fatalf("read: %v", err)
				}
				heal(t, l)
			}
		})
	}
}

// stalledThenDropped returns a connection through l whose reader has gone:
// the client writes until everything between it and the echo server is
// full (it never reads), then resets its socket. The proxy's writer towards
// the client fails and exits while the chain behind it still holds a chunk
// for it, which nothing will ever read.
func stalledThenDropped(t *testing.T, l *Link) {
	t.Helper()
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)
	buf := bytes.Repeat([]byte("s"), 32<<10)
	deadline := time.Now().Add(stuck)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the connection never filled up")
		}
		if err := c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			if !isTimeout(err) {
				t.Fatalf("write: %v", err)
			}
			break
		}
	}
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The proxy's writer fails on its next write, which the reset causes at
	// once; a moment later it has exited.
	time.Sleep(100 * time.Millisecond)
}

// A fault switch must not wait for a connection. With toxiproxy's own
// toxics added and removed on the live proxy, every switch paused the last
// toxic of each chain, which a chunk held for a writer that has exited
// blocks for good: the switch hung forever holding the proxy's lock
// (toxiproxy issues #558, #427; the same hang stopped a CI run). Every
// case here hung so; each goroutine must also be gone at the end.
func TestFaultSwitchesWhenAWriterIsGone(t *testing.T) {
	lat := Latency{Delay: time.Millisecond}
	for _, tc := range []struct {
		name   string
		before Fault // active while the connection stalls
		act    func(*Link) error
	}{
		{"apply", nil, func(l *Link) error { return l.Apply(lat) }},
		{"apply after latency", lat, func(l *Link) error { return l.Apply(Blackhole{Dir: Upstream}) }},
		{"remove latency", lat, func(l *Link) error { return l.Remove(lat) }},
		{"heal cut", CutAfter{Bytes: 1 << 40}, func(l *Link) error { return l.Heal() }},
		{"apply reset", nil, func(l *Link) error { return l.Apply(Reset{}) }},
		{"heal latency", lat, func(l *Link) error { return l.Heal() }},
		{"partition", nil, func(l *Link) error { return l.Apply(Partition{}) }},
		{"sever", lat, func(l *Link) error { return l.Sever() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			echo := startEcho(t, nil)
			l := newLink(t, newNetwork(t), "echo", echo.Addr())
			if tc.before != nil {
				apply(t, l, tc.before)
			}
			stalledThenDropped(t, l)
			done := make(chan error, 1)
			go func() { done <- tc.act(l) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(stuck):
				t.Fatal("the fault switch hung")
			}
		})
	}
}
