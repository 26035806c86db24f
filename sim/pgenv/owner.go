package pgenv

import (
	"fmt"
	"regexp"
	"strconv"
)

// owner identifies the process that made something a later run may have to
// sweep: a database on a shared server (in its comment) or a container (in
// its label). The host and boot id say whether the owner ran on this machine
// since it booted; pid and start time (clock ticks since boot) then say
// whether it still runs, even after its pid was reused.
type owner struct {
	host  string
	boot  string
	pid   int
	start uint64
}

// unknownBoot stands for a boot id that could not be read: such an owner is
// never judged dead.
const unknownBoot = "unknown"

// ownerLabel is the container label holding the owner.
const ownerLabel = "org.workproof.pgenv.owner"

// ownerRE is the one format a sweep accepts; anything else is not ours.
var ownerRE = regexp.MustCompile(`^workproof-owner v1 host=(\S+) boot=(\S+) pid=([1-9][0-9]*) start=([0-9]+)$`)

func (o owner) String() string {
	return fmt.Sprintf("workproof-owner v1 host=%s boot=%s pid=%d start=%d", o.host, o.boot, o.pid, o.start)
}

func parseOwner(s string) (owner, bool) {
	m := ownerRE.FindStringSubmatch(s)
	if m == nil {
		return owner{}, false
	}
	pid, err1 := strconv.Atoi(m[3])
	start, err2 := strconv.ParseUint(m[4], 10, 64)
	if err1 != nil || err2 != nil {
		return owner{}, false
	}
	return owner{host: m[1], boot: m[2], pid: pid, start: start}, true
}

// deadHere reports whether o certainly no longer runs, judged from self (this
// process's identity): only an owner on this host is ever judged, and one of
// another host is never dead — its host may share the server or engine.
func (o owner) deadHere(self owner) bool {
	if o.host != self.host || o.boot == unknownBoot || self.boot == unknownBoot {
		return false
	}
	if o.boot != self.boot {
		return true // the machine rebooted since
	}
	return !processAlive(o.pid, o.start)
}
