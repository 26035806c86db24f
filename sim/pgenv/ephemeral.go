//go:build linux

package pgenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// stopBound is how long a postmaster gets to shut down before it and its
// backends are killed.
const stopBound = 10 * time.Second

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the NUL).
const maxSocketPath = 107

// minShmFree is the free space /dev/shm needs to be used by default.
const minShmFree = 1 << 30

// tmpfsMagic is statfs's f_type for tmpfs (linux/magic.h).
const tmpfsMagic = 0x01021994

// cluster is a private Postgres server: a copy of the cached initdb result in
// a fresh directory, served by a postmaster this process started.
type cluster struct {
	log   *slog.Logger
	bins  binaries
	run   runAs
	base  string // owner file, socket, postgres.log, data/
	data  string
	port  int
	opts  map[string]string // postgres -c settings
	tmpfs bool              // base is on tmpfs: see cloneOptions
	major int               // PostgreSQL major version

	mu     sync.Mutex
	pm     *child
	closed bool
}

func startEphemeral(ctx context.Context, opts Options, log *slog.Logger) (backend, error) {
	start := time.Now()
	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	run, err := lookupRunAs()
	if err != nil {
		return nil, err
	}
	root, err := runRoot(opts.RunDir)
	if err != nil {
		return nil, err
	}
	sweep(sweepRoots(root), log)
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		cacheDir = defaultCacheDir()
	}
	cached, err := ensureCache(ctx, bins, run, cacheDir, root, log)
	if err != nil {
		return nil, err
	}

	base, err := makeOwnedDir(root, dirPrefix, run)
	if err != nil {
		return nil, err
	}
	c := &cluster{
		log:  log,
		bins: bins,
		run:  run,
		base: base,
		data: filepath.Join(base, "data"),
		opts: DefaultSettings(),
	}
	maps.Copy(c.opts, opts.Settings)
	for _, k := range []string{"listen_addresses", "port", "unix_socket_directories"} {
		delete(c.opts, k) // set by startPostmaster, always
	}
	var fs syscall.Statfs_t
	c.tmpfs = syscall.Statfs(base, &fs) == nil && fs.Type == tmpfsMagic
	if err := copyTree(cached, c.data, run); err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("pgenv: copying the cached cluster: %w", err)
	}
	if c.major, err = majorVersion(c.data); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	// A free port can be taken between our probe and postgres binding it:
	// try another.
	for attempt := 0; ; attempt++ {
		c.port, err = freePort()
		if err == nil {
			err = c.startPostmaster(ctx)
		}
		if err == nil || !errors.Is(err, errPortInUse) || attempt == 4 {
			break
		}
	}
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	log.Debug("pgenv: ephemeral cluster started", "dir", base, "port", c.port, "took", time.Since(start))
	return c, nil
}

// runRoot picks where cluster directories go: dir if set, else /dev/shm when
// it is writable and has 1 GB free, else os.TempDir(). On tmpfs a template
// clone takes ~20 ms against 60–300 ms on disk, and a start ~0.2 s against
// 0.3–2 s (contended disk).
func runRoot(dir string) (string, error) {
	candidates := []string{dir}
	if dir == "" {
		candidates = []string{"/dev/shm", os.TempDir(), "/tmp"}
	}
	for _, root := range candidates {
		fi, err := os.Stat(root)
		if err != nil || !fi.IsDir() || syscall.Access(root, 2 /* W_OK */) != nil {
			continue
		}
		if len(root)+len("/"+dirPrefix+"0123456789/.s.PGSQL.65535") > maxSocketPath {
			continue
		}
		// Docker gives containers a 64 MB /dev/shm: a cluster (28 MB) and a
		// few clones would fill it.
		var fs syscall.Statfs_t
		if dir == "" && root == "/dev/shm" && (syscall.Statfs(root, &fs) != nil || uint64(fs.Bavail)*uint64(fs.Bsize) < minShmFree) {
			continue
		}
		return root, nil
	}
	if dir != "" {
		return "", fmt.Errorf("pgenv: Options.RunDir %q must be a writable directory with a path short enough for a unix socket (%d bytes)", dir, maxSocketPath)
	}
	return "", fmt.Errorf("pgenv: no writable directory for the cluster among %v", candidates)
}

func sweepRoots(root string) []string {
	roots := []string{root}
	for _, r := range []string{"/dev/shm", os.TempDir()} {
		if !slices.Contains(roots, r) {
			roots = append(roots, r)
		}
	}
	return roots
}

// startPostmaster starts postgres on c.port and waits until it accepts
// connections. Callers hold c.mu or own c exclusively.
func (c *cluster) startPostmaster(ctx context.Context) error {
	args := []string{"-D", c.data}
	for _, k := range slices.Sorted(maps.Keys(c.opts)) {
		args = append(args, "-c", k+"="+c.opts[k])
	}
	// Last, so that no Settings entry moves the server off loopback or off
	// its port and socket directory.
	args = append(args, "-p", strconv.Itoa(c.port), "-k", c.base, "-c", "listen_addresses=127.0.0.1")
	logPath := filepath.Join(c.base, "postgres.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgenv: postgres log: %w", err)
	}
	fi, _ := lf.Stat()
	logStart := fi.Size()
	cmd := exec.Command(c.bins.postgres, args...)
	cmd.Dir = c.base
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = c.run.sysProcAttr()
	pm, err := spawn(cmd)
	lf.Close()
	if err != nil {
		return fmt.Errorf("pgenv: starting %s: %w", c.bins.postgres, err)
	}
	c.pm = pm
	if err := c.waitReady(ctx, pm); err != nil {
		exited := pm.exited()
		c.stop(syscall.SIGQUIT)
		log := readFrom(logPath, logStart)
		if exited && (bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("Address already in use"))) {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("pgenv: postgres on port %d did not become ready: %w\n%s", c.port, err, tail(log, 2000))
	}
	return nil
}

func readFrom(path string, offset int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return nil
	}
	return b[offset:]
}

// waitReady polls a connection every 10 ms until the server accepts one.
// It connects through the cluster's own unix socket, never its TCP port:
// another server (another run's, restarting on the port this one probed
// free) may answer on the port while this postmaster is failing to bind
// it, and the cluster would be taken for ready and then vanish. Postgres
// creates its TCP sockets before its unix socket and exits if it can bind
// none, so an answer on the socket means the port is this server's too.
func (c *cluster) waitReady(ctx context.Context, pm *child) error {
	ctx, cancel := withDefaultTimeout(ctx, time.Minute)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2", c.base, c.port)
	for {
		if pm.exited() {
			return fmt.Errorf("postgres exited: %v", pm.waitErr)
		}
		conn, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			return conn.Close(ctx)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-pm.done:
			t.Stop()
		case <-t.C:
		}
	}
}

// stop signals the postmaster (SIGINT: fast shutdown; SIGQUIT: immediate)
// and waits for it, killing its whole process group after stopBound.
func (c *cluster) stop(sig syscall.Signal) {
	pm := c.pm
	if pm == nil {
		return
	}
	if !pm.exited() {
		_ = pm.cmd.Process.Signal(sig)
		t := time.NewTimer(stopBound)
		select {
		case <-pm.done:
			t.Stop()
		case <-t.C:
			c.log.Warn("pgenv: postgres did not stop in time, killing it", "pid", pm.pid, "signal", sig)
			pm.killGroup()
			<-pm.done
		}
	}
}

func (c *cluster) kind() string     { return "ephemeral" }
func (c *cluster) private() bool    { return true }
func (c *cluster) hostPort() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

func (c *cluster) settings() map[string]string { return maps.Clone(c.opts) }

// cloneOptions picks the CREATE DATABASE strategy (PostgreSQL 15+). On tmpfs
// FILE_COPY (copy the files, checkpoint) clones a small template in ~20 ms
// against ~35 ms for the default WAL_LOG; on disk WAL_LOG is faster
// (~160 ms against ~285 ms).
func (c *cluster) cloneOptions() string {
	if c.tmpfs && c.major >= 15 {
		return " STRATEGY file_copy"
	}
	return ""
}

func (c *cluster) connString(db, hostPort string) string {
	if db == "" {
		db = "postgres"
	}
	if hostPort == "" {
		hostPort = c.hostPort()
	}
	return "postgres://postgres@" + hostPort + "/" + db + "?sslmode=disable"
}

func (c *cluster) restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.stop(syscall.SIGQUIT)
	// Same port, so proxies and DSNs handed out stay valid; the old socket
	// is gone, but retry briefly in case the kernel is slow to free it.
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = c.startPostmaster(ctx); !errors.Is(err, errPortInUse) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pgenv: restart: %w", err)
	}
	return nil
}

// close stops the server (fast shutdown) and removes its directory.
func (c *cluster) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.stop(syscall.SIGINT)
	if err := os.RemoveAll(c.base); err != nil {
		return fmt.Errorf("pgenv: removing %s: %w", c.base, err)
	}
	return nil
}
