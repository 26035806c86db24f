package pgenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// binaries are the server programs of one PostgreSQL installation.
type binaries struct {
	dir      string
	initdb   string
	postgres string
	stamp    string // path, size and mtime of postgres: changes with an upgrade
}

// binDirGlobs are the usual install layouts, tried newest version first:
// Debian/Ubuntu, RHEL (PGDG), and a source build.
var binDirGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"}

// findBinaries looks in binDir if set; else beside initdb on $PATH, then in
// the newest of binDirGlobs.
func findBinaries(binDir string) (binaries, error) {
	var candidates []string
	if binDir != "" {
		candidates = []string{binDir}
	} else {
		if p, err := exec.LookPath("initdb"); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
		for _, g := range binDirGlobs {
			m, _ := filepath.Glob(g)
			sort.Slice(m, func(i, j int) bool { return versionLess(m[j], m[i]) })
			candidates = append(candidates, m...)
		}
	}
	var tried []string
	for _, dir := range candidates {
		b := binaries{dir: dir, initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if !isExecutable(b.initdb) || !isExecutable(b.postgres) {
			tried = append(tried, dir)
			continue
		}
		// Identify the installation without running it (postgres --version
		// costs 20–50 ms on every Start): an upgrade changes the binary.
		fi, err := os.Stat(b.postgres)
		if err != nil {
			return binaries{}, fmt.Errorf("pgenv: %w", err)
		}
		b.stamp = fmt.Sprintf("%s %d %d", b.postgres, fi.Size(), fi.ModTime().UnixNano())
		return b, nil
	}
	where := "$PATH or " + strings.Join(binDirGlobs, ", ")
	if binDir != "" {
		where = "Options.BinDir " + binDir
	} else if len(tried) > 0 {
		where += " (found only parts in " + strings.Join(tried, ", ") + ")"
	}
	return binaries{}, fmt.Errorf("no initdb and postgres in %s: %w", where, errNoBinaries)
}

// errNoBinaries: no PostgreSQL server binaries were found; Start reports it
// as ErrNoPostgres with the other ways to get a server.
var errNoBinaries = errors.New("no PostgreSQL server binaries")

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// versionLess orders paths by the first number in them (9.6 < 10 < 15).
func versionLess(a, b string) bool {
	va, vb := firstNumber(a), firstNumber(b)
	if va != vb {
		return va < vb
	}
	return a < b
}

func firstNumber(s string) int {
	start := strings.IndexAny(s, "0123456789")
	if start < 0 {
		return -1
	}
	end := start
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[start:end])
	if err != nil {
		return -1
	}
	return n
}

var errPortInUse = errors.New("port in use")
