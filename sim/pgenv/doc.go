// Package pgenv gives tests, soak runs and benchmarks a real Postgres server
// and cheap, isolated databases on it.
//
// Start resolves a server in this order (the first that applies wins), and
// logs once, at Info, which one it chose and why:
//
//  1. Options.DSN, else $WORKPROOF_DATABASE_URL, else the libpq PG* variables
//     when PGHOST, PGPORT, PGDATABASE or PGSERVICE is set (unless
//     Options.IgnorePGEnv): a server someone else runs ("dsn" kind). The
//     harness only ever drops databases it created; each carries its owner
//     (host, boot id, pid, start time) in a COMMENT, and Start drops those
//     of owners on this host that were killed before their Close.
//  2. A container engine that answers ("container" kind): Options.Engine,
//     else the built-in client of the Docker Engine API at $DOCKER_HOST or
//     /var/run/docker.sock. It starts Options.Image, else
//     $WORKPROOF_PG_IMAGE, else DefaultImage (postgres:15, pulled if the
//     engine lacks it; scripts/docker-postgres-image.sh builds a compatible
//     image without a registry), in the host's network namespace listening
//     on 127.0.0.1 only, on a free port, with the same fast settings as the
//     ephemeral cluster. The container carries an owner label, and Start
//     removes the containers of killed runs of this host (testcontainers'
//     Ryuk is not used). As root with the built-in engine, the data
//     directory is a host directory on /dev/shm (clones in ~20 ms instead
//     of ~250 ms in the overlay layer). Package pgcontainer, a module of
//     its own, is an Engine built on testcontainers-go.
//  3. A private ephemeral cluster from the PostgreSQL binaries on the
//     machine ("ephemeral" kind): initdb runs once per Postgres version into
//     a cache, each Server copies that data directory into a fresh temporary
//     directory (on /dev/shm when it exists) and starts postgres on a free
//     loopback port with fast settings that survive a Postgres crash but not
//     a machine crash (DefaultSettings). When run as root it drops to the
//     postgres user. Close stops and removes it; a killed process's
//     leftovers (directory and System V segment) are swept by the next
//     Start of any kind.
//  4. Otherwise an error matching ErrNoPostgres that names all three ways
//     and says why each failed here.
//
// Options.Use, else $WORKPROOF_POSTGRES (dsn, container or local), picks one
// way and overrides the order; a choice that cannot be had is an error, not
// a fallback. In the order, an engine that answers but cannot start a
// container falls back to the binaries, with a warning.
//
// Private servers (container, ephemeral) support Restart — an immediate
// shutdown (SIGQUIT to the postmaster) and a start on the same address and
// data — and StartPrivate, another server of the same kind for one caller;
// on a dsn server both fail with errors.ErrUnsupported.
//
// Databases: Server.Template migrates a template database once per name, and
// Server.CreateDatabase clones it with CREATE DATABASE … TEMPLATE, so each
// test or scenario run gets its own database in tens of milliseconds.
//
// Safety on a shared server: database names are "workproof_" + a name +
// a random suffix, every name is recorded before CREATE DATABASE runs, and
// Drop and Close refuse (ErrNotOwned) or skip anything not recorded. The
// sweep of killed runs' databases drops only those whose comment names, in
// the one format the harness writes, an owner on this host that no longer
// runs: never one without such a comment, of a live owner, or of another
// host.
//
// Interrupts: Close is idempotent and may run concurrently with itself, so a
// signal handler may call it while a deferred Close is pending; pgenvtest.Main
// installs such a handler. Without one, a killed process leaves its
// directory (the postmaster dies with it through Pdeathsig), its container,
// or its databases on a dsn server, for the next Start to sweep.
//
// Files: pgenv.go (Server, Template, Database, options, errors, the
// resolution), dsn.go and dbsweep.go (the dsn backend, owner comments and
// their sweep), engine.go (the ContainerEngine seam), container.go (the
// container backend), docker.go (the built-in Docker Engine API client),
// owner.go (who made a database or container), ephemeral.go (the cluster
// backend), binaries.go (finding initdb and postgres), cache.go (the initdb
// cache), sweep.go (leftovers of dead processes), proc_linux.go (process
// control), ephemeral_other.go (no ephemeral cluster off Linux). Package
// pgenvtest wraps all this for go test and holds Conformance, the test
// every backend passes.
package pgenv
