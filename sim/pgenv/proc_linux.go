//go:build linux

package pgenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// runAs is the account the server programs run as: initdb and postgres
// refuse to run as root, so root drops to the postgres user.
type runAs struct {
	drop     bool // running as root: use uid/gid below
	uid, gid int
	name     string
}

func lookupRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("pgenv: running as root, Postgres must run as another user, but there is no user \"postgres\" (the postgresql package creates it; or `useradd --system postgres`): %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return runAs{}, fmt.Errorf("pgenv: user postgres: %w", err)
	}
	return runAs{drop: true, uid: uid, gid: gid, name: u.Username}, nil
}

// chown gives path to the server's account (a no-op when not root).
func (r runAs) chown(path string) error {
	if !r.drop {
		return nil
	}
	return os.Lchown(path, r.uid, r.gid)
}

func (r runAs) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		// Its own process group: a terminal's Ctrl-C reaches only the
		// harness, which shuts the server down in order, and a stuck
		// server is killed with all its backends at once.
		Setpgid: true,
		// The server dies with the harness even on SIGKILL. The kernel sends
		// it when the *thread* that forked exits, hence spawn.
		Pdeathsig: syscall.SIGKILL,
	}
	if r.drop {
		a.Credential = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid), Groups: []uint32{uint32(r.gid)}}
	}
	return a
}

// child is a started server program.
type child struct {
	cmd     *exec.Cmd
	pid     int
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // valid after done
}

// spawn starts cmd from a goroutine locked to its OS thread that stays
// blocked in wait until the child exits. Pdeathsig is tied to the thread that
// forked: started from an ordinary goroutine, the child would be killed
// whenever the Go runtime retires that thread (e.g. when a goroutine that
// locked it exits), long before the harness does.
func spawn(cmd *exec.Cmd) (*child, error) {
	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		// The child is gone: the thread may go back to the pool.
		runtime.UnlockOSThread()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	c.pid = cmd.Process.Pid
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// killGroup kills the child and everything in its process group. Only call
// it before the child is reaped (done not closed), so the pid cannot have
// been reused.
func (c *child) killGroup() {
	_ = syscall.Kill(-c.pid, syscall.SIGKILL)
	_ = c.cmd.Process.Kill()
}

// procStat reads pid's state letter (field 3) and start time in clock ticks
// since boot (field 22) from /proc/PID/stat; the pid and start time together
// identify a process even after the pid is reused.
func procStat(pid int) (state string, startTime uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, err
	}
	// The command name (field 2) may contain spaces and parens; fields
	// after the last ')' start at field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	startTime, err = strconv.ParseUint(f[19], 10, 64)
	return f[0], startTime, err
}

func processStartTime(pid int) (uint64, error) {
	_, st, err := procStat(pid)
	return st, err
}

// processAlive reports whether pid exists and is not a zombie (with start
// time startTime, when it is not zero).
func processAlive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, st, err := procStat(pid)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	if state == "Z" || state == "X" {
		return false // dead, waiting for a parent that may never reap it
	}
	return startTime == 0 || st == startTime
}

// processArgsContain reports whether pid's command line contains s, to make
// sure a pid read from a stale file is still the process we think it is.
// processesIn lists the live processes whose working directory is dir (a
// process's own, or one that a removal left as "dir (deleted)"). A dead
// process has none, even unreaped.
func processesIn(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err == nil && strings.TrimSuffix(cwd, " (deleted)") == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

func processArgsContain(pid int, s string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(b, []byte{0}) {
		if string(arg) == s {
			return true
		}
	}
	return false
}

// selfOwner is this process's identity for owner comments and labels.
func selfOwner() owner {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.Join(strings.Fields(host), "_")
	boot := unknownBoot
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		boot = string(bytes.TrimSpace(b))
	}
	start, _ := processStartTime(os.Getpid())
	return owner{host: host, boot: boot, pid: os.Getpid(), start: start}
}
