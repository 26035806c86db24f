package pgenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvPGImage names the image of the container backend.
const EnvPGImage = "WORKPROOF_PG_IMAGE"

// DefaultImage is the container backend's image unless Options.Image or
// $WORKPROOF_PG_IMAGE says otherwise: the official image, pulled from a
// registry when the engine does not have it. Where no registry is reachable,
// scripts/docker-postgres-image.sh builds a compatible one locally.
const DefaultImage = "postgres:15"

// containerReadyBound is how long a started container gets to accept
// connections (an official image runs initdb first: ~1.5 s).
const containerReadyBound = 2 * time.Minute

// container is a Postgres server in a container this Server started: a
// private server, like the ephemeral cluster, that Restart may crash.
type container struct {
	log    *slog.Logger
	engine ContainerEngine
	image  string
	id     string
	name   string
	port   int
	opts   map[string]string // postgres -c settings
	closer func()            // releases a built-in engine's connections; nil otherwise
	// dataDir is the host directory mounted as the data directory ("" =
	// the container's own layer); removed by close.
	dataDir string

	mu     sync.Mutex
	closed bool
}

// resolveImage picks Options.Image, else $WORKPROOF_PG_IMAGE, else
// DefaultImage.
func resolveImage(opts Options) string {
	if opts.Image != "" {
		return opts.Image
	}
	if v := os.Getenv(EnvPGImage); v != "" {
		return v
	}
	return DefaultImage
}

// startContainer sweeps containers of dead runs, then starts a Postgres
// container on a free loopback port and waits until it accepts connections.
func startContainer(ctx context.Context, opts Options, engine ContainerEngine, closer func(), mountData bool, log *slog.Logger) (*container, error) {
	start := time.Now()
	sweepContainers(ctx, engine, log)
	c := &container{
		log:    log,
		engine: engine,
		image:  resolveImage(opts),
		opts:   DefaultSettings(),
		closer: closer,
	}
	maps.Copy(c.opts, opts.Settings)
	for _, k := range []string{"listen_addresses", "port", "unix_socket_directories"} {
		delete(c.opts, k) // set below, always
	}
	var err error
	// A free port can be taken between our probe and postgres binding it:
	// try another (in a new container: the port is in its command).
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		if mountData {
			c.dataDir = containerDataDir(opts)
		}
		err = c.run(ctx)
		if err != nil && c.dataDir != "" {
			os.RemoveAll(c.dataDir)
		}
		if err == nil || !errors.Is(err, errPortInUse) || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	log.Debug("pgenv: container started", "id", c.id[:min(12, len(c.id))], "image", c.image, "port", c.port, "took", time.Since(start))
	return c, nil
}

// run starts one container on c.port and waits for it; on error nothing is
// left behind.
func (c *container) run(ctx context.Context) error {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("pgenv: random name: %w", err)
	}
	c.name = fmt.Sprintf("workproof-pg-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	cmd := []string{"postgres"}
	for _, k := range slices.Sorted(maps.Keys(c.opts)) {
		cmd = append(cmd, "-c", k+"="+c.opts[k])
	}
	// Last, so that no setting moves the server off loopback or its port.
	cmd = append(cmd, "-c", "port="+strconv.Itoa(c.port), "-c", "listen_addresses=127.0.0.1")
	spec := ContainerSpec{
		Name:  c.name,
		Image: c.image,
		// Trust on loopback as on the ephemeral cluster; the password is
		// for images whose entrypoint insists on one.
		Env:     []string{"POSTGRES_HOST_AUTH_METHOD=trust", "POSTGRES_PASSWORD=postgres", "POSTGRES_USER=postgres", "POSTGRES_DB=postgres"},
		Cmd:     cmd,
		Labels:  map[string]string{ownerLabel: selfOwner().String()},
		DataDir: c.dataDir,
	}
	if c.dataDir != "" {
		spec.Env = append(spec.Env, "PGDATA="+DataMount+"/data")
	}
	id, err := c.engine.Run(ctx, spec)
	if err != nil {
		return err
	}
	c.id = id
	if err := c.waitReady(ctx); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		logs, _ := c.engine.Logs(rctx, id)
		if rerr := c.engine.Remove(rctx, id); rerr != nil {
			c.log.Warn("pgenv: removing a container that did not become ready", "id", id, "err", rerr)
		}
		if strings.Contains(logs, "could not bind") || strings.Contains(logs, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("pgenv: postgres in a container of %s on port %d did not become ready: %w\n%s", c.image, c.port, err, tail([]byte(logs), 2000))
	}
	return nil
}

// waitReady polls a connection every 10 ms until the server accepts one,
// asking the engine every 100 ms whether the container has exited.
func (c *container) waitReady(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, containerReadyBound)
	defer cancel()
	dsn := c.connString("", "") + "&connect_timeout=2"
	for i := 0; ; i++ {
		conn, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			return conn.Close(ctx)
		}
		if i%10 == 0 {
			if running, rerr := c.engine.Running(ctx, c.id); rerr == nil && !running {
				return fmt.Errorf("the container exited (last attempt: %w)", err)
			}
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (c *container) kind() string     { return "container" }
func (c *container) private() bool    { return true }
func (c *container) hostPort() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

func (c *container) settings() map[string]string { return maps.Clone(c.opts) }

// cloneOptions: the default WAL_LOG strategy. The data directory is a
// mounted host directory (on tmpfs when there is room: a clone takes ~20 ms)
// or the container's writable overlay layer (~250 ms, either strategy); a
// tmpfs mount of the engine's own would not survive Restart.
func (c *container) cloneOptions() string { return "" }

func (c *container) connString(db, hostPort string) string {
	if db == "" {
		db = "postgres"
	}
	if hostPort == "" {
		hostPort = c.hostPort()
	}
	return "postgres://postgres@" + hostPort + "/" + db + "?sslmode=disable"
}

// restart crashes Postgres as the ephemeral cluster's Restart does — SIGQUIT
// to the postmaster (the container's main process) is an immediate shutdown —
// and starts the same container again: same port, same data, crash recovery.
func (c *container) restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if err := c.engine.Kill(ctx, c.id, "SIGQUIT"); err != nil {
		return fmt.Errorf("pgenv: restart: %w", err)
	}
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = c.engine.Start(ctx, c.id); err == nil {
			if err = c.waitReady(ctx); err == nil {
				return nil
			}
		}
		logs, _ := c.engine.Logs(ctx, c.id)
		if !strings.Contains(logs, "could not bind") && !strings.Contains(logs, "Address already in use") {
			break
		}
		// The kernel may be slow to free the port: try again.
		_ = c.engine.Kill(ctx, c.id, "SIGKILL")
		time.Sleep(50 * time.Millisecond)
	}
	logs, _ := c.engine.Logs(ctx, c.id)
	return fmt.Errorf("pgenv: restart of container %.12s: %w\n%s", c.id, err, tail([]byte(logs), 2000))
}

// close removes the container (killing it: its data is thrown away).
func (c *container) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.engine.Remove(ctx, c.id)
	if c.closer != nil {
		c.closer()
	}
	if c.dataDir != "" && err == nil {
		if rerr := os.RemoveAll(c.dataDir); rerr != nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("pgenv: close: %w", err)
	}
	return nil
}

// sweepContainers removes the containers of runs on this host that were
// killed before they could remove their own (Ryuk, testcontainers' reaper,
// is not used). A container without a readable owner label, or whose owner
// runs, or ran on another host, is left alone.
func sweepContainers(ctx context.Context, engine ContainerEngine, log *slog.Logger) []string {
	list, err := engine.List(ctx, ownerLabel)
	if err != nil {
		log.Warn("pgenv: listing containers to sweep", "err", err)
		return nil
	}
	self := selfOwner()
	var removed []string
	for _, ci := range list {
		o, ok := parseOwner(ci.Labels[ownerLabel])
		if !ok || !o.deadHere(self) {
			continue
		}
		if err := engine.Remove(ctx, ci.ID); err != nil {
			log.Warn("pgenv: sweeping a dead run's container", "id", ci.ID, "err", err)
			continue
		}
		log.Info("pgenv: swept a dead run's container", "id", ci.ID[:min(12, len(ci.ID))], "owner", o.pid)
		removed = append(removed, ci.ID)
	}
	return removed
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgenv: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail is the last n bytes of b, for error messages.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
