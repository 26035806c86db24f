package reports

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
)

// Blast is what one violation cost, in the terms of the people who run the
// system: money, machines, emails, customers' changes. Only the fields the
// violation's kind can cost are set; Summary says it in one line.
type Blast struct {
	// Summary is the cost as a sentence, e.g. "1 VM leaked: 4.2 VM-seconds
	// so far, and counting until someone deletes it".
	Summary string `json:"summary"`
	// LeakedVMs are running VMs no live instance owns (or a second one an
	// instance does not know of); LeakedVMSeconds their running time from
	// creation to the end of the run.
	LeakedVMs       int     `json:"leaked_vms,omitempty"`
	LeakedVMSeconds float64 `json:"leaked_vm_seconds,omitempty"`
	// DeploymentsLeft are deployments no live instance owns, or duplicates.
	DeploymentsLeft int `json:"deployments_left,omitempty"`
	// Overcharged is the amount charged twice or for nothing, in the
	// billing service's minor unit (cents); UnchargedEvents counts
	// billable events never charged (their amount is not in the ledger).
	Overcharged       int64 `json:"overcharged,omitempty"`
	UnchargedEvents   int   `json:"uncharged_events,omitempty"`
	DuplicateEffects  int   `json:"duplicate_effects,omitempty"`  // effects without idempotency repeated
	DuplicateEmails   int   `json:"duplicate_emails,omitempty"`   // of which emails: sent twice (or more)
	ChangesLost       int   `json:"changes_lost,omitempty"`       // accepted changes that never took effect
	InstancesOff      int   `json:"instances_off,omitempty"`      // instances left out of their desired state
	WorkItemsLeft     int   `json:"work_items_left,omitempty"`    // work left queued or parked at the end
	ConcurrentWorkers int   `json:"concurrent_workers,omitempty"` // workers that acted on the instance at once
}

// BlastOf measures v's cost from the evidence of its check: the ledger is
// the truth about what the outside world did. It reads the same rows the
// checker did; a kind of violation with no measurable cost gets a summary
// saying what it risks.
func BlastOf(in check.Input, v check.Violation) Blast {
	var b Blast
	end := in.History.Taken
	l := in.Ledger
	owned := map[string]string{} // instance → the VM it records
	live := map[string]bool{}
	for _, i := range in.State.Instances {
		owned[i.ID] = i.VMID
		live[i.ID] = !i.Deleting
	}
	running := func(owner string) []fakes.VM {
		var out []fakes.VM
		for _, vm := range l.VMs {
			if vm.Owner == owner && vm.State == "running" {
				out = append(out, vm)
			}
		}
		slices.SortFunc(out, func(a, b fakes.VM) int { return strings.Compare(a.ID, b.ID) })
		return out
	}
	leak := func(vms []fakes.VM) {
		for _, vm := range vms {
			b.LeakedVMs++
			if !end.IsZero() && end.After(vm.CreatedAt) {
				b.LeakedVMSeconds += end.Sub(vm.CreatedAt).Seconds()
			}
		}
		b.Summary = fmt.Sprintf("%s leaked: %s VM-seconds by the end of the run, and counting until someone deletes %s",
			plural(b.LeakedVMs, "VM"), sig3(b.LeakedVMSeconds), itThem(b.LeakedVMs))
	}
	switch v.Invariant {
	case check.InvOrphan:
		vms := running(v.Instance)
		switch v.Rule {
		case "vm-outlives-instance":
			leak(vms)
		case "duplicate-vm":
			// The system pays for every VM but the one it records; when it
			// records none of them, for all but one.
			var extra []fakes.VM
			for _, vm := range vms {
				if vm.ID != owned[v.Instance] {
					extra = append(extra, vm)
				}
			}
			if len(extra) == len(vms) && len(extra) > 0 {
				extra = extra[1:]
			}
			leak(extra)
		case "deployment-outlives-instance", "duplicate-deployment":
			n := 0
			for _, d := range l.Deployments {
				if d.Owner == v.Instance {
					n++
				}
			}
			if v.Rule == "duplicate-deployment" && n > 0 {
				n--
			}
			b.DeploymentsLeft = n
			b.Summary = fmt.Sprintf("%s left running for an instance that does not need %s", plural(n, "deployment"), itThem(n))
		case "missing-vm", "missing-deployment":
			b.InstancesOff = 1
			b.Summary = "the customer's instance has no " + strings.TrimPrefix(v.Rule, "missing-") + ": it is down though it was accepted"
		case "size-mismatch":
			b.InstancesOff = 1
			b.Summary = "the customer runs at a size they did not ask for (and are billed for)"
		default:
			b.InstancesOff = 1
			b.Summary = "the system lost track of what it owns for this instance"
		}
	case check.InvDoubleBilling:
		switch v.Rule {
		case "duplicate-charge":
			byEvent := map[string][]fakes.Charge{}
			for _, ch := range l.Charges {
				if !ch.Refunded && ch.Owner == v.Instance && ch.Event != "" {
					byEvent[ch.Event] = append(byEvent[ch.Event], ch)
				}
			}
			n := 0
			for _, ev := range sortedKeys(byEvent) {
				chs := byEvent[ev]
				if len(chs) < 2 || !strings.Contains(v.Message, ev) {
					continue
				}
				slices.SortFunc(chs, func(a, b fakes.Charge) int { return a.CreatedAt.Compare(b.CreatedAt) })
				for _, ch := range chs[1:] {
					b.Overcharged += ch.Amount
					n++
				}
			}
			b.Summary = fmt.Sprintf("customer overcharged by %s (%s too many)", money(b.Overcharged), plural(n, "charge"))
		case "charge-never-created", "charge-never-provisioned":
			for _, ch := range l.Charges {
				if !ch.Refunded && ch.Owner == v.Instance && strings.Contains(v.Message, ch.ID+" ") {
					b.Overcharged += ch.Amount
				}
			}
			b.Summary = fmt.Sprintf("customer charged %s for an instance they never got", money(b.Overcharged))
		case "charge-missing":
			b.UnchargedEvents = 1
			b.Summary = "1 billable event never charged: revenue lost"
		default:
			b.Summary = "billing does not match what happened"
		}
	case check.InvAtMostOnce:
		n := 0
		for _, r := range l.Requests {
			if r.Effect && r.Mutation && r.Owner == v.Instance && r.Event != "" && strings.Contains(v.Message, "event "+r.Event+" ") {
				n++
			}
		}
		if n > 0 {
			n--
		}
		b.DuplicateEffects = n
		if strings.Contains(v.Message, " "+fakes.ServiceEmail+" ") {
			b.DuplicateEmails = n
			b.Summary = fmt.Sprintf("the customer got %s twice (or more)", plural(n, "email"))
			if n > 1 {
				b.Summary = fmt.Sprintf("the customer got %s too many", plural(n, "email"))
			}
		} else {
			b.Summary = fmt.Sprintf("%s without idempotency repeated", plural(n, "effect"))
		}
	case check.InvRace:
		workers := map[string]bool{}
		for _, iv := range in.History.Intervals {
			if iv.Key == v.Instance && strings.Contains(v.Message, iv.Worker) {
				workers[iv.Worker] = true
			}
		}
		b.ConcurrentWorkers = len(workers)
		b.Summary = "two actors changed the instance at once: its resources and bill can end up in any state"
		if v.Rule == "accepted-while-active" || v.Rule == "same-generation" {
			b.Summary = "a customer's change was accepted while another was in progress: one of them may be silently lost"
		}
	case check.InvLostWork:
		b.ChangesLost = len(v.Ops)
		if b.ChangesLost == 0 {
			b.ChangesLost = 1
		}
		b.Summary = fmt.Sprintf("%s accepted and never carried out: the customer was told yes", plural(b.ChangesLost, "change"))
	case check.InvConvergence:
		switch v.Rule {
		case "work-left", "parked-without-reason":
			for _, w := range in.State.Work {
				if w.Key == v.Instance {
					b.WorkItemsLeft++
				}
			}
			b.Summary = fmt.Sprintf("%s stuck after every fault was healed: the instance stays locked (has_active_work)", plural(b.WorkItemsLeft, "work item"))
		case "hot-retry":
			b.Summary = "a provider is hammered by retries with no backoff"
		default:
			b.InstancesOff = 1
			b.Summary = "the instance never reached its desired state"
			if live[v.Instance] {
				b.Summary += " (the customer sees a change that never finished)"
			}
		}
	default:
		b.Summary = "unmeasured"
	}
	return b
}

func itThem(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// money formats an amount in minor units (cents) as units.
func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// sig3 writes x rounded to three significant digits, without an exponent.
func sig3(x float64) string {
	if x <= 0 {
		return "0"
	}
	d := 2 - int(math.Floor(math.Log10(x)))
	if d < 0 {
		d = 0
	}
	s := strconv.FormatFloat(x, 'f', d, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
