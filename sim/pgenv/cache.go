//go:build linux

package pgenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// initdbArgs make a cluster for tests: trust authentication on loopback, a
// C locale (no dependency on the machine's locales) and 1 MB WAL segments,
// which make the data directory 11 MB smaller and so every copy of it
// faster. cacheLayout changes whenever they do, which starts a new cache.
var initdbArgs = []string{"-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", "--wal-segsize=1"}

const cacheLayout = "v1"

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "workproof")
	}
	return filepath.Join(os.TempDir(), "workproof-cache-"+strconv.Itoa(os.Geteuid()))
}

// cacheKey names the cached data directory: one per installation (and
// version of it), as a data directory only works with the major version that
// made it.
func cacheKey(b binaries) string {
	h := sha256.Sum256([]byte(cacheLayout + "\x00" + b.stamp + "\x00" + strings.Join(initdbArgs, "\x00")))
	return "pgdata-" + hex.EncodeToString(h[:8])
}

// majorVersion reads the major version a data directory was made for.
func majorVersion(data string) (int, error) {
	b, err := os.ReadFile(filepath.Join(data, "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("pgenv: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pgenv: PG_VERSION in %s: %w", data, err)
	}
	return n, nil
}

func cacheReady(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "global", "pg_control"))
	return err == nil
}

// ensureCache returns a directory holding a fresh initdb result for b,
// running initdb only if no process has done so before. Concurrent test
// binaries wait on a lock file; the result appears by an atomic rename, so a
// reader never sees a partial one even where the lock does not work.
func ensureCache(ctx context.Context, b binaries, run runAs, cacheDir, runRoot string, log *slog.Logger) (string, error) {
	final := filepath.Join(cacheDir, cacheKey(b))
	if cacheReady(final) {
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("pgenv: initdb cache: %w", err)
	}
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if cacheReady(final) {
		return final, nil // made by another process while we waited
	}

	start := time.Now()
	// initdb runs as the server's account, which may not reach a root-only
	// cache directory: make the cluster in the run root, then copy it.
	tmp, err := makeOwnedDir(runRoot, dirPrefix+"init-", run)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	args := append([]string{"-D", data}, initdbArgs...)
	cmd := exec.Command(b.initdb, args...)
	cmd.Dir = tmp
	cmd.Env = serverEnv()
	cmd.SysProcAttr = run.sysProcAttr()
	logPath := filepath.Join(tmp, "initdb.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("pgenv: initdb: %w", err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	c, err := spawn(cmd)
	lf.Close()
	if err != nil {
		return "", fmt.Errorf("pgenv: initdb: %w", err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		c.killGroup()
		<-c.done
		return "", fmt.Errorf("pgenv: initdb: %w", ctx.Err())
	}
	if c.waitErr != nil {
		out, _ := os.ReadFile(logPath)
		return "", fmt.Errorf("pgenv: %s: %w\n%s", b.initdb, c.waitErr, tail(out, 2000))
	}

	staging, err := os.MkdirTemp(cacheDir, ".staging-")
	if err != nil {
		return "", fmt.Errorf("pgenv: initdb cache: %w", err)
	}
	defer os.RemoveAll(staging) // a no-op after the rename
	if err := copyTree(data, staging, runAs{}); err != nil {
		return "", fmt.Errorf("pgenv: initdb cache: %w", err)
	}
	if err := os.Rename(staging, final); err != nil {
		if cacheReady(final) {
			return final, nil // another process won the race
		}
		return "", fmt.Errorf("pgenv: initdb cache: %w", err)
	}
	log.Info("pgenv: initdb cached", "dir", final, "bin", b.dir, "took", time.Since(start))
	return final, nil
}

// lockFile takes an exclusive flock on path, polling so ctx can cancel the
// wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgenv: lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("pgenv: lock %s: %w", path, err)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("pgenv: waiting for lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// copyTree copies the directory src to dst (which may exist, empty),
// keeping modes, and gives every copy to run's account.
func copyTree(src, dst string, run runAs) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if err := os.Chmod(target, info.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil // sockets, fifos: nothing a data directory needs
		}
		return run.chown(target)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// serverEnv is the environment for initdb and postgres: ours without PG*
// variables, which would change what they do (PGDATA, PGPORT, PGOPTIONS…).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}
