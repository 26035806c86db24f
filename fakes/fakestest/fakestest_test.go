package fakestest

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/workproof/workproof/fakes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWorld(t *testing.T) {
	w := World(t, fakes.Options{})
	c := ClientsFor(w, "w1")
	if _, err := c.Cloud.CreateVM(context.Background(), fakes.CreateVMRequest{Owner: "i1", Size: "s", Region: "r"}); err != nil {
		t.Fatal(err)
	}
	if s := w.Snapshot(); len(s.LiveVMs("i1")) != 1 || s.Requests[0].Caller != "w1" {
		t.Fatalf("snapshot %+v", s)
	}
}
