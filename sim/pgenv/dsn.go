package pgenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvDSN is the environment variable naming a server to use instead of an
// ephemeral cluster.
const EnvDSN = "WORKPROOF_DATABASE_URL"

// libpqSelectors are the PG* variables whose presence means "the user points
// at a server"; others (PGUSER, PGPASSWORD, PGSSLMODE…) only refine one.
var libpqSelectors = []string{"PGHOST", "PGPORT", "PGDATABASE", "PGSERVICE"}

// resolveDSN returns the connection string to use and where it came from, or
// ok=false for "start an ephemeral cluster". An empty dsn with ok=true means
// the libpq environment alone, which pgx reads by itself.
func resolveDSN(opts Options) (dsn, source string, ok bool) {
	if opts.DSN != "" {
		return opts.DSN, "Options.DSN", true
	}
	if v := os.Getenv(EnvDSN); v != "" {
		return v, "$" + EnvDSN, true
	}
	for _, k := range libpqSelectors {
		if !opts.IgnorePGEnv && os.Getenv(k) != "" {
			return "", "$" + k, true
		}
	}
	return "", "", false
}

// dsnBackend is a server somebody else runs. The harness only adds and drops
// its own databases on it.
type dsnBackend struct {
	dsn    string
	isURL  bool
	source string
	addr   string // "" for a unix socket
}

func newDSNBackend(dsn, source string) (*dsnBackend, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// pgconn redacts the password in its parse errors.
		return nil, fmt.Errorf("pgenv: connection string from %s: %w: %w", source, ErrMalformedDSN, err)
	}
	b := &dsnBackend{dsn: dsn, source: source}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := url.Parse(dsn); err != nil {
			return nil, fmt.Errorf("pgenv: connection string from %s (multi-host URLs are not supported, use keyword=value form): %w: %w", source, ErrMalformedDSN, redactURLErr(err))
		}
		b.isURL = true
	}
	if !strings.HasPrefix(cfg.Host, "/") {
		b.addr = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	return b, nil
}

func redactURLErr(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func (b *dsnBackend) kind() string                  { return "dsn" }
func (b *dsnBackend) hostPort() string              { return b.addr }
func (b *dsnBackend) private() bool                 { return false }
func (b *dsnBackend) settings() map[string]string   { return nil }
func (b *dsnBackend) cloneOptions() string          { return "" }
func (b *dsnBackend) close() error                  { return nil }
func (b *dsnBackend) restart(context.Context) error { return nil }

func (b *dsnBackend) connString(db, hostPort string) string {
	if b.isURL {
		u, err := url.Parse(b.dsn)
		if err != nil {
			return b.dsn // checked in newDSNBackend
		}
		if db != "" {
			u.Path = "/" + db
			u.RawPath = ""
		}
		if hostPort != "" {
			u.Host = hostPort
			q := u.Query()
			q.Del("host")
			q.Del("port")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// keyword=value: a later keyword overrides an earlier one.
	s := b.dsn
	if db != "" {
		s += " dbname=" + kvQuote(db)
	}
	if hostPort != "" {
		host, port, err := net.SplitHostPort(hostPort)
		if err == nil {
			s += " host=" + kvQuote(host) + " port=" + kvQuote(port)
		}
	}
	return strings.TrimSpace(s)
}

func kvQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
