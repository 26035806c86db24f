package check

import (
	"fmt"
	"slices"
	"strings"

	"github.com/workproof/workproof/fakes"
)

// Orphans checks that the outside world matches the system's instances. It
// runs only when in.Healed (before that, resources are legitimately in
// flight). Rules, per owner of a running VM, a live deployment or an
// instance in State:
//
//   - "vm-outlives-instance": a running VM whose owner is not in State, or
//     is Deleting;
//   - "deployment-outlives-instance": the same for a live deployment;
//   - "missing-vm" / "missing-deployment": an instance that is not Deleting
//     has no running VM / no deployment;
//   - "duplicate-vm" / "duplicate-deployment": more than one running VM /
//     deployment for one instance (a leaked duplicate);
//   - "size-mismatch": a running VM or a deployment of a live instance whose
//     size is not the instance's DesiredSize;
//   - "unknown-vm": the instance's VMID is set but is not one of its running
//     VMs (the system lost track of what it owns).
//
// Terminated VMs are history, never orphans. Ops are the instance's change
// requests that may have happened.
func Orphans(in Input) []Violation { return newView(in).orphans() }

func (v *view) orphans() []Violation {
	in := v.in
	if !in.Healed {
		return nil
	}
	vms := map[string][]fakes.VM{}
	deps := map[string][]fakes.Deployment{}
	owners := map[string]bool{}
	for _, vm := range in.Ledger.VMs {
		if vm.State == "running" {
			vms[vm.Owner] = append(vms[vm.Owner], vm)
			owners[vm.Owner] = true
		}
	}
	for _, d := range in.Ledger.Deployments {
		deps[d.Owner] = append(deps[d.Owner], d)
		owners[d.Owner] = true
	}
	for id := range v.inst {
		owners[id] = true
	}
	var out []Violation
	for _, owner := range sortedKeys(owners) {
		ovms, odeps := vms[owner], deps[owner]
		slices.SortFunc(ovms, func(a, b fakes.VM) int { return strings.Compare(a.ID, b.ID) })
		slices.SortFunc(odeps, func(a, b fakes.Deployment) int { return strings.Compare(a.Name, b.Name) })
		ops := indexes(v.changeOps(owner))
		add := func(rule string, keys []string, format string, args ...any) {
			out = append(out, Violation{Invariant: InvOrphan, Rule: rule, Instance: owner,
				Keys: keys, Ops: ops, Message: fmt.Sprintf(format, args...)})
		}
		inst, exists := v.inst[owner]
		if !exists || inst.Deleting {
			why := "gone"
			if exists {
				why = "deleting"
			}
			for _, vm := range ovms {
				add("vm-outlives-instance", tokens(vm), "running VM %s outlives its instance (%s)", vmName(vm), why)
			}
			for _, d := range odeps {
				add("deployment-outlives-instance", nil, "deployment %s (size %s) outlives its instance (%s)", d.Name, d.Size, why)
			}
			continue
		}
		switch len(ovms) {
		case 0:
			add("missing-vm", nil, "live instance has no running VM (desired size %s)", inst.DesiredSize)
		case 1:
		default:
			var names, keys []string
			for _, vm := range ovms {
				names = append(names, vmName(vm))
				keys = append(keys, tokens(vm)...)
			}
			add("duplicate-vm", keys, "%d running VMs: %s", len(ovms), strings.Join(names, ", "))
		}
		switch len(odeps) {
		case 0:
			add("missing-deployment", nil, "live instance has no deployment (desired size %s)", inst.DesiredSize)
		case 1:
		default:
			var names []string
			for _, d := range odeps {
				names = append(names, d.Name)
			}
			add("duplicate-deployment", nil, "%d deployments: %s", len(odeps), strings.Join(names, ", "))
		}
		for _, vm := range ovms {
			if vm.Size != inst.DesiredSize {
				add("size-mismatch", tokens(vm), "running VM %s has size %s, desired %s", vmName(vm), vm.Size, inst.DesiredSize)
			}
		}
		for _, d := range odeps {
			if d.Size != inst.DesiredSize {
				add("size-mismatch", nil, "deployment %s has size %s, desired %s", d.Name, d.Size, inst.DesiredSize)
			}
		}
		if inst.VMID != "" && !slices.ContainsFunc(ovms, func(vm fakes.VM) bool { return vm.ID == inst.VMID }) {
			var running []string
			for _, vm := range ovms {
				running = append(running, vm.ID)
			}
			add("unknown-vm", nil, "instance records VM %s, which is not one of its running VMs [%s]", inst.VMID, strings.Join(running, " "))
		}
	}
	return sortViolations(out)
}

func vmName(vm fakes.VM) string {
	if vm.ClientToken == "" {
		return vm.ID + " (no token)"
	}
	return vm.ID + " (token=" + vm.ClientToken + ")"
}

func tokens(vm fakes.VM) []string {
	if vm.ClientToken == "" {
		return nil
	}
	return []string{vm.ClientToken}
}
