package netfault

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgUpstream returns the config of the Postgres in WORKPROOF_DATABASE_URL and
// its "host:port", or skips. (The lead will switch this to pgenvtest.)
func pgUpstream(t *testing.T) (*pgx.ConnConfig, string) {
	t.Helper()
	dsn := os.Getenv("WORKPROOF_DATABASE_URL")
	if dsn == "" {
		t.Skip("WORKPROOF_DATABASE_URL not set")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skip("WORKPROOF_DATABASE_URL uses a unix socket; a Link needs TCP")
	}
	return cfg, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// pgConnect connects to cfg's database through addr.
func pgConnect(t *testing.T, cfg *pgx.ConnConfig, addr string) (*pgx.Conn, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	c := cfg.Copy()
	c.Host, c.Port = host, uint16(p)
	for _, fb := range c.Fallbacks {
		fb.Host, fb.Port = host, uint16(p)
	}
	c.ConnectTimeout = stuck
	ctx, cancel := context.WithTimeout(context.Background(), stuck)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, c)
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conn.Close(ctx)
		})
	}
	return conn, err
}

func pgLink(t *testing.T) (*pgx.ConnConfig, *Link, *pgx.Conn) {
	t.Helper()
	cfg, upstream := pgUpstream(t)
	l := newLink(t, newNetwork(t), "w1.1/postgres", upstream)
	conn, err := pgConnect(t, cfg, l.Addr())
	if err != nil {
		t.Fatalf("connect through a healthy link: %v", err)
	}
	if err := selectOne(conn, stuck); err != nil {
		t.Fatalf("query through a healthy link: %v", err)
	}
	return cfg, l, conn
}

func selectOne(conn *pgx.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// failsPromptly asserts err is a connection failure, not the ctx deadline:
// the fault was noticed, not waited out.
func failsPromptly(t *testing.T, what string, err error, conn *pgx.Conn) {
	t.Helper()
	t.Logf("%s: %v (%T; SafeToRetry=%v, Timeout=%v)", what, err, err, pgconn.SafeToRetry(err), pgconn.Timeout(err))
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		t.Errorf("%s: failed by the ctx deadline, not by the fault: %v", what, err)
	}
	if conn != nil && !conn.IsClosed() {
		t.Errorf("%s: pgx still considers the connection open", what)
	}
}

func TestPostgresLatency(t *testing.T) {
	_, l, conn := pgLink(t)
	const delay = 100 * time.Millisecond
	apply(t, l, Latency{Delay: delay})
	start := time.Now()
	if err := selectOne(conn, stuck); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("query took %v, want ≥ %v", took, delay)
	}
}

func TestPostgresBlackholeFailsOnlyAtTheDeadline(t *testing.T) {
	for _, dir := range dirs {
		t.Run(dir.String(), func(t *testing.T) {
			cfg, l, conn := pgLink(t)
			apply(t, l, Blackhole{Dir: dir})
			const deadline = 300 * time.Millisecond
			start := time.Now()
			err := selectOne(conn, deadline)
			took := time.Since(start)
			t.Logf("query: %v (SafeToRetry=%v, Timeout=%v) after %v", err, pgconn.SafeToRetry(err), pgconn.Timeout(err), took)
			if !errors.Is(err, context.DeadlineExceeded) || !pgconn.Timeout(err) {
				t.Errorf("query error = %v, want the ctx deadline", err)
			}
			if took < deadline {
				t.Errorf("failed after %v, before the deadline %v", took, deadline)
			}
			// pgx closes a connection whose query hit the deadline.
			if !conn.IsClosed() {
				t.Error("connection still open after the deadline")
			}
			// A new connection hangs as well: the startup handshake is lost.
			late, err := func() (*pgx.Conn, error) {
				c := cfg.Copy()
				c.ConnectTimeout = deadline
				host, port, _ := net.SplitHostPort(l.Addr())
				p, _ := strconv.Atoi(port)
				c.Host, c.Port, c.Fallbacks = host, uint16(p), nil
				return pgx.ConnectConfig(context.Background(), c)
			}()
			if err == nil {
				late.Close(context.Background())
			}
			t.Logf("connect: %v", err)
			if err == nil || !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("connect through a blackhole: %v, want a timeout", err)
			}
		})
	}
}

func TestPostgresHealOfBlackholeClosesConnection(t *testing.T) {
	cfg, l, conn := pgLink(t)
	apply(t, l, Blackhole{})
	heal(t, l)
	// The proxy closed the client side; pgx finds out on its next use.
	failsPromptly(t, "query after heal", selectOne(conn, stuck), conn)
	fresh, err := pgConnect(t, cfg, l.Addr())
	if err != nil {
		t.Fatalf("connect after heal: %v", err)
	}
	if err := selectOne(fresh, stuck); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresResetAndCut(t *testing.T) {
	for _, f := range []Fault{Reset{}, Reset{Dir: Upstream}, CutAfter{Bytes: 10}, CutAfter{Bytes: 10, Dir: Upstream}} {
		t.Run(f.String(), func(t *testing.T) {
			cfg, l, conn := pgLink(t)
			apply(t, l, f)
			failsPromptly(t, "query on a connection open before", selectOne(conn, stuck), conn)
			_, err := pgConnect(t, cfg, l.Addr())
			failsPromptly(t, "connect", err, nil)
			heal(t, l)
			fresh, err := pgConnect(t, cfg, l.Addr())
			if err != nil {
				t.Fatalf("connect after heal: %v", err)
			}
			if err := selectOne(fresh, stuck); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPostgresCutMidResponse(t *testing.T) {
	_, l, conn := pgLink(t)
	apply(t, l, CutAfter{Bytes: 100})
	ctx, cancel := context.WithTimeout(context.Background(), stuck)
	defer cancel()
	var s string
	err := conn.QueryRow(ctx, "SELECT repeat('x', 100000)").Scan(&s)
	failsPromptly(t, "large result cut after 100 bytes", err, conn)
}

func TestPostgresPartitionAndHeal(t *testing.T) {
	cfg, l, conn := pgLink(t)
	apply(t, l, Partition{})
	failsPromptly(t, "query on an open connection", selectOne(conn, stuck), conn)
	_, err := pgConnect(t, cfg, l.Addr())
	failsPromptly(t, "connect", err, nil)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect while partitioned: %v, want ECONNREFUSED", err)
	}
	heal(t, l)
	fresh, err := pgConnect(t, cfg, l.Addr())
	if err != nil {
		t.Fatalf("connect after heal: %v", err)
	}
	if err := selectOne(fresh, stuck); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresSeverRollsBack is the crash the harness relies on: a worker's
// open transaction ends when its link is severed, and what it held is free.
func TestPostgresSeverRollsBack(t *testing.T) {
	cfg, l, conn := pgLink(t)
	direct, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })

	key := int64(0x6e6574666175) << 16 // "netfau"
	key += int64(os.Getpid() & 0xffff)
	ctx, cancel := context.WithTimeout(context.Background(), stuck)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	var got bool
	if err := direct.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil || got {
		t.Fatalf("lock not held by the transaction through the link (got=%v, err=%v)", got, err)
	}

	if err := l.Sever(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to roll back the severed transaction", func() bool {
		err := direct.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got)
		return err == nil && got
	})
	if _, err := direct.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		t.Fatal(err)
	}
	failsPromptly(t, "commit after sever", tx.Commit(ctx), conn)
	_, err = pgConnect(t, cfg, l.Addr())
	failsPromptly(t, "connect after sever", err, nil)
}
