//go:build !linux

package pgenv

import (
	"context"
	"fmt"
	"log/slog"
)

// The ephemeral cluster relies on Linux process control (Pdeathsig, /proc);
// elsewhere only a DSN server is available.
func startEphemeral(ctx context.Context, opts Options, log *slog.Logger) (backend, error) {
	return nil, fmt.Errorf("pgenv: an ephemeral cluster needs Linux; set %s to a server you run: %w", EnvDSN, ErrNoPostgres)
}
