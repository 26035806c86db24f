package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

var dirs = []Direction{Downstream, Upstream}

func TestHealthyLinkForwards(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "w1.1/echo", echo.Addr())
	if l.Name() != "w1.1/echo" || l.Upstream() != echo.Addr() {
		t.Errorf("Name, Upstream = %q, %q", l.Name(), l.Upstream())
	}
	host, port, err := net.SplitHostPort(l.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:<bound port>", l.Addr())
	}
	for range 3 {
		c := dial(t, l.Addr())
		mustRoundTrip(t, c)
		mustRoundTrip(t, c)
	}
	if got := l.Faults(); len(got) != 0 {
		t.Errorf("Faults() = %v, want none", got)
	}
}

func TestLatencyDelaysData(t *testing.T) {
	const delay = 150 * time.Millisecond
	for _, dir := range dirs {
		t.Run(dir.String(), func(t *testing.T) {
			echo := startEcho(t, nil)
			l := newLink(t, newNetwork(t), "echo", echo.Addr())
			open := dial(t, l.Addr())
			mustRoundTrip(t, open)

			apply(t, l, Latency{Delay: delay, Dir: dir})
			for name, c := range map[string]net.Conn{"open before": open, "opened after": dial(t, l.Addr())} {
				start := time.Now()
				mustRoundTrip(t, c)
				if took := time.Since(start); took < delay {
					t.Errorf("%s: round trip took %v, want ≥ %v", name, took, delay)
				}
			}

			heal(t, l)
			mustRoundTrip(t, open) // latency removal keeps connections open
		})
	}
}

func TestBlackholeHoldsDataUntilDeadlineAndHealClosesConnections(t *testing.T) {
	const deadline = 200 * time.Millisecond
	for _, dir := range dirs {
		t.Run(dir.String(), func(t *testing.T) {
			echo := startEcho(t, nil)
			l := newLink(t, newNetwork(t), "echo", echo.Addr())
			open := dial(t, l.Addr())
			mustRoundTrip(t, open)
			before := echo.received.Load()

			apply(t, l, Blackhole{Dir: dir})
			during := dial(t, l.Addr()) // connects: the listener is up
			for name, c := range map[string]net.Conn{"open before": open, "opened during": during} {
				start := time.Now()
				err := roundTrip(c, "ping", deadline)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: round trip error = %v, want the client's deadline", name, err)
				}
				if took := time.Since(start); took < deadline {
					t.Errorf("%s: failed after %v, before the deadline %v", name, took, deadline)
				}
			}
			switch dir {
			case Upstream: // the requests never reached the server
				if got := echo.received.Load(); got != before {
					t.Errorf("server received %d bytes through an upstream blackhole", got-before)
				}
			case Downstream: // they did; the responses were swallowed
				waitFor(t, "server to receive both requests", func() bool { return echo.received.Load() == before+8 })
			}

			heal(t, l)
			// Removing the timeout toxic closes the connections that ran
			// through it (DEPENDENCIES.md): both clients read EOF.
			for name, c := range map[string]net.Conn{"open before": open, "opened during": during} {
				if b, err := readEnd(t, c); err != nil || len(b) != 0 {
					t.Errorf("%s after heal: read %q, %v; want a clean EOF", name, b, err)
				}
			}
			mustRoundTrip(t, dial(t, l.Addr()))
		})
	}
}

func TestRemoveBlackholeClosesConnectionsButRemoveLatencyDoesNot(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)
	apply(t, l, Latency{Delay: time.Millisecond, Dir: Upstream})
	apply(t, l, Blackhole{Dir: Downstream})

	if err := l.Remove(Latency{Dir: Upstream}); err != nil { // Delay is ignored
		t.Fatal(err)
	}
	if got := l.Faults(); !slices.Equal(got, []Fault{Blackhole{}}) {
		t.Fatalf("Faults() = %v, want [blackhole(down)]", got)
	}
	if err := l.Remove(Reset{}); err != nil { // not active: no-op
		t.Fatal(err)
	}
	if err := roundTrip(c, "ping", 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackholed round trip: %v", err)
	}
	if err := l.Remove(Blackhole{}); err != nil {
		t.Fatal(err)
	}
	if b, err := readEnd(t, c); err != nil || len(b) != 0 {
		t.Errorf("after Remove(Blackhole): read %q, %v; want a clean EOF", b, err)
	}
	if got := l.Faults(); len(got) != 0 {
		t.Errorf("Faults() = %v, want none", got)
	}
}

func TestResetClosesOnNextData(t *testing.T) {
	for _, dir := range dirs {
		t.Run(dir.String(), func(t *testing.T) {
			echo := startEcho(t, nil)
			l := newLink(t, newNetwork(t), "echo", echo.Addr())
			open := dial(t, l.Addr())
			mustRoundTrip(t, open)
			before := echo.received.Load()

			apply(t, l, Reset{Dir: dir})
			// Connections opened while it is active and connections already
			// open are closed alike, with FIN.
			fresh := dial(t, l.Addr())
			err := roundTrip(fresh, "ping", stuck)
			t.Logf("opened after: %v", err)
			if !errors.Is(err, io.EOF) {
				t.Errorf("connection opened after Reset: round trip error = %v, want EOF", err)
			}
			err = roundTrip(open, "ping", stuck)
			t.Logf("open before: %v", err)
			if !errors.Is(err, io.EOF) {
				t.Errorf("connection open before Reset: round trip error = %v, want EOF", err)
			}
			after := echo.received.Load() - before
			if want := map[Direction]int64{Downstream: 8, Upstream: 0}[dir]; after != want { // two pings
				t.Errorf("server received %d bytes, want %d (reset(%v) drops the first data in that direction)", after, want, dir)
			}

			heal(t, l)
			mustRoundTrip(t, dial(t, l.Addr()))
		})
	}
}

func TestCutAfterDownstreamEndsResponseAfterNBytes(t *testing.T) {
	banner := bytes.Repeat([]byte("0123456789"), 100)
	srv := startEcho(t, banner)
	l := newLink(t, newNetwork(t), "banner", srv.Addr())
	apply(t, l, CutAfter{Bytes: 120, Dir: Downstream})

	c := dial(t, l.Addr())
	b, err := readEnd(t, c)
	if err != nil || !bytes.Equal(b, banner[:120]) {
		t.Fatalf("read %d bytes, %v; want the first 120 bytes and a clean EOF", len(b), err)
	}

	heal(t, l)
	c = dial(t, l.Addr())
	got := make([]byte, len(banner))
	if err := c.SetDeadline(time.Now().Add(stuck)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestCutAfterUpstreamEndsRequestAfterNBytes(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)
	if n := echo.received.Load(); n != 4 {
		t.Fatalf("server received %d bytes before the fault", n)
	}

	// Counting starts when the fault is applied, also on open connections.
	apply(t, l, CutAfter{Bytes: 120, Dir: Upstream})
	if _, err := c.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
		t.Fatal(err)
	}
	if got := echo.nextEnded(t); got != 4+120 {
		t.Errorf("server connection got %d bytes in all, want 4 before the fault + 120", got)
	}
	b, err := readEnd(t, c)
	t.Logf("client: read %d bytes, %v", len(b), err)
	if len(b) > 120 {
		t.Errorf("client read %d bytes back, more than went through", len(b))
	}
}

// While partitioned, the link's port stays bound (so no ephemeral port
// drawn by another socket can be it, and lifting the partition finds it
// free), yet dials are refused; Close lets it go.
func TestPartitionHoldsItsPort(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the port is held on Linux only")
	}
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	addr := l.Addr()
	apply(t, l, Partition{})
	if err := bindPlain(addr); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind %s while partitioned: %v, want EADDRINUSE (the port held)", addr, err)
	}
	if _, err := net.DialTimeout("tcp", addr, stuck); !isRefused(err) {
		t.Fatalf("dial while partitioned: %v, want ECONNREFUSED", err)
	}
	heal(t, l)
	mustRoundTrip(t, dial(t, addr))

	// A link closed while partitioned lets its port go (no connection ever
	// went through this one, so none lingers in TIME_WAIT on the port).
	l2 := newLink(t, newNetwork(t), "echo2", echo.Addr())
	apply(t, l2, Partition{})
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bindPlain(l2.Addr()); err != nil {
		t.Fatalf("the port is still bound after Close: %v", err)
	}
}

// bindPlain binds a socket to addr as an ephemeral-port pick would find it:
// without SO_REUSEADDR, so any socket bound there makes it fail.
func bindPlain(addr string) error {
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
}

func TestPartitionRefusesAndHealRestoresSameAddr(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	addr := l.Addr()
	open := dial(t, addr)
	mustRoundTrip(t, open)

	apply(t, l, Latency{Delay: 5 * time.Millisecond})
	apply(t, l, Partition{})
	apply(t, l, Partition{}) // already partitioned: no-op
	if got, want := l.Faults(), []Fault{Latency{Delay: 5 * time.Millisecond}, Partition{}}; !slices.Equal(got, want) {
		t.Errorf("Faults() = %v, want %v", got, want)
	}
	if b, err := readEnd(t, open); err != nil || len(b) != 0 {
		t.Errorf("open connection: read %q, %v; want a clean EOF", b, err)
	}
	if echo.nextEnded(t) != 4 {
		t.Error("server connection did not see the 4 bytes and the close")
	}
	if _, err := net.DialTimeout("tcp", addr, stuck); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while partitioned: %v, want ECONNREFUSED", err)
	}

	heal(t, l)
	if l.Addr() != addr {
		t.Fatalf("Addr() changed from %s to %s", addr, l.Addr())
	}
	mustRoundTrip(t, dial(t, addr))
	if got := l.Faults(); len(got) != 0 {
		t.Errorf("Faults() after heal = %v", got)
	}

	// Remove(Partition) lifts the partition alone and keeps the other faults.
	apply(t, l, Blackhole{Dir: Upstream})
	apply(t, l, Partition{})
	if err := l.Remove(Partition{}); err != nil {
		t.Fatal(err)
	}
	if got, want := l.Faults(), []Fault{Blackhole{Dir: Upstream}}; !slices.Equal(got, want) {
		t.Errorf("Faults() = %v, want %v", got, want)
	}
	if err := roundTrip(dial(t, addr), "ping", 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after Remove(Partition) with a blackhole: %v, want the deadline", err)
	}
}

func TestSeverClosesConnectionsForGood(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "w1.1/echo", echo.Addr())
	open := dial(t, l.Addr())
	mustRoundTrip(t, open)
	apply(t, l, Latency{Delay: time.Millisecond})

	if err := l.Sever(); err != nil {
		t.Fatal(err)
	}
	if b, err := readEnd(t, open); err != nil || len(b) != 0 {
		t.Errorf("open connection: read %q, %v; want a clean EOF", b, err)
	}
	if got := echo.nextEnded(t); got != 4 {
		t.Errorf("server connection ended after %d bytes, want 4", got)
	}
	if _, err := net.DialTimeout("tcp", l.Addr(), stuck); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after sever: %v, want ECONNREFUSED", err)
	}
	for name, err := range map[string]error{
		"Apply":  l.Apply(Blackhole{}),
		"Remove": l.Remove(Latency{}),
		"Heal":   l.Heal(),
	} {
		if !errors.Is(err, ErrSevered) {
			t.Errorf("%s after Sever: %v, want ErrSevered", name, err)
		}
	}
	if _, err := net.DialTimeout("tcp", l.Addr(), stuck); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Heal of a severed link: %v, want ECONNREFUSED", err)
	}
	if err := l.Sever(); err != nil {
		t.Errorf("second Sever: %v", err)
	}
	if got := l.Faults(); !slices.Equal(got, []Fault{Latency{Delay: time.Millisecond}}) {
		t.Errorf("Faults() after sever = %v", got)
	}
}

func TestApplySameKindAndDirectionReplaces(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)

	apply(t, l, Latency{Delay: 10 * time.Millisecond})
	apply(t, l, Blackhole{Dir: Upstream})
	apply(t, l, Latency{Delay: 10 * time.Millisecond, Dir: Upstream}) // other direction: another fault
	apply(t, l, Latency{Delay: 200 * time.Millisecond})               // replaces, moves to the end
	apply(t, l, Blackhole{Dir: Upstream})                             // identical: nothing changes
	want := []Fault{
		Blackhole{Dir: Upstream},
		Latency{Delay: 10 * time.Millisecond, Dir: Upstream},
		Latency{Delay: 200 * time.Millisecond},
	}
	if got := l.Faults(); !slices.Equal(got, want) {
		t.Fatalf("Faults() = %v, want %v", got, want)
	}
	if err := l.Remove(Blackhole{Dir: Upstream}); err != nil {
		t.Fatal(err)
	}
	// The replacing latency is the one in force.
	c = dial(t, l.Addr())
	start := time.Now()
	mustRoundTrip(t, c)
	if took := time.Since(start); took < 210*time.Millisecond {
		t.Errorf("round trip took %v, want ≥ 210ms (200ms down + 10ms up)", took)
	}
}

func TestFaultStringsAreStable(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Latency{Delay: 200 * time.Millisecond}, "latency(200ms,down)"},
		{Latency{Delay: 1500 * time.Millisecond, Dir: Upstream}, "latency(1.5s,up)"},
		{Blackhole{}, "blackhole(down)"},
		{Blackhole{Dir: Upstream}, "blackhole(up)"},
		{Reset{}, "reset(down)"},
		{Reset{Dir: Upstream}, "reset(up)"},
		{CutAfter{Bytes: 120, Dir: Upstream}, "cut-after(120B,up)"},
		{CutAfter{}, "cut-after(0B,down)"},
		{Partition{}, "partition"},
		{Blackhole{Dir: 7}, "blackhole(Direction(7))"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestInvalidFaultsAreRejected(t *testing.T) {
	echo := startEcho(t, nil)
	l := newLink(t, newNetwork(t), "echo", echo.Addr())
	for _, f := range []Fault{
		nil,
		Latency{},
		Latency{Delay: -time.Millisecond},
		Latency{Delay: 1500 * time.Microsecond},
		Latency{Delay: time.Millisecond, Dir: 2},
		Blackhole{Dir: -1},
		Reset{Dir: 2},
		CutAfter{Bytes: -1},
	} {
		if err := l.Apply(f); !errors.Is(err, ErrInvalidFault) {
			t.Errorf("Apply(%v) = %v, want ErrInvalidFault", f, err)
		}
	}
	if got := l.Faults(); len(got) != 0 {
		t.Errorf("Faults() = %v after invalid applies", got)
	}
	mustRoundTrip(t, dial(t, l.Addr()))
}

func TestLinkNamesAndUpstreams(t *testing.T) {
	echo := startEcho(t, nil)
	n := newNetwork(t)
	a := newLink(t, n, "w1.1/postgres", echo.Addr())
	if _, err := n.Link("w1.1/postgres", echo.Addr()); !errors.Is(err, ErrNameTaken) {
		t.Errorf("duplicate name: %v, want ErrNameTaken", err)
	}
	for _, up := range []string{"", "127.0.0.1", "nohostport"} {
		if _, err := n.Link("bad", up); err == nil {
			t.Errorf("Link with upstream %q: no error", up)
		}
	}
	if _, err := n.Link("", echo.Addr()); err == nil {
		t.Error("Link with an empty name: no error")
	}
	b := newLink(t, n, "w1.2/postgres", echo.Addr())
	if a.Addr() == b.Addr() {
		t.Errorf("two links share %s", a.Addr())
	}
	// A closed link frees its name.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	newLink(t, n, "w1.1/postgres", echo.Addr())
}

func TestUnreachableUpstreamAcceptsThenCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	l := newLink(t, newNetwork(t), "dead", dead)
	c := dial(t, l.Addr())
	if b, err := readEnd(t, c); err != nil || len(b) != 0 {
		t.Errorf("read %q, %v; want a clean EOF", b, err)
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	echo := startEcho(t, nil)
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := n.Link("echo", echo.Addr())
	if err != nil {
		t.Fatal(err)
	}
	severed, err := n.Link("severed", echo.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := severed.Sever(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, l.Addr())
	mustRoundTrip(t, c)
	apply(t, l, Blackhole{})

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := readEnd(t, c); err != nil || len(b) != 0 {
		t.Errorf("open connection after Network.Close: read %q, %v; want EOF", b, err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr(), stuck); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Close: %v, want ECONNREFUSED", err)
	}
	for name, err := range map[string]error{
		"Network.Close": n.Close(),
		"Link.Close":    l.Close(),
		"severed Close": severed.Close(),
	} {
		if err != nil {
			t.Errorf("second %s: %v", name, err)
		}
	}
	for name, err := range map[string]error{
		"Apply":        l.Apply(Partition{}),
		"Remove":       l.Remove(Partition{}),
		"Heal":         l.Heal(),
		"Sever":        l.Sever(),
		"Network.Link": func() error { _, err := n.Link("again", echo.Addr()); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestConcurrentUse is for the race detector: several links, each with
// traffic, faults switched from several goroutines, then Close.
func TestConcurrentUse(t *testing.T) {
	echo := startEcho(t, nil)
	n := newNetwork(t)
	faults := []Fault{
		Latency{Delay: time.Millisecond}, Latency{Delay: 2 * time.Millisecond, Dir: Upstream},
		Blackhole{}, Blackhole{Dir: Upstream}, Reset{}, CutAfter{Bytes: 64}, Partition{},
	}
	var wg sync.WaitGroup
	for i := range 4 {
		l := newLink(t, n, fmt.Sprintf("w%d/echo", i), echo.Addr())
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 30 {
					var err error
					switch f := faults[(i+g+k)%len(faults)]; (g + k) % 4 {
					case 0:
						err = l.Heal()
					case 1:
						err = l.Remove(f)
					default:
						err = l.Apply(f)
					}
					if err != nil {
						t.Errorf("%s: %v", l.Name(), err)
						return
					}
					_ = l.Faults()
				}
			}()
		}
		wg.Add(1)
		go func() { // traffic: any outcome is fine, only races matter
			defer wg.Done()
			for range 30 {
				c, err := net.DialTimeout("tcp", l.Addr(), stuck)
				if err != nil {
					continue
				}
				_ = roundTrip(c, "ping", 20*time.Millisecond)
				c.Close()
			}
		}()
	}
	wg.Wait()
}

// waitFor polls cond; it bounds a wait for something that must happen and
// asserts nothing about how long it took.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(stuck); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Like toxiproxy's timeout toxic, a blackhole swallows data but passes on a
// close: a server that hangs up is seen to hang up.
func TestBlackholePassesOnTheEndOfTheStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("bye")) // swallowed
		c.Close()
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	l := newLink(t, newNetwork(t), "hangup", ln.Addr().String())
	apply(t, l, Blackhole{})
	if b, err := readEnd(t, dial(t, l.Addr())); err != nil || len(b) != 0 {
		t.Errorf("read %q, %v; want nothing and a clean EOF", b, err)
	}
}
