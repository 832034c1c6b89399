package engine

import (
	"hash/fnv"
	"iter"
	"maps"
)

// constraintShards splits a kind's constraints so that changing one copies
// a shard, about 1/64 of the kind, instead of all of it: controllers add
// constraints one at a time, and a git sync brings thousands of one kind.
const constraintShards = 64

// constraintSet is one kind's constraints by name. It is immutable once
// in a published snapshot: with and without return a new set that shares
// every untouched shard.
type constraintSet struct {
	shards [constraintShards]map[string]*Constraint
	n      int
}

func shardOf(name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % constraintShards)
}

// get returns the constraint of that name, nil if none (or cs is nil).
func (cs *constraintSet) get(name string) (*Constraint, bool) {
	if cs == nil {
		return nil, false
	}
	c, ok := cs.shards[shardOf(name)][name]
	return c, ok
}

func (cs *constraintSet) len() int {
	if cs == nil {
		return 0
	}
	return cs.n
}

// with returns cs with c under name, added or replaced.
func (cs *constraintSet) with(name string, c *Constraint) *constraintSet {
	n := &constraintSet{}
	if cs != nil {
		*n = *cs
	}
	i := shardOf(name)
	m := maps.Clone(n.shards[i])
	if m == nil {
		m = map[string]*Constraint{}
	}
	if _, had := m[name]; !had {
		n.n++
	}
	m[name] = c
	n.shards[i] = m
	return n
}

// without returns cs without name; nil when nothing is left.
func (cs *constraintSet) without(name string) *constraintSet {
	if _, ok := cs.get(name); !ok {
		return cs
	}
	if cs.n == 1 {
		return nil
	}
	n := &constraintSet{}
	*n = *cs
	i := shardOf(name)
	m := maps.Clone(n.shards[i])
	delete(m, name)
	n.shards[i] = m
	n.n--
	return n
}

// all yields every constraint of the set, in no particular order.
func (cs *constraintSet) all() iter.Seq2[string, *Constraint] {
	return func(yield func(string, *Constraint) bool) {
		if cs == nil {
			return
		}
		for _, m := range cs.shards {
			for name, c := range m {
				if !yield(name, c) {
					return
				}
			}
		}
	}
}
