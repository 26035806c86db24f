// Package pgenv gives tests, soak runs and benchmarks a real Postgres server
// and cheap, isolated databases on it.
//
// Start resolves a server in this order (the first that applies wins):
//
//  0. Options.Ephemeral skips step 1.
//  1. Options.DSN, else $WORKPROOF_DATABASE_URL, else the libpq PG* variables
//     when PGHOST, PGPORT, PGDATABASE or PGSERVICE is set: a server someone
//     else runs ("dsn" kind). The harness only ever drops
//     databases it created itself, in this process.
//  2. (reserved) a Docker engine through testcontainers-go. It will live in
//     its own package so the core harness does not carry its ~90 modules; it
//     plugs in at the marked place in Start as another backend.
//  3. A private ephemeral cluster from the PostgreSQL binaries on the machine
//     ("ephemeral" kind): initdb runs once per Postgres version into a cache,
//     each Server copies that data directory into a fresh temporary directory
//     (on /dev/shm when it exists) and starts postgres on a free loopback port
//     with fast settings that survive a Postgres crash but not a machine crash
//     (DefaultSettings). When run as root it drops to the
//     postgres user. Close stops and removes it; a killed process's leftovers
//     are swept by the next Start.
//  4. Otherwise an error matching ErrNoPostgres that says how to get one.
//
// Databases: Server.Template migrates a template database once per name, and
// Server.CreateDatabase clones it with CREATE DATABASE … TEMPLATE, so each
// test or scenario run gets its own database in tens of milliseconds.
//
// Safety on a shared server: database names are "workproof_" + a name +
// a random suffix, every name is recorded before CREATE DATABASE runs, and
// Drop and Close refuse (ErrNotOwned) or skip anything not recorded.
//
// Interrupts: Close is idempotent and may run concurrently with itself, so a
// signal handler may call it while a deferred Close is pending; pgenvtest.Main
// installs such a handler. Without one, a killed process leaves its directory
// (the postmaster dies with it through Pdeathsig) for the next Start to sweep.
//
// Files: pgenv.go (Server, Template, Database, options, errors), dsn.go (the
// dsn backend), ephemeral.go (the cluster backend), binaries.go (finding
// initdb and postgres), cache.go (the initdb cache), sweep.go (leftovers of
// dead processes), proc_linux.go (process control), ephemeral_other.go (no
// ephemeral cluster off Linux). Package pgenvtest wraps all this for go test.
package pgenv
