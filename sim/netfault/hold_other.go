//go:build !linux

package netfault

import (
	"errors"
	"io"
)

// holdPort is Linux-only (see hold_linux.go); elsewhere a partition leaves
// its port free, and lifting it fails if another socket took the port.
func holdPort(string) (io.Closer, error) { return nil, errors.ErrUnsupported }
