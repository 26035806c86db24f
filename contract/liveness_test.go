package contract_test

import (
	"testing"
	"time"

	"github.com/workproof/workproof/contract"
)

type declares struct {
	mySystem
	l contract.Liveness
}

func (d declares) Liveness() contract.Liveness { return d.l }

func TestLivenessOf(t *testing.T) {
	def := contract.Liveness{Takeover: contract.DefaultTakeover, Settle: contract.DefaultSettle,
		ParkVisibleWithin: contract.DefaultParkVisibleWithin, Claim: contract.ClaimSession}
	if got := contract.LivenessOf(mySystem{}); got != def {
		t.Errorf("a system that declares nothing: %+v, want the defaults %+v", got, def)
	}
	got := contract.LivenessOf(declares{l: contract.Liveness{Takeover: time.Minute, Claim: contract.ClaimRow, ListenerApplicationName: "l"}})
	want := def
	want.Takeover, want.Claim, want.ListenerApplicationName = time.Minute, contract.ClaimRow, "l"
	if got != want {
		t.Errorf("declared: %+v, want %+v", got, want)
	}
	if k := contract.FollowUpKey("email", "i1"); k != "email:i1" {
		t.Errorf("FollowUpKey = %q", k)
	}
}
