//go:build linux

package pgenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// noEngine is a ContainerEngine that never answers.
type noEngine struct{}

var errNoEngineHere = errors.New("no engine here")

func (noEngine) Ping(context.Context) error                         { return errNoEngineHere }
func (noEngine) Run(context.Context, ContainerSpec) (string, error) { return "", errNoEngineHere }
func (noEngine) Running(context.Context, string) (bool, error)      { return false, errNoEngineHere }
func (noEngine) Logs(context.Context, string) (string, error)       { return "", errNoEngineHere }
func (noEngine) Kill(context.Context, string, string) error         { return errNoEngineHere }
func (noEngine) Start(context.Context, string) error                { return errNoEngineHere }
func (noEngine) Remove(context.Context, string) error               { return errNoEngineHere }
func (noEngine) List(context.Context, string) ([]ContainerInfo, error) {
	return nil, errNoEngineHere
}
func (noEngine) String() string { return "the test's absent engine" }

func TestChoice(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		env     string
		use     string
		wantErr bool
	}{
		{name: "order", use: ""},
		{name: "env", env: "container", use: "container"},
		{name: "env local", env: "local", use: "local"},
		{name: "env ephemeral alias", env: "ephemeral", use: "local"},
		{name: "Use beats env", opts: Options{Use: "dsn"}, env: "container", use: "dsn"},
		{name: "Ephemeral beats all", opts: Options{Ephemeral: true, Use: "container", DSN: "postgres://x"}, env: "dsn", use: "local"},
		{name: "DSN beats env", opts: Options{DSN: "postgres://x"}, env: "container", use: "dsn"},
		{name: "bad env", env: "docker", wantErr: true},
		{name: "bad Use", opts: Options{Use: "sqlite"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvBackend, tc.env)
			use, _, err := choice(tc.opts)
			if (err != nil) != tc.wantErr || use != tc.use {
				t.Errorf("choice = %q, %v; want %q (error %v)", use, err, tc.use, tc.wantErr)
			}
			if err != nil && tc.env != "" && !strings.Contains(err.Error(), EnvBackend) {
				t.Errorf("error %q does not name %s", err, EnvBackend)
			}
		})
	}
}

// With no server configured, no engine and no binaries, the error names all
// three ways to get Postgres and why each failed here.
func TestNoPostgresNamesAllWays(t *testing.T) {
	t.Setenv(EnvBackend, "")
	t.Setenv(EnvDSN, "")
	emptyBin := t.TempDir()
	cases := []struct {
		name string
		opts Options
		msg  []string
	}{
		{"order", Options{IgnorePGEnv: true, Engine: noEngine{}, BinDir: emptyBin},
			[]string{EnvDSN, "Docker engine", "DOCKER_HOST", EnvPGImage, "apt-get install postgresql", errNoEngineHere.Error(), emptyBin}},
		{"container chosen", Options{Use: "container", Engine: noEngine{}},
			[]string{"Options.Use=container", errNoEngineHere.Error(), EnvDSN, "apt-get install postgresql"}},
		{"dsn chosen", Options{Use: "dsn", IgnorePGEnv: true},
			[]string{"Options.Use=dsn", EnvDSN + " is not set"}},
		{"local chosen", Options{Use: "local", BinDir: emptyBin},
			[]string{"Options.Use=local", emptyBin, "apt-get install postgresql", EnvDSN}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(context.Background(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Start succeeded with %s", s.Kind())
			}
			t.Log(err)
			if !errors.Is(err, ErrNoPostgres) {
				t.Errorf("error %v does not match ErrNoPostgres", err)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// An engine that does not answer sends the order on to the binaries.
func TestNoEngineFallsBackToBinaries(t *testing.T) {
	needBinaries(t)
	t.Setenv(EnvBackend, "")
	t.Setenv(EnvDSN, "")
	s := start(t, Options{IgnorePGEnv: true, Engine: noEngine{}})
	if s.Kind() != "ephemeral" {
		t.Errorf("Kind = %q, want ephemeral", s.Kind())
	}
}

func TestDockerHostMustBeUnix(t *testing.T) {
	t.Setenv(EnvDockerHost, "tcp://127.0.0.1:2375")
	_, err := newDockerEngine()
	if err == nil || !strings.Contains(err.Error(), EnvDockerHost) || !strings.Contains(err.Error(), "pgcontainer") {
		t.Errorf("newDockerEngine with a tcp DOCKER_HOST: %v; want an error naming DOCKER_HOST and pgcontainer", err)
	}
	t.Setenv(EnvDockerHost, "unix:///nonexistent/docker.sock")
	d, err := newDockerEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer d.closeIdle()
	if err := d.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent/docker.sock") {
		t.Errorf("Ping of a missing socket: %v", err)
	}
}

func TestDemuxLogs(t *testing.T) {
	frame := func(stream byte, s string) []byte {
		return append([]byte{stream, 0, 0, 0, 0, 0, 0, byte(len(s))}, s...)
	}
	muxed := append(frame(1, "ready\n"), frame(2, "FATAL: x\n")...)
	if got := demuxLogs(muxed); got != "ready\nFATAL: x\n" {
		t.Errorf("demux = %q", got)
	}
	if got := demuxLogs([]byte("plain tty output")); got != "plain tty output" {
		t.Errorf("raw = %q", got)
	}
}

func TestOwner(t *testing.T) {
	self := selfOwner()
	if self.boot == unknownBoot || self.start == 0 {
		t.Fatalf("selfOwner = %+v: cannot identify this process", self)
	}
	back, ok := parseOwner(self.String())
	if !ok || back != self {
		t.Fatalf("parseOwner(%q) = %+v, %v", self, back, ok)
	}
	dead := deadPID(t)
	cases := []struct {
		name string
		o    owner
		dead bool
	}{
		{"self", self, false},
		{"dead pid", owner{self.host, self.boot, dead, 1}, true},
		{"reused pid", owner{self.host, self.boot, self.pid, self.start + 1}, true},
		{"other host", owner{"elsewhere", self.boot, dead, 1}, false},
		{"rebooted", owner{self.host, "another-boot", self.pid, self.start}, true},
		{"unknown boot", owner{self.host, unknownBoot, dead, 1}, false},
	}
	for _, tc := range cases {
		if got := tc.o.deadHere(self); got != tc.dead {
			t.Errorf("%s: deadHere = %v, want %v", tc.name, got, tc.dead)
		}
	}
	for _, bad := range []string{"", "workproof-owner v1", "workproof-owner v2 host=a boot=b pid=1 start=2",
		"workproof-owner v1 host=a boot=b pid=0 start=2", "workproof-owner v1 host=a boot=b pid=1 start=2 extra", "made by hand"} {
		if o, ok := parseOwner(bad); ok {
			t.Errorf("parseOwner(%q) = %+v, want not ours", bad, o)
		}
	}
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// A run on a dsn server is SIGKILLed: its template and clone stay, marked
// with its owner, and the next Start on that server drops them — and nothing
// it did not make, nor what a live or another host's run made.
func TestKilledRunDatabasesSwept(t *testing.T) {
	host := anyServer(t)
	dsn := host.DSN()
	f := runKilled(t, "dsn:"+dsn)
	tplName, dbName := f[0], f[1]
	for _, name := range []string{tplName, dbName} {
		if !exists(t, dsn, name) {
			t.Fatalf("%s: gone before the sweep", name)
		}
		if o, ok := parseOwner(comment(t, dsn, name)); !ok || o.host != selfOwner().host {
			t.Fatalf("%s has owner comment %q", name, comment(t, dsn, name))
		}
	}
	self := selfOwner()
	keep := map[string]string{
		"no comment":   "",
		"hand-made":    "my own database",
		"live owner":   self.String(),
		"other host":   owner{"elsewhere", self.boot, deadPID(t), 1}.String(),
		"other format": strings.Replace(owner{self.host, self.boot, deadPID(t), 1}.String(), "v1", "v0", 1),
	}
	var kept []string
	for what, c := range keep {
		name := fmt.Sprintf("workproof_keep_%d_%d", os.Getpid(), len(kept))
		kept = append(kept, name)
		exec1(t, dsn, "CREATE DATABASE "+ident(name))
		if c != "" {
			exec1(t, dsn, "COMMENT ON DATABASE "+ident(name)+" IS '"+c+"'")
		}
		t.Logf("%s: %s", name, what)
	}
	s := start(t, Options{DSN: dsn})
	for _, name := range []string{tplName, dbName} {
		if exists(t, dsn, name) {
			t.Errorf("the killed run's %s survived the next Start", name)
		}
	}
	for _, name := range kept {
		if !exists(t, dsn, name) {
			t.Errorf("the sweep dropped %s, which no dead run of this host made", name)
		}
	}
	// This run's own databases carry its owner.
	tpl := mustTemplate(t, s)
	db := mustDB(t, s)
	for _, name := range []string{tpl.Name, db.Name} {
		if o, ok := parseOwner(comment(t, dsn, name)); !ok || o != self {
			t.Errorf("%s: owner comment %q, want %q", name, comment(t, dsn, name), self)
		}
	}
}

func comment(t *testing.T, dsn, db string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var c string
	if err := conn.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`, db).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// A run with a container is SIGKILLed: its container stays (nothing like
// Pdeathsig reaches it, and Ryuk is not used) until the next container Start
// sweeps it; a labelled container of another host is left alone.
func TestKilledRunContainerSwept(t *testing.T) {
	d := needEngine(t)
	ctx := context.Background()
	f := runKilled(t, "container")
	id, dataDir := f[0], strings.TrimSuffix(f[1], "/")
	if running, err := d.Running(ctx, id); err != nil || !running {
		t.Fatalf("the killed run's container %.12s: running %v, %v; want it still running before the sweep", id, running, err)
	}
	self := selfOwner()
	foreign, err := d.Run(ctx, ContainerSpec{
		Name:   "workproof-pg-test-foreign-" + strconv.Itoa(os.Getpid()),
		Image:  resolveImage(Options{}),
		Cmd:    []string{"true"}, // exits at once; List sees stopped ones too
		Labels: map[string]string{ownerLabel: owner{"elsewhere", self.boot, deadPID(t), 1}.String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Remove(context.Background(), foreign) })
	start(t, Options{Use: "container"})
	ids := map[string]bool{}
	list, err := d.List(ctx, ownerLabel)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		ids[c.ID] = true
	}
	if ids[id] {
		t.Errorf("the killed run's container %.12s survived the next Start", id)
	}
	if !ids[foreign] {
		t.Errorf("the sweep removed %.12s, another host's container", foreign)
	}
	if dataDir != "" {
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the killed run's data directory %s survived the next Start: %v", dataDir, err)
		}
	}
}
