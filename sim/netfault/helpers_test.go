package netfault

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// stuck bounds every wait in these tests so that a broken fault fails a test
// instead of hanging it. It is never the thing asserted.
const stuck = 10 * time.Second

// echoServer is a loopback TCP server that, per connection, first writes
// banner (if any) and then echoes what it reads. It counts what it received
// and reports each connection's total when the connection ends.
type echoServer struct {
	ln       net.Listener
	banner   []byte
	received atomic.Int64
	ended    chan int64 // per-connection totals, buffered

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startEcho(t testing.TB, banner []byte) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, banner: banner, ended: make(chan int64, 1024), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func (s *echoServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *echoServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	if len(s.banner) > 0 {
		if _, err := c.Write(s.banner); err != nil {
			s.ended <- 0
			return
		}
	}
	var total int64
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			total += int64(n)
			s.received.Add(int64(n))
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	select {
	case s.ended <- total:
	default:
	}
}

// nextEnded waits for the next connection to end on the server.
func (s *echoServer) nextEnded(t testing.TB) int64 {
	t.Helper()
	select {
	case n := <-s.ended:
		return n
	case <-time.After(stuck):
		t.Fatal("server connection did not end")
		return 0
	}
}

func newNetwork(t testing.TB) *Network {
	t.Helper()
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func newLink(t testing.TB, n *Network, name, upstream string) *Link {
	t.Helper()
	l, err := n.Link(name, upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, stuck)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the echo back, within deadline.
func roundTrip(c net.Conn, msg string, deadline time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(deadline)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

func mustRoundTrip(t testing.TB, c net.Conn) {
	t.Helper()
	if err := roundTrip(c, "ping", stuck); err != nil {
		t.Fatalf("round trip: %v", err)
	}
}

// readEnd reads until the connection ends and returns what it read and the
// error that ended it (nil for a clean EOF).
func readEnd(t testing.TB, c net.Conn) ([]byte, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(stuck)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read %d bytes)", stuck, len(b))
	}
	return b, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func apply(t testing.TB, l *Link, f Fault) {
	t.Helper()
	if err := l.Apply(f); err != nil {
		t.Fatalf("apply %v: %v", f, err)
	}
}

func heal(t testing.TB, l *Link) {
	t.Helper()
	if err := l.Heal(); err != nil {
		t.Fatalf("heal: %v", err)
	}
}

// isConnError is true for the errors a peer's close or reset produces.
func isConnError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
