package engine

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// ReadSet is what a template's code can read of a review, found statically
// when the template is compiled. Paths are in input.review's layout (the
// AdmissionRequest plus namespaceObject and source): ["object", "spec",
// "containers"] means the code reads at most that subtree; an Every
// segment stands for each element of a list (see Every). A driver that
// cannot bound a read sets All.
type ReadSet struct {
	All   bool
	Paths [][]string
}

// ReadSetter is implemented by programs whose reads are known; programs
// that do not implement it are never served from the evaluation cache.
type ReadSetter interface {
	ReadSet() ReadSet
}

// DecisionReadSetter is implemented by programs some of whose reads only
// shape the messages of violations (CEL's messageExpression): the decision
// reads alone determine whether the review passes, so a passing result is
// cached under them and serves every review equal in those parts — a
// template whose messages name the object still answers its other replicas
// from the cache, as long as they pass.
type DecisionReadSetter interface {
	DecisionReadSet() ReadSet
}

// reviewFields are the top-level keys a path may start with, and whether
// the value under them can be descended into.
var reviewFields = map[string]bool{
	"uid": false, "kind": true, "resource": true, "subResource": false, "name": false,
	"namespace": false, "operation": false, "userInfo": true, "dryRun": false,
	"object": true, "oldObject": true, "options": true, "namespaceObject": true,
	"_unstable": true, "source": false,
}

// normalize sorts the paths and drops those under another (a path through
// Every is under its parent: the parent reads every element whole), so
// that two templates with the same reads hash the review the same way; a
// path into a field the review does not have makes the set unbounded.
func (s ReadSet) normalize() ReadSet {
	if s.All {
		return ReadSet{All: true}
	}
	paths := make([][]string, 0, len(s.Paths))
	for _, p := range s.Paths {
		if len(p) == 0 {
			return ReadSet{All: true}
		}
		if _, ok := reviewFields[p[0]]; !ok {
			return ReadSet{All: true}
		}
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return lessPath(paths[i], paths[j]) })
	out := paths[:0]
	for _, p := range paths {
		if len(out) > 0 && hasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return ReadSet{Paths: out}
}

func lessPath(a, b []string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func hasPrefix(p, prefix []string) bool {
	if len(prefix) > len(p) {
		return false
	}
	for i := range prefix {
		if p[i] != prefix[i] {
			return false
		}
	}
	return true
}

// reviewField is the value of a top-level key of input.review.
func reviewField(r *Review, key string) (any, bool) {
	switch key {
	case "uid":
		return r.UID, true
	case "kind":
		return map[string]any{"group": r.Kind.Group, "version": r.Kind.Version, "kind": r.Kind.Kind}, true
	case "resource":
		return map[string]any{"group": r.Resource.Group, "version": r.Resource.Version, "resource": r.Resource.Resource}, true
	case "subResource":
		return r.SubResource, true
	case "name":
		return r.Name, true
	case "namespace":
		return r.Namespace, true
	case "operation":
		return r.Operation, true
	case "userInfo":
		return r.UserInfo, r.UserInfo != nil
	case "dryRun":
		return r.DryRun, true
	case "object":
		return r.Object, r.Object != nil
	case "oldObject":
		return r.OldObject, r.OldObject != nil
	case "options":
		return r.Options, r.Options != nil
	case "namespaceObject":
		return r.NamespaceObject, r.NamespaceObject != nil
	case "_unstable":
		if r.NamespaceObject == nil {
			return nil, false
		}
		return map[string]any{"namespace": r.NamespaceObject}, true
	case "source":
		return r.Source, true
	}
	return nil, false
}

// readKey is a 128-bit digest of exactly the parts of a review a read set
// names. Two seeds make an accidental collision negligible; being chosen at
// start-up, they cannot be aimed at.
type readKey [2]uint64

var readSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// Every is the path segment that means every element of a list (or every
// entry of a map): ["object", "spec", "containers", Every, "image"] reads
// each container's image, and the list's length and order, but nothing
// else of the containers.
const Every = "*"

// Present is the last segment of a path that reads only whether a value is
// there, not what it is: an argument a function ignores, a binding never
// used, still has to be defined for the rule to hold. Its NUL byte keeps it
// apart from any key a policy names in practice; a driver maps a key equal
// to it to Every, which reads more.
const Present = "\x00present"

// hashReads digests the value (or absence) at every path of s.
func hashReads(r *Review, s ReadSet) readKey {
	d := getDigester()
	defer putDigester(d)
	for _, p := range s.Paths {
		v, ok := reviewField(r, p[0])
		// A template's paths are always digested in the same order and
		// every value digests self-delimited, so a separator stands for
		// the path: its name would be the same bytes on every review.
		d.byte('P')
		d.at(v, ok, p[1:])
	}
	return d.sum()
}

// hashValue digests one JSON-shaped value (a constraint's parameters).
func hashValue(v any) readKey {
	d := getDigester()
	defer putDigester(d)
	d.value(v)
	return d.sum()
}

// digester writes the parts of a review a template reads into one byte
// string, in one walk of the object, and digests it with both seeds at
// the end: walking the object once per seed doubled the map lookups, and
// hashing a contiguous buffer is cheaper than feeding a hash piece by
// piece (digesting read parts was as costly as running the CEL programs
// in the webhook under load).
type digester struct{ buf []byte }

var digesters = sync.Pool{New: func() any { return &digester{buf: make([]byte, 0, 1024)} }}

func getDigester() *digester { return digesters.Get().(*digester) }

// putDigester returns d to the pool, unless one huge object grew it: the
// pool must not keep megabytes alive for every later review.
func putDigester(d *digester) {
	if cap(d.buf) > 64<<10 {
		return
	}
	d.buf = d.buf[:0]
	digesters.Put(d)
}

func (d *digester) sum() readKey {
	return readKey{maphash.Bytes(readSeeds[0], d.buf), maphash.Bytes(readSeeds[1], d.buf)}
}

func (d *digester) byte(b byte) { d.buf = append(d.buf, b) }

func (d *digester) uint(u uint64) { d.buf = binary.LittleEndian.AppendUint64(d.buf, u) }

func (d *digester) string(s string) {
	d.uint(uint64(len(s)))
	d.buf = append(d.buf, s...)
}

// at writes what rest reads of v (absent unless ok). It also writes how
// many segments it followed before stopping, so that a path which stops
// at a non-object early never digests like one that stops late.
func (d *digester) at(v any, ok bool, rest []string) {
	depth := 0
	for ; ok && depth < len(rest); depth++ {
		if rest[depth] == Present {
			d.uint(uint64(depth))
			d.byte('p')
			return
		}
		if rest[depth] == Every {
			d.uint(uint64(depth))
			d.every(v, rest[depth+1:])
			return
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			// Reading a field of a non-object is undefined whatever the
			// value, but the value decides that: write it whole.
			break
		}
		v, ok = m[rest[depth]]
	}
	d.uint(uint64(depth))
	if !ok {
		d.byte('!')
		return
	}
	d.value(v)
}

// every writes rest on every element of a list, in order, or on the value
// of every entry of a map together with its key, in any order; any other
// value is written whole, as iterating it is an error it decides.
func (d *digester) every(v any, rest []string) {
	switch x := v.(type) {
	case []any:
		d.byte('*')
		d.byte('[')
		d.uint(uint64(len(x)))
		for _, e := range x {
			d.at(e, true, rest)
		}
	case map[string]any:
		d.byte('*')
		d.byte('{')
		d.uint(uint64(len(x)))
		var sums readKey
		for k, e := range x {
			start := len(d.buf)
			d.string(k)
			d.at(e, true, rest)
			d.addEntry(&sums, start)
		}
		d.uint(sums[0])
		d.uint(sums[1])
	default:
		d.value(v)
	}
}

// addEntry adds the digests of the bytes written since start (one map
// entry) to sums and drops those bytes: summing makes a map's digest
// independent of the order its entries are visited in.
func (d *digester) addEntry(sums *readKey, start int) {
	entry := d.buf[start:]
	sums[0] += maphash.Bytes(readSeeds[0], entry)
	sums[1] += maphash.Bytes(readSeeds[1], entry)
	d.buf = d.buf[:start]
}

// value writes a JSON-shaped value. Map entries are digested each on
// their own and summed, so that the order of iteration does not matter.
// Values of other Go types cannot be told apart, so they are refused (see
// cacheable).
func (d *digester) value(v any) {
	switch x := v.(type) {
	case nil:
		d.byte('n')
	case bool:
		if x {
			d.byte('t')
		} else {
			d.byte('f')
		}
	case string:
		d.byte('s')
		d.string(x)
	case int64:
		d.byte('i')
		d.uint(uint64(x))
	case int:
		d.byte('i')
		d.uint(uint64(x))
	case float64:
		d.byte('d')
		d.uint(math.Float64bits(x))
	case []any:
		d.byte('[')
		d.uint(uint64(len(x)))
		for _, e := range x {
			d.value(e)
		}
	case map[string]any:
		d.byte('{')
		d.uint(uint64(len(x)))
		var sums readKey
		for k, e := range x {
			start := len(d.buf)
			d.string(k)
			d.value(e)
			d.addEntry(&sums, start)
		}
		d.uint(sums[0])
		d.uint(sums[1])
	default:
		// Not a JSON value (a typed struct from a caller): write it as
		// "unknown" together with a fresh number, so it never matches
		// anything.
		d.byte('?')
		d.uint(uncacheable())
	}
}

var uncacheableSeq atomic.Uint64

// uncacheable returns a number never returned before.
func uncacheable() uint64 { return uncacheableSeq.Add(1) }

// Reads returns what the template's code reads of a review, and false when
// that is unbounded or unknown (the template is then never answered from
// the evaluation cache).
func (t *Template) Reads() (ReadSet, bool) {
	if t.reads == nil {
		return ReadSet{All: true}, false
	}
	return *t.reads, true
}

// DecisionReads returns the reads that decide whether the template passes,
// when they are fewer than Reads (see DecisionReadSetter); otherwise Reads.
func (t *Template) DecisionReads() (ReadSet, bool) {
	if t.decisionReads != nil {
		return *t.decisionReads, true
	}
	return t.Reads()
}

// equalPaths reports whether two normalized path lists are the same.
func equalPaths(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || !hasPrefix(a[i], b[i]) {
			return false
		}
	}
	return true
}
