package check_test

import (
	"fmt"
	"testing"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/check"
	"github.com/workproof/workproof/sim/history"
)

// BenchmarkAll measures the checkers on a correct history of n instances,
// each created, resized and deleted by alternating workers (3n ops, 3n
// intervals, 4n ledger records), at two sizes that show how a check's cost
// grows with a history: a soak's checkpoints check the whole history so far.
func BenchmarkAll(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(fmt.Sprintf("ops=%d", 3*n), func(b *testing.B) { benchAll(b, n) })
	}
}

func benchAll(b *testing.B, n int) {
	f := &fx{}
	f.in.Healed = true
	for k := range n {
		id := fmt.Sprintf("i%d", k)
		t := float64(k) * 100
		f.op("c", create(id, "small"), t+1, t+2, history.OK, 1, true)
		f.iv("w1.1", id+"-1", id, t+3, t+10, "done")
		f.rec("w1.1", "cloud", "CreateVM", "vm:"+id, id, t+4, t+5)
		f.rec("w1.1", "billing", "CreateCharge", "charge:"+id, id, t+6, t+7, event("provision:"+id))
		f.op("c", resize(id, "large"), t+20, t+21, history.OK, 2, true)
		f.iv("w2.1", id+"-2", id, t+22, t+30, "done")
		f.rec("w2.1", "cloud", "ResizeVM", "", id, t+23, t+24)
		f.op("c", del(id), t+40, t+41, history.OK, 3, true)
		f.iv("w1.1", id+"-3", id, t+42, t+50, "done")
		f.rec("w1.1", "cloud", "TerminateVM", "", id, t+43, t+44)
		f.in.Ledger.VMs = append(f.in.Ledger.VMs, fakes.VM{ID: "vm-" + id, Owner: id, Size: "large", State: "terminated", CreatedAt: at(t + 4.5)})
		f.in.Ledger.Charges = append(f.in.Ledger.Charges, fakes.Charge{ID: "ch-" + id, Owner: id, Event: "provision:" + id, CreatedAt: at(t + 6.5)})
	}
	in := f.input()
	if vs := check.All(in); len(vs) > 0 {
		b.Fatalf("false alarms: %v", vs[0])
	}
	b.ReportAllocs()
	for b.Loop() {
		check.Check(in)
	}
}
