// Package proc runs one worker of a system under test as a child process,
// so that a harness can kill it the way a pod is killed: SIGKILL, with
// whatever it had open (database sessions, a LISTEN, provider requests in
// flight) closed by the kernel, not by the worker.
//
// The parent ([Start]) passes the child a [Spec] (its database DSN and
// provider URLs, all through the parent's fault links) and reads [Event]s
// from the child's stdout: one line of JSON per work item the worker enters
// or leaves, stamped with the child's clock, so that the parent records
// intervals at the times they happened rather than when a line was read.
// The child ([Serve]) runs the system's Work until its ctx ends (SIGTERM).
//
// A child has no crash points: its only crash is the kill.
package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workproof/workproof/contract"
	"github.com/workproof/workproof/fakes"
)

// SpecEnv is the environment variable that carries a child's Spec (JSON),
// so that a DSN never shows on a command line.
const SpecEnv = "WORKPROOF_WORKER_SPEC"

// Spec is everything a worker process needs.
type Spec struct {
	// Worker is the incarnation's name: the sessions' application_name and
	// the Caller of every provider request.
	Worker string `json:"worker"`
	// DSN is the database, through the incarnation's link.
	DSN string `json:"dsn"`
	// Services maps a provider's name to its base URL, through the
	// incarnation's links.
	Services map[string]string `json:"services"`
	// Seed seeds Deps.Rand.
	Seed uint64 `json:"seed"`
	// PoolSize caps the worker's connections; zero: 4.
	PoolSize int32 `json:"pool_size,omitempty"`
}

// Event is one line a child writes.
type Event struct {
	At int64 `json:"at"` // unix nanoseconds, the child's clock
	// Seq numbers the child's intervals from 1; Begin says an interval
	// began (Item, Key), else it ended (Outcome).
	Seq     int    `json:"seq"`
	Begin   bool   `json:"begin,omitempty"`
	Item    string `json:"item,omitempty"`
	Key     string `json:"key,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// Time is At as a time.Time.
func (e Event) Time() time.Time { return time.Unix(0, e.At) }

// ReadSpec reads the Spec a parent passed in SpecEnv.
func ReadSpec() (Spec, error) {
	raw := os.Getenv(SpecEnv)
	if raw == "" {
		return Spec{}, fmt.Errorf("proc: %s is not set: a worker process is started by the harness (simrun soak -process-workers), not by hand", SpecEnv)
	}
	var s Spec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return Spec{}, fmt.Errorf("proc: %s: %w", SpecEnv, err)
	}
	if s.Worker == "" || s.DSN == "" {
		return Spec{}, fmt.Errorf("proc: %s names no worker or no DSN", SpecEnv)
	}
	return s, nil
}

// Serve is the child's side: it runs sys.Work under spec until ctx ends,
// reporting every interval on out, and returns Work's error.
func Serve(ctx context.Context, sys contract.System, spec Spec, out io.Writer, log *slog.Logger) error {
	cfg, err := pgxpool.ParseConfig(spec.DSN)
	if err != nil {
		return fmt.Errorf("proc: worker %s: DSN: %w", spec.Worker, err)
	}
	cfg.MaxConns = spec.PoolSize
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = spec.Worker
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("proc: worker %s: pool: %w", spec.Worker, err)
	}
	defer pool.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: CallerTransport{Caller: spec.Worker, Base: tr}}
	services := map[string]contract.Service{}
	for name, url := range spec.Services {
		services[name] = contract.Service{URL: url, HTTPClient: hc}
	}
	deps := contract.Deps{
		Worker:   spec.Worker,
		Services: services,
		Logger:   log.With("worker", spec.Worker),
		Clock:    fakes.RealClock(),
		Rand:     rand.New(rand.NewPCG(spec.Seed, 0x70726f63)),
		Observer: &reporter{enc: json.NewEncoder(out)},
	}
	return sys.Work(ctx, pool, deps)
}

// CallerTransport names the worker on every provider request (the ledgers'
// Caller), whatever client the system built on its http.Client: the
// in-process harness and a worker process both use it.
type CallerTransport struct {
	Caller string
	Base   http.RoundTripper
}

func (t CallerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(fakes.HeaderCaller, t.Caller)
	return t.Base.RoundTrip(r)
}

// reporter is the child's Observer: each Begin and end is a line, written
// before Begin returns (and before end returns), so that a line is out
// before the worker acts on what it reports.
type reporter struct {
	mu  sync.Mutex
	enc *json.Encoder
	seq int
}

func (r *reporter) Begin(item, key string) func(string) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	_ = r.enc.Encode(Event{At: time.Now().UnixNano(), Seq: seq, Begin: true, Item: item, Key: key})
	r.mu.Unlock()
	var once sync.Once
	return func(outcome string) {
		once.Do(func() {
			r.mu.Lock()
			_ = r.enc.Encode(Event{At: time.Now().UnixNano(), Seq: seq, Outcome: outcome})
			r.mu.Unlock()
		})
	}
}

// Child is a running worker process.
type Child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited and its output was read
	err  error         // Wait's, once done is closed
}

// ErrBadEvent is wrapped by the error of a child whose output is not events.
var ErrBadEvent = errors.New("proc: a worker process wrote a line that is not an event")

// Start starts argv as a worker process with spec, and calls on for every
// event it reports, in order, from a goroutine of its own. The child's
// stderr goes to log, a line per record. The child dies with the parent
// (Pdeathsig), so a harness killed by SIGKILL leaves no worker behind.
func Start(argv []string, spec Spec, on func(Event), log *slog.Logger) (*Child, error) {
	if len(argv) == 0 {
		return nil, errors.New("proc: no command for the worker process")
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("proc: spec: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), SpecEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start worker %s: %w", spec.Worker, err)
	}
	c := &Child{cmd: cmd, done: make(chan struct{})}
	var wg sync.WaitGroup
	var bad error
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				if bad == nil {
					bad = fmt.Errorf("%w: %q", ErrBadEvent, sc.Text())
				}
				continue
			}
			on(ev)
		}
	})
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Info("worker process", "worker", spec.Worker, "line", sc.Text())
		}
	})
	go func() {
		// Wait only after the pipes are drained: it closes them.
		wg.Wait()
		c.err = errors.Join(cmd.Wait(), bad)
		close(c.done)
	}()
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed once the child has exited and every event it wrote has
// been handed to on.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is how the child ended, once Done is closed.
func (c *Child) Err() error {
	<-c.done
	return c.err
}

// Kill sends SIGKILL and waits until the child is gone and its events are
// read.
func (c *Child) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Stop asks the child to shut down (SIGTERM: Work's ctx ends and the item
// in hand may finish), and kills it if it has not exited within grace.
func (c *Child) Stop(grace time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		c.Kill()
		return fmt.Errorf("proc: worker process %d did not stop within %s: killed", c.Pid(), grace)
	}
}
