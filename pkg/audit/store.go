package audit

import (
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// Finding is one violation (or evaluation error) of one constraint by one
// object.
type Finding struct {
	ConstraintKind string
	ConstraintName string
	Template       string
	Message        string
	// Action is deny, warn or dryrun; "error" for an evaluation error.
	Action string
	// Since is when the finding was first seen; it stays as long as the
	// finding does, so reports do not change on every pass.
	Since time.Time
}

// ActionError marks a finding that is an evaluation error.
const ActionError = "error"

// Resource identifies a listed resource.
type Resource struct {
	Group, Version, Resource, Kind string
	Namespaced                     bool
}

func (r Resource) String() string {
	if r.Group == "" {
		return r.Version + "/" + r.Resource
	}
	return r.Group + "/" + r.Version + "/" + r.Resource
}

// ObjectKey identifies an audited object.
type ObjectKey struct {
	Resource  string // Resource.String()
	Namespace string
	Name      string
}

// Entry is what the audit keeps of one object with findings.
type Entry struct {
	Kind     engine.GVK
	UID      string
	Findings []Finding
}

// store holds the findings of every audited object, by namespace ("" for
// cluster-scoped objects). Objects without findings are not kept, but for
// the number of constraints they pass (summary.pass of the reports).
type store struct {
	mu   sync.Mutex
	byNS map[string]map[ObjectKey]*Entry
	// passes holds, per object that matched constraints without violating
	// them, how many; passByNS their sum per namespace.
	passes   map[ObjectKey]int32
	passByNS map[string]int64
	// dirty namespaces and constraints ("Kind/name") since the last take.
	dirtyNS map[string]bool
	dirtyC  map[string]bool
	changed chan struct{}
	// listing holds, for each resource being listed, the objects watch
	// events changed since the listing began: the watch is newer for them
	// than the listing, which must not undo those changes.
	listing map[string]map[ObjectKey]bool
}

func newStore() *store {
	return &store{byNS: map[string]map[ObjectKey]*Entry{}, passes: map[ObjectKey]int32{}, passByNS: map[string]int64{}, dirtyNS: map[string]bool{}, dirtyC: map[string]bool{}, changed: make(chan struct{}, 1), listing: map[string]map[ObjectKey]bool{}}
}

func constraintID(kind, name string) string { return kind + "/" + name }

func (s *store) markLocked(ns string, e *Entry) {
	s.dirtyNS[ns] = true
	if e != nil {
		for _, f := range e.Findings {
			s.dirtyC[constraintID(f.ConstraintKind, f.ConstraintName)] = true
		}
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// keepSince carries the first-seen time of findings that were already
// there into e.
func keepSince(old, e *Entry) {
	if old == nil || e == nil {
		return
	}
	type id struct{ kind, name, msg, action string }
	since := make(map[id]time.Time, len(old.Findings))
	for _, f := range old.Findings {
		since[id{f.ConstraintKind, f.ConstraintName, f.Message, f.Action}] = f.Since
	}
	for i := range e.Findings {
		f := &e.Findings[i]
		if t, ok := since[id{f.ConstraintKind, f.ConstraintName, f.Message, f.Action}]; ok {
			f.Since = t
		}
	}
}

// setPassLocked records how many constraints an object passes.
func (s *store) setPassLocked(k ObjectKey, pass int32) {
	old := s.passes[k]
	if old == pass {
		return
	}
	if pass == 0 {
		delete(s.passes, k)
	} else {
		s.passes[k] = pass
	}
	if s.passByNS[k.Namespace] += int64(pass - old); s.passByNS[k.Namespace] == 0 {
		delete(s.passByNS, k.Namespace)
	}
	s.markLocked(k.Namespace, nil)
}

// put records what one evaluation of an object found: its findings (nil
// or empty forgets them) and how many constraints it passes. It returns
// the findings that are new (for Events), if any.
func (s *store) put(k ObjectKey, e *Entry, pass int32) *Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	if touched := s.listing[k.Resource]; touched != nil {
		touched[k] = true
	}
	s.setPassLocked(k, pass)
	m := s.byNS[k.Namespace]
	old := m[k]
	if e != nil && len(e.Findings) == 0 {
		e = nil
	}
	if old == nil && e == nil {
		return nil
	}
	keepSince(old, e)
	s.markLocked(k.Namespace, old)
	s.markLocked(k.Namespace, e)
	if e == nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.byNS, k.Namespace)
		}
		return nil
	}
	if m == nil {
		m = map[ObjectKey]*Entry{}
		s.byNS[k.Namespace] = m
	}
	m[k] = e
	return newFindings(k, old, e)
}

// newFindings returns the findings of e that old lacks, nil when none.
func newFindings(k ObjectKey, old, e *Entry) *Item {
	if old == nil {
		if len(e.Findings) == 0 {
			return nil
		}
		// All of them are new: share the entry rather than copy it (a
		// first pass over 20,000 Pods would otherwise hold every finding
		// twice until the listing is stored).
		return &Item{Key: k, Entry: e}
	}
	var out []Finding
	for _, f := range e.Findings {
		if old == nil || !hasFinding(old, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &Item{Key: k, Entry: &Entry{Kind: e.Kind, UID: e.UID, Findings: out}}
}

func hasFinding(e *Entry, f Finding) bool {
	for _, g := range e.Findings {
		if g.ConstraintKind == f.ConstraintKind && g.ConstraintName == f.ConstraintName && g.Message == f.Message && g.Action == f.Action {
			return true
		}
	}
	return false
}

// beginListing starts recording which objects of resource watch events
// change, until replace or endListing.
func (s *store) beginListing(resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listing[resource] = map[ObjectKey]bool{}
}

// endListing stops the recording of a listing that failed.
func (s *store) endListing(resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listing, resource)
}

// replace swaps every entry (and pass count) of one resource in the
// namespaces inScope for a fresh listing's, so a pass leaves nothing stale
// behind (objects deleted while no watch ran), except objects a watch
// event changed while the listing ran. With collect, it returns the
// findings that are new (for Events; read-only: they may share the
// stored entries).
func (s *store) replace(resource string, inScope func(ns string) bool, entries map[ObjectKey]*Entry, passes map[ObjectKey]int32, collect bool) []Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	touched := s.listing[resource]
	delete(s.listing, resource)
	for k := range s.passes {
		if _, ok := passes[k]; !ok && k.Resource == resource && inScope(k.Namespace) && !touched[k] {
			s.setPassLocked(k, 0)
		}
	}
	for k, n := range passes {
		if !touched[k] {
			s.setPassLocked(k, n)
		}
	}
	var fresh []Item
	for ns, m := range s.byNS {
		if !inScope(ns) {
			continue
		}
		for k, old := range m {
			if k.Resource != resource || touched[k] {
				continue
			}
			if _, ok := entries[k]; !ok {
				s.markLocked(ns, old)
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(s.byNS, ns)
		}
	}
	for k, e := range entries {
		if len(e.Findings) == 0 || touched[k] {
			continue
		}
		m := s.byNS[k.Namespace]
		if m == nil {
			m = map[ObjectKey]*Entry{}
			s.byNS[k.Namespace] = m
		}
		old := m[k]
		keepSince(old, e)
		if old == nil || !sameFindings(old, e) {
			s.markLocked(k.Namespace, old)
			s.markLocked(k.Namespace, e)
			if collect {
				if it := newFindings(k, old, e); it != nil {
					fresh = append(fresh, *it)
				}
			}
		}
		m[k] = e
	}
	return fresh
}

func sameFindings(a, b *Entry) bool {
	if len(a.Findings) != len(b.Findings) {
		return false
	}
	for _, f := range b.Findings {
		if !hasFinding(a, f) {
			return false
		}
	}
	return true
}

// dropResource forgets every entry of a resource no longer audited.
func (s *store) dropResource(resource string) {
	s.replace(resource, func(string) bool { return true }, nil, nil, false)
}

// dropConstraints removes the findings of constraints keep rejects (a
// deleted constraint's results go at once, without a listing).
func (s *store) dropConstraints(keep func(kind, name string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns, m := range s.byNS {
		for k, e := range m {
			var kept []Finding
			for _, f := range e.Findings {
				if keep(f.ConstraintKind, f.ConstraintName) {
					kept = append(kept, f)
				} else {
					s.dirtyNS[ns] = true
					s.dirtyC[constraintID(f.ConstraintKind, f.ConstraintName)] = true
				}
			}
			if len(kept) == len(e.Findings) {
				continue
			}
			if len(kept) == 0 {
				delete(m, k)
				continue
			}
			m[k] = &Entry{Kind: e.Kind, UID: e.UID, Findings: kept}
		}
		if len(m) == 0 {
			delete(s.byNS, ns)
		}
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// takeDirty returns and clears what changed since the last call.
func (s *store) takeDirty() (namespaces, constraints map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, c := s.dirtyNS, s.dirtyC
	s.dirtyNS, s.dirtyC = map[string]bool{}, map[string]bool{}
	return ns, c
}

// markAll makes every namespace and the given constraints dirty (after a
// new leader starts, everything is written once).
func (s *store) markAll(constraints []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns := range s.byNS {
		s.dirtyNS[ns] = true
	}
	for ns := range s.passByNS {
		s.dirtyNS[ns] = true
	}
	for _, c := range constraints {
		s.dirtyC[c] = true
	}
}

// markNamespace makes a namespace due for a write again (a failed write).
func (s *store) markNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirtyNS[ns] = true
}

// Item is one object's findings, as handed to writers.
type Item struct {
	Key ObjectKey
	*Entry
}

// namespace returns the items of one namespace in a stable order.
func (s *store) namespace(ns string) []Item { return s.items(func(n string) bool { return n == ns }) }

// all returns every item in a stable order.
func (s *store) all() []Item { return s.items(func(string) bool { return true }) }

func (s *store) items(inNS func(string) bool) []Item {
	s.mu.Lock()
	var out []Item
	for ns, m := range s.byNS {
		if !inNS(ns) {
			continue
		}
		for k, e := range m {
			out = append(out, Item{k, e})
		}
	}
	s.mu.Unlock()
	sortItems(out)
	return out
}

// namespaces lists the namespaces holding findings or passes.
func (s *store) namespaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.byNS))
	for ns := range s.byNS {
		out = append(out, ns)
	}
	for ns := range s.passByNS {
		if _, ok := s.byNS[ns]; !ok {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// passed returns how many (object, constraint) pairs of a namespace were
// audited without a finding.
func (s *store) passed(ns string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passByNS[ns]
}

// passedByNamespace returns passed for every namespace.
func (s *store) passedByNamespace() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.passByNS)
}

func sortItems(items []Item) {
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Key.Namespace != b.Key.Namespace {
			return a.Key.Namespace < b.Key.Namespace
		}
		if a.Kind.Kind != b.Kind.Kind {
			return a.Kind.Kind < b.Kind.Kind
		}
		if a.Key.Name != b.Key.Name {
			return a.Key.Name < b.Key.Name
		}
		return a.Key.Resource < b.Key.Resource
	})
}

// sortFindings orders an object's findings by constraint, then message.
func sortFindings(fs []Finding) {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.ConstraintKind != b.ConstraintKind {
			return a.ConstraintKind < b.ConstraintKind
		}
		if a.ConstraintName != b.ConstraintName {
			return a.ConstraintName < b.ConstraintName
		}
		if a.Message != b.Message {
			return a.Message < b.Message
		}
		return a.Action < b.Action
	})
}
