package fakes

import (
	"cmp"
	"slices"
	"time"
)

// Overlap is two mutations of the same owner by different callers whose
// in-flight intervals overlap at the provider: a race seen from the
// provider's side. A.Seq < B.Seq.
type Overlap struct {
	A Record `json:"a"`
	B Record `json:"b"`
}

// Merge combines snapshots (of different servers) into one, requests sorted
// by Seq.
func Merge(snaps ...Snapshot) Snapshot {
	var m Snapshot
	for _, s := range snaps {
		m.VMs = append(m.VMs, s.VMs...)
		m.Deployments = append(m.Deployments, s.Deployments...)
		m.Charges = append(m.Charges, s.Charges...)
		m.Emails = append(m.Emails, s.Emails...)
		m.Requests = append(m.Requests, s.Requests...)
	}
	slices.SortStableFunc(m.Requests, func(a, b Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return m
}

// LiveVMs returns the running VMs of owner (every owner when ""), in
// creation order.
func (s Snapshot) LiveVMs(owner string) []VM {
	var out []VM
	for _, vm := range s.VMs {
		if vm.State == "running" && (owner == "" || vm.Owner == owner) {
			out = append(out, vm)
		}
	}
	return out
}

// LiveDeployments returns the deployments of owner (every owner when "").
func (s Snapshot) LiveDeployments(owner string) []Deployment {
	var out []Deployment
	for _, d := range s.Deployments {
		if owner == "" || d.Owner == owner {
			out = append(out, d)
		}
	}
	return out
}

// ChargesByEvent groups every charge (refunded ones too) by billable event,
// each group in creation order.
func (s Snapshot) ChargesByEvent() map[string][]Charge {
	out := make(map[string][]Charge)
	for _, ch := range s.Charges {
		out[ch.Event] = append(out[ch.Event], ch)
	}
	return out
}

// EmailsByEvent groups every email sent by event, each group in send order.
func (s Snapshot) EmailsByEvent() map[string][]Email {
	out := make(map[string][]Email)
	for _, e := range s.Emails {
		out[e.Event] = append(out[e.Event], e)
	}
	return out
}

// Filter returns the requests for which keep is true, in ledger order.
func (s Snapshot) Filter(keep func(Record) bool) []Record {
	var out []Record
	for _, r := range s.Requests {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// OverlappingMutations returns every pair of mutation requests that name the
// same owner, come from different callers, and were in flight at the same
// time: A.Start < B.End and B.Start < A.End (a zero End, still in flight,
// counts as never ending; touching intervals do not overlap). Requests of
// all services count: a VM create racing a deployment apply for the same
// instance is a race too. Sorted by (A.Seq, B.Seq).
func (s Snapshot) OverlappingMutations() []Overlap {
	byOwner := make(map[string][]Record)
	for _, r := range s.Requests {
		if r.Mutation && r.Owner != "" {
			byOwner[r.Owner] = append(byOwner[r.Owner], r)
		}
	}
	end := func(r Record) time.Time {
		if r.End.IsZero() {
			return time.Unix(1<<62, 0)
		}
		return r.End
	}
	var out []Overlap
	for _, rs := range byOwner {
		slices.SortFunc(rs, func(a, b Record) int {
			if c := a.Start.Compare(b.Start); c != 0 {
				return c
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
		for i, a := range rs {
			ea := end(a)
			for _, b := range rs[i+1:] {
				if !b.Start.Before(ea) {
					break
				}
				if a.Caller == b.Caller || !a.Start.Before(end(b)) {
					continue
				}
				if a.Seq > b.Seq {
					out = append(out, Overlap{A: b, B: a})
				} else {
					out = append(out, Overlap{A: a, B: b})
				}
			}
		}
	}
	slices.SortFunc(out, func(x, y Overlap) int {
		if c := cmp.Compare(x.A.Seq, y.A.Seq); c != 0 {
			return c
		}
		return cmp.Compare(x.B.Seq, y.B.Seq)
	})
	return out
}
