package nemesis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/workproof/workproof/sim"
	"github.com/workproof/workproof/sim/netfault"
)

// Kind names of network faults.
const (
	KindLinkLatency       = "link-latency"       // N ms of delay, Param direction
	KindLinkBlackhole     = "link-blackhole"     // data swallowed, Param direction
	KindLinkReset         = "link-reset"         // connections reset
	KindLinkCut           = "link-cut"           // connections cut after N bytes, Param direction
	KindLinkPartition     = "link-partition"     // the link refuses and drops everything
	KindTerminateWorker   = "terminate-worker"   // pg_terminate_backend of a worker's sessions
	KindTerminateListener = "terminate-listener" // pg_terminate_backend of a worker's LISTEN session
)

var (
	directions = []string{"down", "up"}
	latencies  = []int{20, 200, 800}
	cutBytes   = []int{0, 64, 512, 4096}
)

// linkKind is one netfault.Fault on the link of a worker (every worker, for
// AllWorkers) to one upstream (Target: "postgres" or a provider).
type linkKind struct {
	always
	name string
}

func (k linkKind) Name() string { return k.name }
func (linkKind) Class() Class   { return ClassNetwork }
func (k linkKind) Doc() string {
	switch k.name {
	case KindLinkLatency:
		return "a worker's link to an upstream (Postgres or a provider) is slow: N ms each way the direction says"
	case KindLinkBlackhole:
		return "a worker's link to an upstream goes silent in one direction: requests or answers are swallowed, connections hang"
	case KindLinkReset:
		return "a worker's link to an upstream resets every connection (TCP RST)"
	case KindLinkCut:
		return "a worker's link to an upstream cuts each connection after N bytes in one direction (e.g. mid-COMMIT answer)"
	}
	return "a worker's link to an upstream is partitioned: nothing gets through until healed"
}

func (k linkKind) Draw(d Drawer, s Space) Fault {
	f := Fault{Kind: k.name, Worker: s.drawWorker(d, true), Target: pick(d, "upstream", s.Upstreams)}
	switch k.name {
	case KindLinkLatency:
		f.Param, f.N = pick(d, "direction", directions), pick(d, "ms", latencies)
	case KindLinkBlackhole:
		f.Param = pick(d, "direction", directions)
	case KindLinkCut:
		f.Param, f.N = pick(d, "direction", directions), pick(d, "bytes", cutBytes)
	}
	return f
}

func (k linkKind) Check(f Fault, s Space) error {
	if _, api := strings.CutPrefix(f.Worker, APIPrefix); !api {
		if err := s.checkWorker(f.Worker, true); err != nil {
			return err
		}
	}
	if !slices.Contains(s.Upstreams, f.Target) {
		return fmt.Errorf("upstream %q (want one of %v)", f.Target, s.Upstreams)
	}
	switch k.name {
	case KindLinkLatency:
		if err := checkN(f.N, 1, 10_000, "latency ms"); err != nil {
			return err
		}
		return checkParam(f.Param, directions)
	case KindLinkBlackhole:
		return checkParam(f.Param, directions)
	case KindLinkCut:
		if err := checkN(f.N, 0, 1<<20, "bytes"); err != nil {
			return err
		}
		return checkParam(f.Param, directions)
	}
	return nil
}

func (k linkKind) fault(f Fault) netfault.Fault {
	dir := netfault.Downstream
	if f.Param == "up" {
		dir = netfault.Upstream
	}
	switch k.name {
	case KindLinkLatency:
		return netfault.Latency{Delay: time.Duration(f.N) * time.Millisecond, Dir: dir}
	case KindLinkBlackhole:
		return netfault.Blackhole{Dir: dir}
	case KindLinkReset:
		return netfault.Reset{}
	case KindLinkCut:
		return netfault.CutAfter{Bytes: int64(f.N), Dir: dir}
	}
	return netfault.Partition{}
}

func (k linkKind) Inject(ctx context.Context, e *sim.Env, f Fault) error {
	nf := k.fault(f)
	if client, ok := strings.CutPrefix(f.Worker, APIPrefix); ok {
		if f.Target != sim.Postgres {
			return fmt.Errorf("an API client's only link is to %s, not %q", sim.Postgres, f.Target)
		}
		return e.APILinkFault(ctx, client, nf)
	}
	return each(e, f.Worker, func(w string) error { return e.LinkFault(w, f.Target, nf) })
}

// APIPrefix, before a client's name as a link fault's Worker, aims the fault
// at that API client's database link ("api:user").
const APIPrefix = "api:"

// LinkFault is the netfault.Fault a link fault of the catalogue applies,
// for a scenario that applies one itself at a precise moment.
func LinkFault(f Fault) (netfault.Fault, error) {
	k, ok := KindNamed(f.Kind)
	lk, isLink := k.(linkKind)
	if !ok || !isLink {
		return nil, fmt.Errorf("nemesis: %q is not a link fault", f.Kind)
	}
	return lk.fault(f), nil
}

// terminateKind ends a worker's Postgres sessions from the server side.
type terminateKind struct {
	always
	name  string
	which sim.Backend
}

func (k terminateKind) Name() string { return k.name }
func (terminateKind) Class() Class   { return ClassNetwork }
func (k terminateKind) Doc() string {
	if k.which == sim.ListenerBackends {
		return "pg_terminate_backend of a worker's LISTEN session: notifications stop until it reconnects, polling must carry on"
	}
	return "pg_terminate_backend of a worker's database sessions (not its listener): the claim it holds rolls back"
}
func (k terminateKind) Draw(d Drawer, s Space) Fault {
	return Fault{Kind: k.name, Worker: s.drawWorker(d, true)}
}
func (terminateKind) Check(f Fault, s Space) error { return s.checkWorker(f.Worker, true) }
func (k terminateKind) Inject(ctx context.Context, e *sim.Env, f Fault) error {
	return each(e, f.Worker, func(w string) error {
		_, err := e.TerminateBackends(ctx, w, k.which)
		return err
	})
}
