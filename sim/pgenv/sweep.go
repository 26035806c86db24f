//go:build linux

package pgenv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirPrefix starts the name of every directory an ephemeral cluster makes
// in its run root; sweep only looks at those.
const dirPrefix = "wpg-"

// containerDirPrefix starts the name of a directory a container backend
// mounts as the container's data directory (see ContainerSpec.DataDir). Its
// postmaster.pid speaks of another pid and IPC namespace: the sweep only
// removes it.
const containerDirPrefix = "wpc-"

// ownerFile in each such directory holds "PID STARTTIME" of the process that
// made it.
const ownerFile = "owner"

// ownerless directories younger than this may be in the middle of being set
// up by a live process.
const ownerlessGrace = 10 * time.Minute

// makeOwnedDir makes a fresh directory in root, records this process as its
// owner, and gives it to run's account.
func makeOwnedDir(root, pattern string, run runAs) (string, error) {
	dir, err := os.MkdirTemp(root, pattern)
	if err != nil {
		return "", fmt.Errorf("pgenv: %w", err)
	}
	st, _ := processStartTime(os.Getpid())
	content := fmt.Sprintf("%d %d\n", os.Getpid(), st)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(content), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("pgenv: %w", err)
	}
	if err := run.chown(dir); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("pgenv: %w", err)
	}
	return dir, nil
}

func readOwner(dir string) (pid int, startTime uint64, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("malformed owner file in %s", dir)
	}
	pid, err1 := strconv.Atoi(f[0])
	startTime, err2 := strconv.ParseUint(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return pid, startTime, nil
}

// sweep removes what killed processes left in roots: directories whose owner
// is dead, after killing a postmaster still running in one (Pdeathsig
// normally took care of it). It returns the directories it removed.
func sweep(roots []string, log *slog.Logger) []string {
	var removed []string
	for _, root := range roots {
		dirs, _ := filepath.Glob(filepath.Join(root, dirPrefix+"*"))
		cdirs, _ := filepath.Glob(filepath.Join(root, containerDirPrefix+"*"))
		for _, dir := range append(dirs, cdirs...) {
			if sweepDir(dir, log) {
				removed = append(removed, dir)
			}
		}
	}
	return removed
}

func sweepDir(dir string, log *slog.Logger) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	pid, startTime, err := readOwner(dir)
	switch {
	case err != nil && time.Since(fi.ModTime()) < ownerlessGrace:
		return false
	case err == nil && processAlive(pid, startTime):
		return false
	}
	if strings.HasPrefix(filepath.Base(dir), dirPrefix) {
		killStalePostmaster(filepath.Join(dir, "data"), log)
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("pgenv: sweeping a dead process's cluster", "dir", dir, "err", err)
		return false
	}
	log.Info("pgenv: swept a dead process's cluster", "dir", dir, "owner", pid)
	return true
}

// killStalePostmaster kills the postmaster recorded in data's postmaster.pid,
// if that pid is still a postgres serving data (not a reused pid), waits for
// it to go, kills what is left of its backends, and removes the small System
// V shared memory segment a killed postmaster leaves behind (its line 7:
// "key shmid").
func killStalePostmaster(data string, log *slog.Logger) {
	defer killBackends(data, log)
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err == nil && pid > 0 && processArgsContain(pid, data) {
		log.Warn("pgenv: killing a stale postmaster", "pid", pid, "data", data)
		// Our postmasters lead their own process group; take the backends
		// too.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if !processAlive(pid, 0) || !processArgsContain(pid, data) {
				break
			}
		}
	}
	if len(lines) > 6 {
		if f := strings.Fields(lines[6]); len(f) == 2 {
			if shmid, err := strconv.Atoi(f[1]); err == nil && shmid >= 0 {
				removeSysVShm(shmid)
			}
		}
	}
}

// killBackends kills the processes still running in data, and waits for
// them to go. Postgres starts every backend in a session of its own, so the
// postmaster's process group does not hold them, and a backend outlives its
// killed postmaster until it notices: one whose data directory is gone may
// never notice (an autovacuum launcher was seen retrying for minutes after
// a sweep). A live backend keeps the cluster's System V segment attached.
func killBackends(data string, log *slog.Logger) {
	abs, err := filepath.Abs(data)
	if err != nil {
		return
	}
	killed := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		pids := processesIn(abs)
		if len(pids) == 0 {
			return
		}
		if !killed {
			log.Warn("pgenv: killing the backends of a stale cluster", "pids", pids, "data", data)
			killed = true
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeSysVShm marks a System V segment for removal; the kernel frees it
// once nothing is attached, so a segment still in use is not harmed.
func removeSysVShm(shmid int) {
	const ipcRMID = 0
	_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, uintptr(shmid), ipcRMID, 0)
}

// sweepLocal sweeps dead processes' cluster directories when Start picks a
// backend other than the ephemeral cluster (which sweeps its own run root):
// a killed run's leftovers — its directory and System V segment — must not
// wait for the next run that happens to start a cluster.
func sweepLocal(opts Options, log *slog.Logger) {
	var roots []string
	for _, r := range []string{opts.RunDir, "/dev/shm", os.TempDir()} {
		if r != "" && !slices.Contains(roots, r) {
			roots = append(roots, r)
		}
	}
	sweep(roots, log)
}

// containerDataDir makes a directory to mount as a container's data
// directory, on the same run root an ephemeral cluster would use (tmpfs when
// there is room), when that is safe: only as root, who can remove the files
// the container's postgres user leaves in it. "" means none.
func containerDataDir(opts Options) string {
	if os.Geteuid() != 0 {
		return ""
	}
	root, err := runRoot(opts.RunDir)
	if err != nil {
		return ""
	}
	dir, err := makeOwnedDir(root, containerDirPrefix, runAs{})
	if err != nil {
		return ""
	}
	// The container's postgres user must reach the data directory in it.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return ""
	}
	return dir
}
