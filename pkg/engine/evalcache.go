package engine

import (
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// DefaultEvalCacheBytes bounds the evaluation cache when Options leave it
// unset and no soft memory limit is set: room for about a hundred thousand
// results with short messages.
const DefaultEvalCacheBytes = 64 << 20

// defaultEvalCacheBytes is DefaultEvalCacheBytes, or an eighth of the soft
// memory limit (GOMEMLIMIT, which serve derives from the container's
// limit) when that is less: the cache is live heap, and a cache near the
// limit makes the collector run without pause — a 20,000-Pod audit under
// a 200 MiB limit spent most of its CPU in the collector with a 64 MiB
// cache.
func defaultEvalCacheBytes() int64 {
	limit := debug.SetMemoryLimit(-1)
	if limit <= 0 || limit == math.MaxInt64 {
		return DefaultEvalCacheBytes
	}
	return min(DefaultEvalCacheBytes, limit/8)
}

// evalKey is one template evaluation: which compiled template, which
// parameters, which inventory (0 for templates that do not read it) and
// the digest of exactly what the template reads of the review.
type evalKey struct {
	template  uint64
	params    readKey
	inventory uint64
	reads     readKey
	// decision marks a key over the template's decision reads only, whose
	// entry says whether the review passes (see DecisionReadSetter).
	decision bool
}

// violatesMarker is the entry of a decision key whose review fails: its
// violations are cached under the full key.
var violatesMarker = []Violation{{}}

// evalCache remembers template evaluations that succeeded, least recently
// used first out, within a byte budget. It is split into shards so that
// concurrent reviews rarely wait for each other.
type evalCache struct {
	shards [evalShards]evalShard
	hits   atomic.Int64
	misses atomic.Int64
}

const evalShards = 16

type evalShard struct {
	mu     sync.Mutex
	budget int64
	used   int64
	m      map[evalKey]*evalEntry
	head   evalEntry // sentinel: head.next is the most recently used
}

type evalEntry struct {
	key        evalKey
	violations []Violation
	size       int64
	prev, next *evalEntry
}

func newEvalCache(budget int64) *evalCache {
	c := &evalCache{}
	for i := range c.shards {
		s := &c.shards[i]
		s.budget = budget / evalShards
		s.m = map[evalKey]*evalEntry{}
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return c
}

func (c *evalCache) shard(k evalKey) *evalShard {
	return &c.shards[(k.reads[0]^k.params[0]^k.template)%evalShards]
}

// get returns the violations recorded for k. They are shared: callers copy
// them into results and must not modify them.
func (c *evalCache) get(k evalKey) ([]Violation, bool) {
	e, ok := c.lookup(k)
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.violations, true
}

// passes reports whether the decision key k holds a passing result. It
// counts a hit only then: otherwise the review's full key is looked up
// next and counts, so that every evaluation counts once.
func (c *evalCache) passes(k evalKey) bool {
	e, ok := c.lookup(k)
	if !ok || len(e.violations) != 0 {
		return false
	}
	c.hits.Add(1)
	return true
}

// lookup finds k's entry and marks it the most recently used.
func (c *evalCache) lookup(k evalKey) (*evalEntry, bool) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if ok {
		s.unlink(e)
		s.pushFront(e)
	}
	return e, ok
}

func (c *evalCache) put(k evalKey, vs []Violation) {
	e := &evalEntry{key: k, violations: vs, size: entrySize(vs)}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.size > s.budget {
		return
	}
	if old, ok := s.m[k]; ok {
		s.unlink(old)
		s.used -= old.size
	}
	s.m[k] = e
	s.pushFront(e)
	s.used += e.size
	for s.used > s.budget {
		last := s.head.prev
		s.unlink(last)
		delete(s.m, last.key)
		s.used -= last.size
	}
}

func (s *evalShard) unlink(e *evalEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (s *evalShard) pushFront(e *evalEntry) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

// entrySize estimates an entry's memory: the entry, its map slot and its
// violations' messages and details.
func entrySize(vs []Violation) int64 {
	n := int64(160)
	for _, v := range vs {
		n += 48 + int64(len(v.Message)) + valueSize(v.Details)
	}
	return n
}

func valueSize(v any) int64 {
	switch x := v.(type) {
	case nil:
		return 0
	case string:
		return 16 + int64(len(x))
	case []any:
		n := int64(24)
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case map[string]any:
		n := int64(48)
		for k, e := range x {
			n += 16 + int64(len(k)) + valueSize(e)
		}
		return n
	}
	return 16
}

// EvalCacheStats counts lookups of the evaluation cache.
type EvalCacheStats struct {
	Hits, Misses int64
}

// EvalCacheStats reports the evaluation cache's lookups so far (zero when
// the cache is off).
func (e *Engine) EvalCacheStats() EvalCacheStats {
	if e.cache == nil {
		return EvalCacheStats{}
	}
	return EvalCacheStats{Hits: e.cache.hits.Load(), Misses: e.cache.misses.Load()}
}
