package simrun

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/workproof/workproof/sim/proc"
)

// workerCmd is one worker process of soak -process-workers: it serves the
// system named by -system with the Spec its parent put in the environment,
// reports its intervals on stdout, and stops cleanly on SIGTERM or SIGINT.
// A SIGKILL is the fault it exists for.
func (c *cli) workerCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	system := fs.String("system", c.systems[0].Name, "system under test whose Work this process runs")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: simrun worker [flags]

One worker of "simrun soak -process-workers", started by the soak with its
database and provider addresses (through the soak's fault links) in $%s.
It writes one line of JSON per work item it enters or leaves on stdout.
It is not meant to be run by hand.

Flags:
`, proc.SpecEnv)
		fs.PrintDefaults()
	}
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	sys, err := c.systemNamed(*system)
	if err != nil {
		fmt.Fprintf(stderr, "simrun worker: %v\n", err)
		return exitUsage
	}
	spec, err := proc.ReadSpec()
	if err != nil {
		fmt.Fprintf(stderr, "simrun worker: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := proc.Serve(ctx, sys.New(), spec, stdout, log); err != nil {
		fmt.Fprintf(stderr, "simrun worker: %v\n", err)
		return exitUsage
	}
	return exitValid
}
