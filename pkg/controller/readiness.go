package controller

import (
	"sort"
	"sync"
	"sync/atomic"
)

// tracker is the readiness gate: it is satisfied once the initial listing
// is registered (populated) and every expectation registered since has been
// observed. Once satisfied it stays so: later changes are served from a
// replica already enforcing, and flapping readiness would only drop
// capacity.
type tracker struct {
	mu      sync.Mutex
	waiting map[string]bool
	// seen holds what was observed before anyone expected it: reconcilers
	// start with the cache, possibly before the initial listing registers.
	seen   map[string]bool
	isFull bool
	done   atomic.Bool
}

func newTracker() *tracker { return &tracker{waiting: map[string]bool{}, seen: map[string]bool{}} }

// expect adds something readiness waits for. It is a no-op once satisfied.
func (t *tracker) expect(key string) {
	if t.done.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done.Load() && !t.seen[key] {
		t.waiting[key] = true
	}
}

// observe marks an expectation met, or one that is yet to be registered.
func (t *tracker) observe(key string) {
	if t.done.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.waiting, key)
	t.seen[key] = true
	t.check()
}

// populated says the initial listing is registered.
func (t *tracker) populated() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.isFull = true
	t.check()
}

func (t *tracker) check() {
	if t.isFull && len(t.waiting) == 0 {
		t.done.Store(true)
		t.seen = nil
	}
}

func (t *tracker) satisfied() bool { return t.done.Load() }

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting)
}

// pending returns up to n keys still awaited, sorted.
func (t *tracker) pending(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.waiting))
	for k := range t.waiting {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}
