package nemesis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/workproof/workproof/fakes"
	"github.com/workproof/workproof/sim/crash"
)

// Point is a crash rule with a name a program can save.
type Point struct {
	Name string     `json:"name"`
	Rule crash.Rule `json:"rule"`
}

// Statement points, named by what a statement does (crash.StatementPoint).
const (
	sqlAny    = "sql:"
	sqlCommit = "sql:commit"
)

// Call is the crash point of a call to a provider endpoint, before it goes
// out: "cloud:CreateVM".
func Call(service, endpoint string) string {
	return fakes.Endpoint{Service: service, Name: endpoint}.Point()
}

// Before crashes right before the call goes out: it has no effect.
func Before(service, endpoint string) crash.Rule { return crash.Rule{At: Call(service, endpoint)} }

// After crashes once the call's answer arrived: the effect happened and
// nothing of the worker's knows it.
func After(service, endpoint string) crash.Rule {
	return crash.Rule{At: Call(service, endpoint) + crash.DoneSuffix}
}

// AfterThenSQL crashes at the first statement after the call's answer: the
// effect happened, and whatever the worker meant to record of it is lost.
func AfterThenSQL(service, endpoint string) crash.Rule {
	return crash.Rule{After: Call(service, endpoint) + crash.DoneSuffix, At: sqlAny}
}

// AfterThenCommit crashes at the commit that follows the call: every
// effect of the item happened and its transaction rolls back.
func AfterThenCommit(service, endpoint string) crash.Rule {
	return crash.Rule{After: Call(service, endpoint) + crash.DoneSuffix, At: sqlCommit}
}

// AtSQL fires at a worker's next statement with verb ("update", "insert",
// "delete", "commit", …), on any table.
func AtSQL(verb string) crash.Rule { return crash.Rule{At: sqlAny + verb} }

// AtCommit crashes right before a worker's next COMMIT.
func AtCommit() crash.Rule { return crash.Rule{At: sqlCommit} }

// Points lists the named crash rules of s, sorted by name: "any" (the next
// point), "sql:commit" and each write verb ("sql:insert", "sql:update",
// "sql:delete", any table), and for every effectful endpoint E "before:E",
// "after:E", "after:E:then-sql" and "after:E:then-commit". Besides these a
// rule name may be "at:<point>" (the first point with that prefix) or
// "at:<point>#<n>" (its nth occurrence), as the explorer names the points
// of a trace.
func Points(s Space) []Point {
	ps := []Point{
		{Name: "any", Rule: crash.Rule{}},
		{Name: sqlCommit, Rule: AtCommit()},
		{Name: "sql:insert", Rule: crash.Rule{At: "sql:insert"}},
		{Name: "sql:update", Rule: crash.Rule{At: "sql:update"}},
		{Name: "sql:delete", Rule: crash.Rule{At: "sql:delete"}},
	}
	for _, e := range s.mutations() {
		p := e.Point()
		ps = append(ps,
			Point{Name: "before:" + p, Rule: Before(e.Service, e.Name)},
			Point{Name: "after:" + p, Rule: After(e.Service, e.Name)},
			Point{Name: "after:" + p + ":then-sql", Rule: AfterThenSQL(e.Service, e.Name)},
			Point{Name: "after:" + p + ":then-commit", Rule: AfterThenCommit(e.Service, e.Name)},
		)
	}
	slices.SortFunc(ps, func(a, b Point) int { return strings.Compare(a.Name, b.Name) })
	return ps
}

// At names the rule that fires at the nth occurrence (from 1) of point.
func At(point string, nth int) string {
	if nth <= 1 {
		return "at:" + point
	}
	return "at:" + point + "#" + strconv.Itoa(nth)
}

// Rule resolves a crash rule's name (see Points).
func Rule(s Space, name string) (crash.Rule, error) {
	if at, ok := strings.CutPrefix(name, "at:"); ok {
		r := crash.Rule{At: at}
		if i := strings.LastIndexByte(at, '#'); i >= 0 {
			n, err := strconv.Atoi(at[i+1:])
			if err != nil || n < 1 {
				return crash.Rule{}, fmt.Errorf("crash point %q: bad occurrence %q", name, at[i+1:])
			}
			r.At, r.Nth = at[:i], n
		}
		if r.At == "" {
			return crash.Rule{}, fmt.Errorf("crash point %q names no point", name)
		}
		return r, nil
	}
	for _, p := range Points(s) {
		if p.Name == name {
			return p.Rule, nil
		}
	}
	return crash.Rule{}, fmt.Errorf("unknown crash point %q (want \"at:<point>\" or one of %s)", name, strings.Join(pointNames(s), ", "))
}

func pointNames(s Space) []string {
	var out []string
	for _, p := range Points(s) {
		out = append(out, p.Name)
	}
	return out
}
