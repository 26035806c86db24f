//go:build linux

package pgenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a run that starts a server, says
// what it made on one line of stdout, and waits to be SIGKILLed: "local:DIR"
// starts a cluster in run root DIR, "dsn:DSN" makes a template and a clone on
// the server at DSN, "container" starts a container.
const helperEnv = "PGENV_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helperMain(mode)
		return
	}
	goleak.VerifyTestMain(m)
}

func helperMain(mode string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	kind, arg, _ := strings.Cut(mode, ":")
	switch kind {
	case "local":
		s, err := Start(ctx, Options{Ephemeral: true, RunDir: arg})
		if err != nil {
			fail(err)
		}
		c := s.b.(*cluster)
		fmt.Println(c.base, c.pm.pid)
	case "dsn":
		s, err := Start(ctx, Options{DSN: arg})
		if err != nil {
			fail(err)
		}
		tpl, err := s.Template(ctx, "killed", migrateKV)
		if err != nil {
			fail(err)
		}
		db, err := s.CreateDatabase(ctx, tpl)
		if err != nil {
			fail(err)
		}
		fmt.Println(tpl.Name, db.Name)
	case "container":
		s, err := Start(ctx, Options{Use: "container"})
		if err != nil {
			fail(err)
		}
		c := s.b.(*container)
		fmt.Println(c.id, c.dataDir+"/") // "/" marks an empty dataDir
	default:
		fail(fmt.Errorf("unknown helper mode %q", mode))
	}
	select {} // until killed
}

// runKilled runs the test binary as a helper in mode, reads its line and
// SIGKILLs it.
func runKilled(t *testing.T, mode string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	f := strings.Fields(line)
	if err != nil || len(f) == 0 || f[0] == "error" {
		t.Fatalf("helper %s said %q (%v)", mode, line, err)
	}
	return f
}

// needBinaries skips a test of the ephemeral cluster itself where the
// machine has no PostgreSQL binaries (a Docker-only CI runner), unless
// $WORKPROOF_POSTGRES=local asks for them.
func needBinaries(t testing.TB) {
	t.Helper()
	if _, err := findBinaries(""); err != nil && os.Getenv(EnvBackend) != "local" {
		t.Skipf("tests the ephemeral cluster, which needs the machine's PostgreSQL binaries: %v", err)
	}
}

// needEngine returns the built-in engine, or skips when no Docker engine
// answers, unless $WORKPROOF_POSTGRES=container asks for one.
func needEngine(t testing.TB) *dockerEngine {
	t.Helper()
	d, err := newDockerEngine()
	if err == nil {
		err = d.Ping(context.Background())
	}
	if err != nil {
		if os.Getenv(EnvBackend) == "container" {
			t.Fatal(err)
		}
		t.Skipf("needs a Docker engine (start one or set DOCKER_HOST): %v", err)
	}
	t.Cleanup(d.closeIdle)
	return d
}

// anyServer is a private server of whichever kind the machine offers.
func anyServer(t testing.TB) *Server {
	t.Helper()
	s, err := Start(context.Background(), Options{IgnorePGEnv: true})
	if errors.Is(err, ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func migrateKV(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL); INSERT INTO kv VALUES ('seed', 'template')`)
	return err
}

func start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// exists asks the server through a connection of its own, so the answer does
// not depend on the Server under test.
func exists(t *testing.T, adminDSN, db string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func exec1(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestTemplateMadeOnce(t *testing.T) {
	s := anyServer(t)
	ctx := context.Background()
	var runs atomic.Int32
	migrate := func(ctx context.Context, p *pgxpool.Pool) error {
		runs.Add(1)
		return migrateKV(ctx, p)
	}
	const n = 6
	tpls := make([]*Template, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { tpls[i], errs[i] = s.Template(ctx, "once", migrate) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || tpls[i] != tpls[0] {
			t.Fatalf("call %d: %p, %v; want %p", i, tpls[i], errs[i], tpls[0])
		}
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("migrate ran %d times, want 1", got)
	}
	// Clones of one template may be made concurrently.
	dbs := make([]*Database, n)
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = s.CreateDatabase(ctx, tpls[0]) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("clone %d: %v", i, errs[i])
		}
	}
}

func TestTemplateFailureNotRemembered(t *testing.T) {
	s := anyServer(t)
	ctx := context.Background()
	boom := errors.New("boom")
	if _, err := s.Template(ctx, "retry", func(context.Context, *pgxpool.Pool) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing migrate: %v, want %v", err, boom)
	}
	var left int
	if err := s.admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE 'workproof_tpl_retry_%'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("failed template left %d databases (%v)", left, err)
	}
	tpl, err := s.Template(ctx, "retry", migrateKV)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	other := start(t, Options{DSN: s.DSN()})
	if _, err := other.CreateDatabase(ctx, tpl); err == nil {
		t.Error("CreateDatabase with another Server's template succeeded")
	}
}

// The cluster's Restart is a new postmaster (Conformance checks the rest).
func TestRestart(t *testing.T) {
	needBinaries(t)
	s := start(t, Options{Ephemeral: true})
	ctx := context.Background()
	db := mustDB(t, s)
	before := s.HostPort()
	conn, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Acknowledged commits must survive the crash (synchronous_commit on).
	for i := range 200 {
		if _, err := conn.Exec(ctx, `INSERT INTO kv VALUES ($1, 'x')`, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	oldPID := s.b.(*cluster).pm.pid
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.HostPort() != before {
		t.Errorf("HostPort changed from %s to %s", before, s.HostPort())
	}
	if s.b.(*cluster).pm.pid == oldPID {
		t.Error("postmaster pid unchanged: no restart happened")
	}
	if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("a connection from before the restart still works")
	}
	conn2, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil || n != 201 {
		t.Errorf("after restart: %d rows (%v), want 201", n, err)
	}
	// The admin side works after a restart too.
	if _, err := s.CreateDatabase(ctx, mustTemplate(t, s)); err != nil {
		t.Errorf("CreateDatabase after restart: %v", err)
	}
}

func mustTemplate(t *testing.T, s *Server) *Template {
	t.Helper()
	tpl, err := s.Template(context.Background(), "kv", migrateKV)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func mustDB(t *testing.T, s *Server) *Database {
	t.Helper()
	db, err := s.CreateDatabase(context.Background(), mustTemplate(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestCloseStopsAndRemoves(t *testing.T) {
	needBinaries(t)
	s, err := Start(context.Background(), Options{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	c := s.b.(*cluster)
	pid, base := c.pm.pid, c.base
	if !processAlive(pid, 0) {
		t.Fatal("postmaster not running after Start")
	}
	if _, err := os.Stat(filepath.Join(base, "data", "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
	mustDB(t, s)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs { // concurrent, as an interrupt handler and a defer may
		wg.Go(func() { errs[i] = s.Close() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base dir %s after Close: %v", base, err)
	}
	if processAlive(pid, 0) {
		t.Errorf("postmaster %d alive after Close", pid)
	}
}

// Pdeathsig fires when the forking thread exits. A goroutine that locks its
// thread and ends without unlocking makes Go retire the thread: the server
// must survive that.
func TestSurvivesStartingThreadExit(t *testing.T) {
	needBinaries(t)
	var s *Server
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with us
		s, err = Start(context.Background(), Options{Ephemeral: true})
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Let the kernel deliver a parent-death signal if one is coming.
	time.Sleep(200 * time.Millisecond)
	if _, err := s.CreateDatabase(context.Background(), mustTemplate(t, s)); err != nil {
		t.Fatalf("server died with the thread that started it: %v", err)
	}
}

// shortRunDir is a run root for one test, traversable by the postgres user.
func shortRunDir(t *testing.T) string {
	t.Helper()
	root, err := runRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(root, "wpgtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// A SIGKILLed harness: Pdeathsig takes the postmaster down, the directory
// and the postmaster's System V segment stay, and the next Start sweeps both
// — also a Start that picks another backend (here a dsn server).
func TestKilledOwnerIsSwept(t *testing.T) {
	needBinaries(t)
	for _, next := range []string{"local", "dsn"} {
		t.Run("next-"+next, func(t *testing.T) {
			runDir := shortRunDir(t)
			var other *Server
			if next == "dsn" {
				other = start(t, Options{Ephemeral: true, RunDir: shortRunDir(t)})
			}
			f := runKilled(t, "local:"+runDir)
			base := f[0]
			pmPID, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); processAlive(pmPID, 0); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("postmaster %d outlived its killed owner", pmPID)
				}
			}
			if _, err := os.Stat(base); err != nil {
				t.Fatalf("leftover %s: %v (want it present before the sweep)", base, err)
			}
			shmid := leftoverShmid(t, filepath.Join(base, "data"))
			if !sysVShmExists(t, shmid) {
				t.Fatalf("no leaked System V segment %s to test the sweep with", shmid)
			}
			// A backend that outlived its postmaster runs in the data
			// directory, in a session of its own: the sweep must end it.
			orphan := exec.Command("sleep", "60")
			orphan.Dir = filepath.Join(base, "data")
			orphan.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := orphan.Start(); err != nil {
				t.Fatal(err)
			}
			orphaned := make(chan struct{})
			go func() { _ = orphan.Wait(); close(orphaned) }()
			t.Cleanup(func() {
				_ = orphan.Process.Kill()
				<-orphaned
			})
			var s *Server
			if next == "dsn" {
				s = start(t, Options{DSN: other.DSN(), RunDir: runDir})
			} else {
				s = start(t, Options{Ephemeral: true, RunDir: runDir})
			}
			if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Start (%s) did not sweep %s: %v", s.Kind(), base, err)
			}
			if sysVShmExists(t, shmid) {
				t.Errorf("System V segment %s of the killed cluster survived the sweep", shmid)
			}
			select {
			case <-orphaned:
			case <-time.After(10 * time.Second):
				t.Errorf("a process in the killed cluster's data directory survived the sweep")
			}
			if c, ok := s.b.(*cluster); ok {
				if _, err := os.Stat(c.base); err != nil {
					t.Errorf("sweep removed the live cluster: %v", err)
				}
			}
		})
	}
}

func TestSweep(t *testing.T) {
	root := shortRunDir(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	selfStart, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * ownerlessGrace)
	cases := []struct {
		name   string
		owner  string // "" = no owner file
		mtime  time.Time
		notDir bool
		swept  bool
	}{
		{name: "dead owner", owner: fmt.Sprintf("%d 0", dead.Process.Pid), swept: true},
		{name: "live owner", owner: fmt.Sprintf("%d %d", os.Getpid(), selfStart), swept: false},
		{name: "reused pid", owner: fmt.Sprintf("%d %d", os.Getpid(), selfStart+1), swept: true},
		{name: "ownerless new", swept: false},
		{name: "ownerless old", mtime: old, swept: true},
		{name: "garbage owner old", owner: "garbage", mtime: old, swept: true},
		{name: "garbage owner new", owner: "garbage", swept: false},
		{name: "not a dir", notDir: true, swept: false},
	}
	paths := map[string]string{}
	for i, tc := range cases {
		p := filepath.Join(root, fmt.Sprintf("%s%d", dirPrefix, i))
		paths[tc.name] = p
		if tc.notDir {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Join(p, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if tc.owner != "" {
			if err := os.WriteFile(filepath.Join(p, ownerFile), []byte(tc.owner+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !tc.mtime.IsZero() {
			if err := os.Chtimes(p, tc.mtime, tc.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	removed := sweep([]string{root}, discard())
	for _, tc := range cases {
		_, err := os.Lstat(paths[tc.name])
		gone := errors.Is(err, os.ErrNotExist)
		if gone != tc.swept {
			t.Errorf("%s: swept = %v, want %v (removed %v)", tc.name, gone, tc.swept, removed)
		}
	}
}

func TestStartErrors(t *testing.T) {
	emptyBin := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cases := []struct {
		name string
		opts Options
		want error
		msg  []string
	}{
		{"malformed url", Options{DSN: "postgres://u:secret@127.0.0.1:notaport/db"}, ErrMalformedDSN, []string{"Options.DSN"}},
		{"malformed keyword", Options{DSN: "host=127.0.0.1 port='unterminated"}, ErrMalformedDSN, nil},
		{"unknown sslmode", Options{DSN: "postgres://127.0.0.1/db?sslmode=sometimes"}, ErrMalformedDSN, nil},
		{"unreachable", Options{DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", closedPort)}, ErrUnreachable, []string{"127.0.0.1", strconv.Itoa(closedPort)}},
		{"no binaries", Options{Ephemeral: true, BinDir: emptyBin}, ErrNoPostgres, []string{"apt-get install postgresql", "WORKPROOF_DATABASE_URL", emptyBin}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(context.Background(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v does not match %v", err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestDSNConnString(t *testing.T) {
	cases := []struct {
		name, dsn, db, via   string
		host, database, user string
		port                 uint16
		password             string
	}{
		{"url", "postgres://bob:pw@db.example:5433/app?sslmode=disable", "", "", "db.example", "app", "bob", 5433, "pw"},
		{"url db", "postgres://bob:pw@db.example:5433/app?sslmode=disable", "workproof_x", "", "db.example", "workproof_x", "bob", 5433, "pw"},
		{"url via", "postgresql://bob:pw@db.example/app?sslmode=disable", "workproof_x", "127.0.0.1:7000", "127.0.0.1", "workproof_x", "bob", 7000, "pw"},
		{"keyword", "host=db.example port=5433 user=bob password='p w' dbname=app sslmode=disable", "", "", "db.example", "app", "bob", 5433, "p w"},
		{"keyword db via", "host=db.example user=bob password='p w' dbname=app sslmode=disable", "it's", "127.0.0.1:7000", "127.0.0.1", "it's", "bob", 7000, "p w"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := newDSNBackend(tc.dsn, "test")
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := pgconn.ParseConfig(b.connString(tc.db, tc.via))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host || cfg.Port != tc.port || cfg.Database != tc.database || cfg.User != tc.user || cfg.Password != tc.password {
				t.Errorf("got host=%s port=%d db=%s user=%s password=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password)
			}
		})
	}
}

func TestVersionOrder(t *testing.T) {
	paths := []string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/17/bin"}
	for i := range paths {
		for j := range paths {
			if got, want := versionLess(paths[i], paths[j]), i < j; got != want {
				t.Errorf("versionLess(%s, %s) = %v, want %v", paths[i], paths[j], got, want)
			}
		}
	}
}

// Concurrent first starts share one initdb result and leave no staging
// directories behind.
func TestCacheConcurrentInit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs initdb (~1 s)")
	}
	ctx := context.Background()
	bins, err := findBinaries("")
	if err != nil {
		t.Skip(err)
	}
	run, err := lookupRunAs()
	if err != nil {
		t.Fatal(err)
	}
	cacheDir, runDir := t.TempDir(), shortRunDir(t)
	dirs := make([]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = ensureCache(ctx, bins, run, cacheDir, runDir, discard()) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] || !cacheReady(dirs[i]) {
			t.Fatalf("ensureCache %d: %q, %v", i, dirs[i], errs[i])
		}
	}
	entries, _ := os.ReadDir(cacheDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 { // the data directory and its lock file
		t.Errorf("cache dir holds %v, want one data directory and its lock", names)
	}
	if left, _ := filepath.Glob(filepath.Join(runDir, dirPrefix+"*")); len(left) != 0 {
		t.Errorf("initdb scratch left behind: %v", left)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func leftoverShmid(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 || len(strings.Fields(lines[6])) != 2 {
		t.Fatalf("postmaster.pid: %q", b)
	}
	return strings.Fields(lines[6])[1]
}

func sysVShmExists(t *testing.T, shmid string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] == shmid {
			return true
		}
	}
	return false
}

// Settings extend the defaults, but cannot move the server off loopback.
func TestSettings(t *testing.T) {
	needBinaries(t)
	s := start(t, Options{Ephemeral: true, Settings: map[string]string{"work_mem": "7MB", "listen_addresses": "*", "fsync": "on"}})
	ctx := context.Background()
	for _, tc := range []struct{ name, want string }{
		{"work_mem", "7MB"},
		{"listen_addresses", "127.0.0.1"},
		{"fsync", "on"},
		{"full_page_writes", "off"},
		{"synchronous_commit", "on"},
		{"max_connections", "400"},
		{"dynamic_shared_memory_type", "mmap"},
	} {
		var got string
		if err := s.admin.QueryRow(ctx, "SHOW "+tc.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := s.Settings()["work_mem"]; got != "7MB" {
		t.Errorf("Settings()[work_mem] = %q", got)
	}
}
