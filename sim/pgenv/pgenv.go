package pgenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors; test them with errors.Is.
var (
	// ErrNoPostgres: none of the ways to get a server worked — no DSN is
	// configured, no Docker engine started a container, and no PostgreSQL
	// server binaries were found — or the one chosen explicitly did not.
	ErrNoPostgres = errors.New("no PostgreSQL available: set WORKPROOF_DATABASE_URL to a server you run, or start a Docker engine (DOCKER_HOST; image from WORKPROOF_PG_IMAGE, default " + DefaultImage + "), or install the PostgreSQL server binaries (e.g. `apt-get install postgresql`)")
	// ErrMalformedDSN: the configured connection string does not parse.
	ErrMalformedDSN = errors.New("malformed Postgres connection string")
	// ErrUnreachable: the configured server did not accept a connection.
	ErrUnreachable = errors.New("postgres server unreachable")
	// ErrNotOwned: a database this harness did not create was about to be
	// dropped. The harness never drops other people's databases.
	ErrNotOwned = errors.New("database not created by this pgenv.Server")
	// ErrClosed: the Server was closed.
	ErrClosed = errors.New("pgenv: server closed")
)

// Options configures Start. Every zero value is usable.
type Options struct {
	// DSN of an existing server to use. Zero: $WORKPROOF_DATABASE_URL, then the
	// libpq PG* variables if PGHOST, PGPORT, PGDATABASE or
	// PGSERVICE is set; else an ephemeral cluster is started.
	DSN string
	// Use picks one way of getting a server and overrides the resolution
	// order: "dsn", "container" or "local" (the machine's binaries; also
	// "ephemeral"). A choice that cannot be had is an error, never a
	// fallback. Zero: "dsn" when DSN is set, else $WORKPROOF_POSTGRES, else
	// the resolution order of Start.
	Use string
	// Ephemeral is Use: "local", kept for callers that predate Use. Zero:
	// see Use.
	Ephemeral bool
	// IgnorePGEnv stops the libpq PG* variables from selecting a dsn server
	// ($WORKPROOF_DATABASE_URL still does). Zero: PGHOST, PGPORT,
	// PGDATABASE or PGSERVICE selects one. pgenvtest sets it, so that stray
	// PG* variables do not send tests to some other server.
	IgnorePGEnv bool
	// Image is the container backend's image. Zero: $WORKPROOF_PG_IMAGE,
	// else DefaultImage (pulled when the engine does not have it).
	Image string
	// Engine runs the container backend's containers. Zero: pgenv's
	// built-in client of the Docker Engine API at $DOCKER_HOST (unix
	// sockets only), else unix:///var/run/docker.sock. Package
	// sim/pgenv/pgcontainer (a module of its own) has one built on
	// testcontainers-go.
	Engine ContainerEngine
	// BinDir holds initdb and postgres. Zero: the directory of initdb on
	// $PATH, then the newest /usr/lib/postgresql/*/bin (and similar layouts).
	BinDir string
	// CacheDir keeps the initdb result so later starts only copy it. Zero:
	// os.UserCacheDir()/workproof (os.TempDir()/workproof-cache-UID without a
	// home directory).
	CacheDir string
	// RunDir is where the ephemeral cluster's base directory (data, socket,
	// log) is made. Zero: /dev/shm when it exists (clones are 2–3× faster on
	// tmpfs), else os.TempDir(). Unix socket paths are limited to 107 bytes,
	// so keep it short.
	RunDir string
	// Settings are extra server settings (postgres -c name=value) for a
	// private server (ephemeral cluster or container), applied over the
	// fast test defaults (see DefaultSettings: fsync off, max_connections
	// 400, …). Zero: the defaults alone. Ignored for a DSN server.
	Settings map[string]string
	// Logger receives progress and cleanup messages. Zero: discard.
	Logger *slog.Logger
}

// DefaultSettings returns the settings an ephemeral cluster runs with unless
// Options.Settings overrides them: fast and unsafe (a crash of the machine may
// lose data), with room for many connections, and self-contained.
//
// synchronous_commit stays on: with it off, a Postgres crash (Restart) loses
// commits the client already saw succeed (hundreds in five restarts in a
// test), which would show up as false invariant violations. With fsync off
// it costs nothing measurable (a write to the page cache per commit).
func DefaultSettings() map[string]string {
	return map[string]string{
		"fsync":              "off",
		"synchronous_commit": "on",
		"full_page_writes":   "off",
		"wal_level":          "minimal",
		"max_wal_senders":    "0",
		"max_connections":    "400",
		// A system that turns synchronous_commit off has its commits
		// acknowledged before they are written; the WAL writer writes them
		// within wal_writer_delay. Ten seconds make a Postgres restart lose
		// such a commit every time, not when the writer happens to lag: a
		// fault's outcome must not hang on a timer. Synchronous commits
		// (the harness's, and a correct system's) are written at once.
		"wal_writer_delay": "10000ms",
		// Dynamic shared memory as files in the data directory instead of
		// /dev/shm/PostgreSQL.*: a killed cluster leaks nothing outside the
		// directory that Close or the sweep removes.
		"dynamic_shared_memory_type": "mmap",
	}
}

// backend is one way of getting a server (resolution order in Start): dsn
// (dsn.go), container (container.go, through a ContainerEngine) and the
// ephemeral cluster (ephemeral.go).
type backend interface {
	kind() string
	// connString returns a connection string for database db ("" = the
	// maintenance database) reached at hostPort ("" = the server's own
	// address).
	connString(db, hostPort string) string
	hostPort() string
	// private reports whether the server exists only for this Server, so
	// Close may throw it away whole instead of dropping databases.
	private() bool
	settings() map[string]string
	// cloneOptions is appended to CREATE DATABASE … TEMPLATE.
	cloneOptions() string
	restart(ctx context.Context) error
	close() error
}

// Server is a Postgres server plus the databases this process made on it.
// Its methods are safe for concurrent use.
type Server struct {
	b   backend
	log *slog.Logger
	// startPrivate starts another server of the same private kind, for
	// StartPrivate; nil for a dsn server.
	startPrivate func(ctx context.Context) (backend, error)

	mu        sync.Mutex
	admin     *pgxpool.Pool
	version   string
	created   map[string]bool // name → still live; only these may be dropped
	templates map[string]*tplEntry
	closed    bool

	restartMu sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

type tplEntry struct {
	done chan struct{}
	t    *Template
	err  error
}

// Template is a migrated database that CreateDatabase clones.
type Template struct {
	// Name is the template database's name on the server.
	Name string
	// base is the caller's logical name, reused in clone names.
	base string
	s    *Server
}

// Database is a database on a Server. Only databases returned by
// CreateDatabase (or templates) of a Server are ever dropped by it.
type Database struct {
	// Name is the database's name on the server.
	Name string
	s    *Server
}

// EnvBackend names the way of getting a server, overriding the resolution
// order: dsn, container or local.
const EnvBackend = "WORKPROOF_POSTGRES"

// Start returns a running server, resolved in the order described in the
// package documentation, and logs (at Info) which one it chose and why.
// Close it when done.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := resolve(ctx, opts, log)
	if err != nil {
		return nil, err
	}
	if r.b.kind() != "ephemeral" {
		sweepLocal(opts, log)
	}
	s := newServer(r.b, log, r.private)
	if err := s.connectAdmin(ctx); err != nil {
		_ = r.b.close()
		return nil, err
	}
	if !r.b.private() {
		s.sweepDatabases(ctx)
	}
	log.Info("pgenv: using Postgres", "kind", r.b.kind(), "why", r.why, "addr", r.b.hostPort(), "version", s.version)
	return s, nil
}

func newServer(b backend, log *slog.Logger, startPrivate func(context.Context) (backend, error)) *Server {
	return &Server{
		b:            b,
		log:          log,
		startPrivate: startPrivate,
		created:      map[string]bool{},
		templates:    map[string]*tplEntry{},
	}
}

// resolved is the backend Start picked, why, and how to start another
// private one like it.
type resolved struct {
	b       backend
	why     string
	private func(context.Context) (backend, error)
}

// choice returns the explicit choice of backend and where it came from, or
// "" for the resolution order.
func choice(opts Options) (use, source string, err error) {
	switch {
	case opts.Ephemeral:
		use, source = "local", "Options.Ephemeral"
	case opts.Use != "":
		use, source = opts.Use, "Options.Use"
	case opts.DSN != "":
		use, source = "dsn", "Options.DSN"
	case os.Getenv(EnvBackend) != "":
		use, source = os.Getenv(EnvBackend), EnvBackend
	default:
		return "", "", nil
	}
	switch use {
	case "dsn", "container", "local":
	case "ephemeral":
		use = "local"
	default:
		return "", "", fmt.Errorf("pgenv: %s=%q: want dsn, container or local", source, use)
	}
	return use, source, nil
}

func resolve(ctx context.Context, opts Options, log *slog.Logger) (resolved, error) {
	use, source, err := choice(opts)
	if err != nil {
		return resolved{}, err
	}
	if use == "" || use == "dsn" {
		if dsn, from, ok := resolveDSN(opts); ok {
			b, err := newDSNBackend(dsn, from)
			return resolved{b: b, why: from}, err
		}
		if use == "dsn" {
			return resolved{}, fmt.Errorf("pgenv: %s=dsn asks for a server you run, but %s is not set: %w", source, EnvDSN, ErrNoPostgres)
		}
	}
	var containerErr error
	if use == "" || use == "container" {
		r, err := resolveContainer(ctx, opts, log)
		if err == nil {
			if use != "" {
				r.why = source + "=container; " + r.why
			}
			return r, nil
		}
		if use == "container" {
			return resolved{}, fmt.Errorf("pgenv: %s=container: %w: %w", source, err, ErrNoPostgres)
		}
		containerErr = err
	}
	local := func(ctx context.Context) (backend, error) { return startEphemeral(ctx, opts, log) }
	b, err := local(ctx)
	switch {
	case err == nil:
		why := "the PostgreSQL binaries on this machine"
		if use != "" {
			why = source + "=local"
		} else {
			why += "; no container: " + containerErr.Error()
		}
		return resolved{b: b, why: why, private: local}, nil
	case !errors.Is(err, errNoBinaries):
		return resolved{}, err
	case use == "local":
		return resolved{}, fmt.Errorf("pgenv: %s=local asks for the machine's binaries: %v: %w", source, err, ErrNoPostgres)
	default:
		return resolved{}, fmt.Errorf("pgenv: %w\n  %s: not set\n  container: %v\n  local binaries: %v", ErrNoPostgres, EnvDSN, containerErr, err)
	}
}

// resolveContainer starts the container backend if an engine answers.
func resolveContainer(ctx context.Context, opts Options, log *slog.Logger) (resolved, error) {
	// A mounted data directory needs an engine on this machine: the
	// built-in one speaks to a local socket only.
	engine, closer, mountData := opts.Engine, func() {}, false
	if engine == nil {
		d, err := newDockerEngine()
		if err != nil {
			return resolved{}, err
		}
		engine, closer, mountData = d, d.closeIdle, true
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := engine.Ping(pctx)
	cancel()
	if err != nil {
		closer()
		return resolved{}, err
	}
	start := func(ctx context.Context) (backend, error) {
		return startContainer(ctx, opts, engine, closer, mountData, log)
	}
	b, err := start(ctx)
	if err != nil {
		closer()
		log.Warn("pgenv: a container engine answered but its Postgres container did not start", "err", err)
		return resolved{}, err
	}
	why := fmt.Sprintf("a container engine answered (%v), image %s", engine, resolveImage(opts))
	return resolved{b: b, why: why, private: start}, nil
}

// StartPrivate starts another server of the same kind as s — a new
// ephemeral cluster (same binaries, cache, run directory, settings and
// logger) or a new container (same engine, image and settings) — for the
// caller alone, e.g. for a Postgres-restart fault that must not disturb
// other users of s. Restart works on it; Close it when done. For a dsn
// server, which the harness does not run, the error matches
// errors.ErrUnsupported.
func (s *Server) StartPrivate(ctx context.Context) (*Server, error) {
	if s.startPrivate == nil {
		return nil, fmt.Errorf("pgenv: StartPrivate needs a private server (ephemeral or container), this one is %q: %w", s.b.kind(), errors.ErrUnsupported)
	}
	if _, err := s.pool(); err != nil {
		return nil, err
	}
	b, err := s.startPrivate(ctx)
	if err != nil {
		return nil, err
	}
	p := newServer(b, s.log, s.startPrivate)
	if err := p.connectAdmin(ctx); err != nil {
		_ = b.close()
		return nil, err
	}
	s.log.Debug("pgenv: private server started", "kind", b.kind(), "addr", b.hostPort())
	return p, nil
}

func (s *Server) connectAdmin(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(s.b.connString("", ""))
	if err != nil {
		return fmt.Errorf("pgenv: %w: %w", ErrMalformedDSN, err)
	}
	cfg.MaxConns = 4
	cfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("pgenv: admin pool: %w", err)
	}
	pctx, cancel := withDefaultTimeout(ctx, 15*time.Second)
	defer cancel()
	var version string
	if err := pool.QueryRow(pctx, "SHOW server_version").Scan(&version); err != nil {
		pool.Close()
		return fmt.Errorf("pgenv: cannot reach Postgres at %s (%s): %w: %w", describe(cfg.ConnConfig), s.b.kind(), ErrUnreachable, err)
	}
	s.mu.Lock()
	old := s.admin
	s.admin, s.version = pool, version
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s as %q", c.Host, c.Port, c.Database, c.User)
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Kind is "dsn" for a server given by connection string, "container" for a
// container this Server started, "ephemeral" for a private cluster it
// started from the machine's binaries.
func (s *Server) Kind() string { return s.b.kind() }

// HostPort is the server's TCP address "host:port" (for proxies); for a
// private server (ephemeral or container) always "127.0.0.1:port". Empty for a DSN that connects
// through a unix socket.
func (s *Server) HostPort() string { return s.b.hostPort() }

// DSN is a connection string for the server's maintenance database (the
// DSN's own database; "postgres" on a private server, as superuser), for
// administrative work such as pg_terminate_backend.
func (s *Server) DSN() string { return s.b.connString("", "") }

// Version is the server's version as it reports it (SHOW server_version).
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Settings returns the server settings a private server (ephemeral or
// container) was started with (for reports of soak and benchmark runs); nil
// for a DSN server.
func (s *Server) Settings() map[string]string { return s.b.settings() }

func (s *Server) pool() (*pgxpool.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.admin, nil
}

// Template returns the template database called name, creating it and running
// migrate on it (nil: an empty database) the first time name is asked for on
// this Server. Later calls with the same name return the same Template and
// ignore migrate. Concurrent first calls wait for one migration (and share
// its error, also one from the first caller's ctx); a failed migration is not
// remembered, so a later call tries again. The template refuses connections
// once migrated: CREATE DATABASE … TEMPLATE fails while anyone is connected.
func (s *Server) Template(ctx context.Context, name string, migrate func(context.Context, *pgxpool.Pool) error) (*Template, error) {
	if name == "" {
		return nil, errors.New("pgenv: Template: empty name")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := s.templates[name]; ok {
		s.mu.Unlock()
		select {
		case <-e.done:
			return e.t, e.err
		case <-ctx.Done():
			return nil, fmt.Errorf("pgenv: waiting for template %q: %w", name, ctx.Err())
		}
	}
	e := &tplEntry{done: make(chan struct{})}
	s.templates[name] = e
	s.mu.Unlock()

	e.t, e.err = s.makeTemplate(ctx, name, migrate)
	if e.err != nil {
		s.mu.Lock()
		delete(s.templates, name)
		s.mu.Unlock()
	}
	close(e.done)
	return e.t, e.err
}

func (s *Server) makeTemplate(ctx context.Context, name string, migrate func(context.Context, *pgxpool.Pool) error) (*Template, error) {
	admin, err := s.pool()
	if err != nil {
		return nil, err
	}
	dbName, err := s.reserve("tpl_" + name)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	// template0 never has connections (template1 may, on a shared server)
	// and holds nothing a previous user added.
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(dbName)+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		s.unreserve(dbName)
		return nil, fmt.Errorf("pgenv: create template database for %q: %w", name, err)
	}
	markErr := s.markOwner(ctx, admin, dbName)
	fail := func(err error) (*Template, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := s.dropName(dctx, dbName); derr != nil {
			s.log.Warn("pgenv: dropping failed template", "db", dbName, "err", derr)
		}
		return nil, err
	}
	if markErr != nil {
		return fail(markErr)
	}
	if migrate != nil {
		pool, err := pgxpool.New(ctx, s.b.connString(dbName, ""))
		if err != nil {
			return fail(fmt.Errorf("pgenv: template %q: pool: %w", name, err))
		}
		err = migrate(ctx, pool)
		pool.Close()
		if err != nil {
			return fail(fmt.Errorf("pgenv: template %q: migrate: %w", name, err))
		}
	}
	// A connection to a template makes CREATE DATABASE … TEMPLATE fail;
	// nothing needs to connect to it any more.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(dbName)+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fail(fmt.Errorf("pgenv: template %q: %w", name, err))
	}
	s.log.Debug("pgenv: template ready", "name", name, "db", dbName, "took", time.Since(start))
	return &Template{Name: dbName, base: name, s: s}, nil
}

// CreateDatabase makes a fresh database named "workproof_<template>_<random>"
// as a copy of t (CREATE DATABASE … TEMPLATE). Drop it when done; Close drops
// (or throws away) every database the Server created.
func (s *Server) CreateDatabase(ctx context.Context, t *Template) (*Database, error) {
	if t == nil || t.s != s {
		return nil, errors.New("pgenv: CreateDatabase: template does not belong to this server")
	}
	admin, err := s.pool()
	if err != nil {
		return nil, err
	}
	name, err := s.reserve(t.base)
	if err != nil {
		return nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(t.Name)+s.b.cloneOptions()); err != nil {
		s.unreserve(name)
		return nil, fmt.Errorf("pgenv: create database from template %q: %w", t.base, err)
	}
	if err := s.markOwner(ctx, admin, name); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := s.dropName(dctx, name); derr != nil {
			s.log.Warn("pgenv: dropping an unmarked database", "db", name, "err", derr)
		}
		return nil, err
	}
	return &Database{Name: name, s: s}, nil
}

// reserve picks a fresh name and records it as ours before CREATE DATABASE
// runs, so that a CREATE whose outcome is unknown is still cleaned up.
func (s *Server) reserve(base string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pgenv: random name: %w", err)
	}
	suffix := "_" + hex.EncodeToString(b[:])
	const prefix = "workproof_"
	middle := sanitize(base)
	if max := 63 - len(prefix) - len(suffix); len(middle) > max {
		middle = middle[:max]
	}
	name := prefix + middle + suffix
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	s.created[name] = true
	return name, nil
}

func (s *Server) unreserve(name string) {
	s.mu.Lock()
	delete(s.created, name)
	s.mu.Unlock()
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// dropName drops a database this Server created; it refuses any other.
// Dropping twice is not an error.
func (s *Server) dropName(ctx context.Context, name string) error {
	s.mu.Lock()
	live, ours := s.created[name]
	closed, admin := s.closed, s.admin
	s.mu.Unlock()
	if !ours {
		return fmt.Errorf("pgenv: refusing to drop %q: %w", name, ErrNotOwned)
	}
	if !live || closed {
		return nil // already dropped, or Close took care of it
	}
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgenv: drop %q: %w", name, err)
	}
	s.mu.Lock()
	s.created[name] = false
	s.mu.Unlock()
	return nil
}

// Restart crashes the server with an immediate shutdown (every connection is
// cut, nothing is checkpointed) and starts it again on the same address and
// data, as a Postgres crash fault. Only a private server (ephemeral
// cluster or container) can do this; otherwise the error matches
// errors.ErrUnsupported.
func (s *Server) Restart(ctx context.Context) error {
	if !s.b.private() {
		return fmt.Errorf("pgenv: Restart needs a private server (ephemeral or container), this server is %q: %w", s.b.kind(), errors.ErrUnsupported)
	}
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	if _, err := s.pool(); err != nil {
		return err
	}
	if err := s.b.restart(ctx); err != nil {
		return err
	}
	// Pooled admin connections are dead now; a fresh pool avoids handing
	// one out.
	return s.connectAdmin(ctx)
}

// Close releases the server: an ephemeral cluster is stopped and its
// directory removed, a container is removed; on a DSN server every database this Server created is
// dropped, and nothing else. Close is idempotent and safe to call
// concurrently (a second caller waits for the first), e.g. from an interrupt
// handler and a deferred call at once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	s.mu.Lock()
	s.closed = true
	admin := s.admin
	var live []string
	for name, ok := range s.created {
		if ok {
			live = append(live, name)
		}
		s.created[name] = false
	}
	s.mu.Unlock()

	var errs []error
	if !s.b.private() && len(live) > 0 {
		// Clones before templates: a template cannot be dropped while being
		// copied. Sorted for a stable log.
		sort.Slice(live, func(i, j int) bool {
			ti, tj := strings.HasPrefix(live[i], "workproof_tpl_"), strings.HasPrefix(live[j], "workproof_tpl_")
			if ti != tj {
				return tj
			}
			return live[i] < live[j]
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for _, name := range live {
			if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("pgenv: close: drop %q: %w", name, err))
			}
		}
		cancel()
		s.log.Debug("pgenv: dropped databases", "count", len(live))
	}
	if s.b.private() {
		// Stop the server first so an admin query in flight fails at once
		// instead of holding up the pool's Close.
		if err := s.b.close(); err != nil {
			errs = append(errs, err)
		}
		admin.Close()
	} else {
		admin.Close()
		if err := s.b.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DSN is a connection string for this database at the server's own address.
// Empty for a Database not returned by a Server.
func (d *Database) DSN() string { return d.DSNVia("") }

// DSNVia is a connection string for this database reached through hostPort
// ("host:port", e.g. a fault-injecting proxy) instead of the server's own
// address; "" means the server's own address.
func (d *Database) DSNVia(hostPort string) string {
	if d == nil || d.s == nil {
		return ""
	}
	return d.s.b.connString(d.Name, hostPort)
}

// Drop drops the database, closing its connections (DROP … WITH (FORCE)).
// It refuses (ErrNotOwned) a database the Server did not create; dropping
// twice, or after the Server's Close, is not an error.
func (d *Database) Drop(ctx context.Context) error {
	if d == nil || d.s == nil {
		name := ""
		if d != nil {
			name = d.Name
		}
		return fmt.Errorf("pgenv: refusing to drop %q: %w", name, ErrNotOwned)
	}
	return d.s.dropName(ctx, d.Name)
}
