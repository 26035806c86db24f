package scenarios

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/workproof/workproof/sim/nemesis"
)

// fakeLoad is a machine whose cores are busy or idle, as the test says,
// and a clock that moves a second at every reading, so that every gap and
// window of admission has passed whenever it looks.
type fakeLoad struct {
	mu          sync.Mutex
	busy, total uint64
	saturated   bool
	t           time.Time
}

func (f *fakeLoad) read() (uint64, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total += 100
	if f.saturated {
		f.busy += 100
	}
	return f.busy, f.total, true
}

func (f *fakeLoad) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(time.Second)
	return f.t
}

func (f *fakeLoad) set(saturated bool) {
	f.mu.Lock()
	f.saturated = saturated
	f.mu.Unlock()
}

func newFakeAdmission(floor, max int) (*admission, *fakeLoad) {
	f := &fakeLoad{}
	a := fixedAdmission(max)
	a.floor, a.load, a.now = floor, f.read, f.now
	return a, f
}

// tryAcquire acquires at prio unless that takes longer than d.
func tryAcquire(t *testing.T, a *admission, prio int, d time.Duration) (func(), bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.acquire(ctx, prio)
}

func TestAdmissionFixedBound(t *testing.T) {
	a := fixedAdmission(2)
	r1, ok1 := tryAcquire(t, a, prioShort, time.Second)
	r2, ok2 := tryAcquire(t, a, prioShort, time.Second)
	if !ok1 || !ok2 {
		t.Fatal("two of a bound of two were not admitted")
	}
	if _, ok := tryAcquire(t, a, prioLong, 100*time.Millisecond); ok {
		t.Fatal("a third was admitted at once with a bound of two")
	}
	r1()
	r1() // a release counts once however often it is called
	r3, ok := tryAcquire(t, a, prioShort, time.Second)
	if !ok {
		t.Fatal("a release did not admit the next")
	}
	if _, ok := tryAcquire(t, a, prioShort, 100*time.Millisecond); ok {
		t.Fatal("a double release freed two places")
	}
	r2()
	r3()
}

// A waiter of a higher priority goes first, even one that came later.
func TestAdmissionHigherPriorityFirst(t *testing.T) {
	a := fixedAdmission(1)
	hold, _ := tryAcquire(t, a, prioShort, time.Second)
	order := make(chan int, 2)
	var wg sync.WaitGroup
	wait := func(prio int) {
		wg.Go(func() {
			release, ok := tryAcquire(t, a, prio, 10*time.Second)
			if !ok {
				order <- -1
				return
			}
			order <- prio
			time.Sleep(50 * time.Millisecond) // the other is still waiting meanwhile
			release()
		})
	}
	waiting := func(prio int) bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.waiting[prio] > 0
	}
	wait(prioShort)
	for !waiting(prioShort) {
		time.Sleep(time.Millisecond)
	}
	wait(prioLong)
	for !waiting(prioLong) {
		time.Sleep(time.Millisecond)
	}
	hold()
	wg.Wait()
	close(order)
	var got []int
	for p := range order {
		got = append(got, p)
	}
	if len(got) != 2 || got[0] != prioLong || got[1] != prioShort {
		t.Fatalf("admitted in order %v, want [%d %d]", got, prioLong, prioShort)
	}
}

// Beyond the floor, examples start only while the cores keep up, and never
// more than the most.
func TestAdmissionByLoad(t *testing.T) {
	a, load := newFakeAdmission(1, 3)
	load.set(true)
	first, ok := tryAcquire(t, a, prioShort, time.Second)
	if !ok {
		t.Fatal("the floor was not admitted on a saturated machine")
	}
	if _, ok := tryAcquire(t, a, prioLong, 200*time.Millisecond); ok {
		t.Fatal("admitted beyond the floor while the cores were saturated")
	}
	load.set(false)
	var releases []func()
	for range 2 {
		r, ok := tryAcquire(t, a, prioShort, time.Second)
		if !ok {
			t.Fatal("not admitted up to the most while the cores were idle")
		}
		releases = append(releases, r)
	}
	if _, ok := tryAcquire(t, a, prioShort, 200*time.Millisecond); ok {
		t.Fatal("admitted beyond the most")
	}
	first()
	for _, r := range releases {
		r()
	}
}

func TestProcStat(t *testing.T) {
	busy, total, ok := procStat()
	if !ok {
		t.Skip("no /proc/stat here: admission falls back to its floor")
	}
	if total == 0 || busy > total {
		t.Fatalf("procStat: busy %d of %d", busy, total)
	}
	if a := loadAdmission(2, 8); a.load == nil || a.max != 8 {
		t.Fatalf("loadAdmission with /proc/stat: load %v, max %d", a.load != nil, a.max)
	}
}

func TestProgramWaitsOut(t *testing.T) {
	fault := func(kind, param string) Program {
		return Program{Workers: 2, Actions: []Action{{Kind: ActCreate, Instance: "i1"}, {Kind: ActFault, Fault: &nemesis.Fault{Kind: kind, Param: param}}}}
	}
	for _, c := range []struct {
		p    Program
		want bool
	}{
		{Program{Workers: 2, Actions: []Action{{Kind: ActCreate, Instance: "i1"}, {Kind: ActWait, N: 100}}}, false},
		{fault(nemesis.KindCrash, ""), true},
		{fault(nemesis.KindLinkBlackhole, "up"), true},
		{fault(nemesis.KindProviderTransient, "503"), false},
		{fault(nemesis.KindProviderTransient, "drop"), true},
		{fault(nemesis.KindProviderAmbiguous, "hang"), true},
		{fault(nemesis.KindSQLError, "57014"), false},
	} {
		if got := c.p.waitsOut(); got != c.want {
			t.Errorf("waitsOut of %v = %v, want %v", c.p.Actions[len(c.p.Actions)-1], got, c.want)
		}
	}
}
