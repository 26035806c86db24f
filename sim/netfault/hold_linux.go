//go:build linux

package netfault

import (
	"fmt"
	"io"
	"net/netip"
	"syscall"
)

// holdPort binds a socket to addr without listening on it, so that while a
// partition has the link's proxy down no other socket takes the port the
// link must listen on again: an outgoing connection's ephemeral port above
// all, which the kernel draws from the range the link's own port came from.
// A SYN to a port whose socket does not listen is refused, as to a closed
// port, so the partition looks the same to the client.
func holdPort(addr string) (io.Closer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("hold %s: not an IPv4 address and port", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	// As Go's listeners do: the proxy's connections just closed may linger
	// in TIME_WAIT on this port.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	return heldPort(fd), nil
}

type heldPort int

func (h heldPort) Close() error { return syscall.Close(int(h)) }
