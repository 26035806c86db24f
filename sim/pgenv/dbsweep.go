package pgenv

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// markOwner records this process as the owner of database name, on a server
// the harness does not run (a private server goes away whole), so that a
// later Start can sweep it if this process is killed before its Close.
// Between CREATE DATABASE and this comment there is a moment in which a kill
// leaves an unmarked database; the sweep leaves those alone, as it must.
func (s *Server) markOwner(ctx context.Context, admin *pgxpool.Pool, name string) error {
	if s.b.private() {
		return nil
	}
	// COMMENT takes no parameters; the owner string is made of [!-~] and
	// spaces only (see selfOwner), so it cannot close the literal.
	if _, err := admin.Exec(ctx, "COMMENT ON DATABASE "+ident(name)+" IS '"+strings.ReplaceAll(selfOwner().String(), "'", "''")+"'"); err != nil {
		return fmt.Errorf("pgenv: recording the owner of %q: %w", name, err)
	}
	return nil
}

// sweepDatabases drops the databases that runs on this host left on a
// shared server when they were killed: only databases named workproof_…
// whose comment names an owner in the one format markOwner writes, on this
// host, that no longer runs. Everything else — no comment, another comment,
// a live owner, another host's owner — is left alone. Failures are logged:
// a sweep must not stop a run.
func (s *Server) sweepDatabases(ctx context.Context) []string {
	admin, err := s.pool()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rows, err := admin.Query(ctx, `SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname LIKE 'workproof\_%'`)
	if err != nil {
		s.log.Warn("pgenv: listing databases to sweep", "err", err)
		return nil
	}
	self := selfOwner()
	var dead []string
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			s.log.Warn("pgenv: listing databases to sweep", "err", err)
			rows.Close()
			return nil
		}
		if o, ok := parseOwner(comment); ok && o.deadHere(self) {
			dead = append(dead, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.log.Warn("pgenv: listing databases to sweep", "err", err)
		return nil
	}
	// Clones before templates, as in Close.
	sort.Slice(dead, func(i, j int) bool {
		ti, tj := strings.HasPrefix(dead[i], "workproof_tpl_"), strings.HasPrefix(dead[j], "workproof_tpl_")
		if ti != tj {
			return tj
		}
		return dead[i] < dead[j]
	})
	var swept []string
	for _, name := range dead {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			s.log.Warn("pgenv: sweeping a dead run's database", "db", name, "err", err)
			continue
		}
		swept = append(swept, name)
	}
	if len(swept) > 0 {
		s.log.Info("pgenv: swept databases of killed runs", "count", len(swept), "dbs", swept)
	}
	return swept
}
