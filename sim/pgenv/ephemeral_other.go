//go:build !linux

package pgenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// The ephemeral cluster relies on Linux process control (Pdeathsig, /proc);
// elsewhere only a DSN server is available.
func startEphemeral(ctx context.Context, opts Options, log *slog.Logger) (backend, error) {
	return nil, fmt.Errorf("an ephemeral cluster needs Linux: %w", errNoBinaries)
}

// Off Linux the owner of a database or container cannot be checked: every
// owner counts as alive, so nothing is swept.
func processAlive(pid int, startTime uint64) bool { return true }

func selfOwner() owner {
	host, _ := os.Hostname()
	return owner{host: host, boot: unknownBoot, pid: os.Getpid()}
}

func sweepLocal(opts Options, log *slog.Logger) {}

func containerDataDir(opts Options) string { return "" }
