package kvx

import (
	"strconv"

	"github.com/workproof/workproof/contract"
)

// The formats below are what the providers' ledgers show, so the invariant
// checkers (and a human reading a report) can join an effect back to the
// instance, the generation and the request that caused it. Every mutation
// also carries Owner = the instance id.

// Region is where every VM is created.
const Region = "kvx-local-1"

// ValidSize reports whether size is one kvx offers: "small", "medium" or
// "large".
func ValidSize(size string) bool {
	_, ok := price(size)
	return ok
}

// Price is what a billable event for an instance of size costs, in cents;
// zero for an unknown size.
func Price(size string) int64 {
	p, _ := price(size)
	return p
}

func price(size string) (int64, bool) {
	switch size {
	case "small":
		return 1000, true
	case "medium":
		return 2000, true
	case "large":
		return 4000, true
	}
	return 0, false
}

// VMToken is the reference cloud client token of the VM a provision creates:
// "kvx-<uid>-g<generation>" (at most 61 characters, under EC2's 64). The uid
// makes it unique across an id that is deleted and re-created; the
// generation across changes. Every attempt of one change sends the same
// token, so a retry after a crash gets the VM the crashed attempt created.
func VMToken(uid string, generation int64) string {
	return "kvx-" + uid + "-g" + strconv.FormatInt(generation, 10)
}

// BillableEvent names the event a change is charged for, as package
// contract requires (contract.BillableEvent): "provision:<id>:g<generation>"
// for a create, "resize:<id>:g<generation>" for a resize, "" for a delete
// (deleting stops billing; nothing is charged). Generations come from one
// database-wide sequence, so an event name is unique even across an id that
// is deleted and re-created.
func BillableEvent(c Change) string { return contract.BillableEvent(c.Op, c.ID, c.Generation) }

// ChargeKey is the reference billing Idempotency-Key of a billable event:
// "<uid>/<event>". It is derived from the event, never drawn, so every
// attempt to charge for one event sends the same key with the same
// parameters.
func ChargeKey(uid, event string) string { return uid + "/" + event }

// WelcomeEvent names the welcome email of a provisioned instance:
// "welcome:<id>:g<generation>" (the provision's generation).
func WelcomeEvent(id string, generation int64) string {
	return "welcome:" + id + ":g" + strconv.FormatInt(generation, 10)
}

// WelcomeTo is the address the welcome email goes to.
func WelcomeTo(customer string) string { return customer + "@customers.kvx.example" }

// DeploymentName is the Kubernetes deployment of instance id: "kvx-<id>".
func DeploymentName(id string) string { return "kvx-" + id }

// Replicas is the deployment's replica count; one for every size (the size
// is carried as the deployment's Size).
const Replicas = 1
