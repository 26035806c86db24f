package netfault

import (
	"io"
	"net"
	"testing"
)

// benchTargets returns the echo address to dial directly and through a
// healthy Link.
func benchTargets(b *testing.B) map[string]string {
	echo := startEcho(b, nil)
	l := newLink(b, newNetwork(b), "bench", echo.Addr())
	return map[string]string{"direct": echo.Addr(), "link": l.Addr()}
}

// BenchmarkEchoThroughput streams 32 KiB chunks to the echo server and reads
// them back concurrently; MB/s counts one direction.
func BenchmarkEchoThroughput(b *testing.B) {
	targets := benchTargets(b)
	for _, via := range []string{"direct", "link"} {
		b.Run(via, func(b *testing.B) {
			c := dial(b, targets[via])
			chunk := make([]byte, 32<<10)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			werr := make(chan error, 1)
			go func() {
				for range b.N {
					if _, err := c.Write(chunk); err != nil {
						werr <- err
						return
					}
				}
				werr <- nil
			}()
			if _, err := io.CopyN(io.Discard, c, int64(b.N)*int64(len(chunk))); err != nil {
				b.Fatal(err)
			}
			if err := <-werr; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRoundTrip is one small request and response, like a simple query.
func BenchmarkRoundTrip(b *testing.B) {
	targets := benchTargets(b)
	for _, via := range []string{"direct", "link"} {
		b.Run(via, func(b *testing.B) {
			c := dial(b, targets[via]).(*net.TCPConn)
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
