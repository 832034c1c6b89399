package mutation

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bouncer-policy/bouncer/pkg/match"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ErrConflict is wrapped by the error reported for a mutator whose
// location disagrees with another's about the schema of a kind.
var ErrConflict = errors.New("schema conflict")

// ErrNotConverging is wrapped by the error for an object whose mutators
// keep changing it.
var ErrNotConverging = errors.New("mutation is not converging")

// System holds mutators and applies them in Gatekeeper's order. It is safe
// for concurrent use.
type System struct {
	mu        sync.RWMutex
	ordered   []*Mutator // by kind, then name
	conflicts map[ID]error
	changed   chan struct{} // closed and replaced by every Add and Remove
}

// NewSystem returns an empty System.
func NewSystem() *System { return &System{conflicts: map[ID]error{}, changed: make(chan struct{})} }

// Changed returns a channel closed at the next Add or Remove, so that what
// is derived from the set of mutators (the mutating webhook's rules) can
// follow it without polling.
func (s *System) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// notify wakes the waiters of Changed; s.mu is held for writing.
func (s *System) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Targets says which objects the mutators can change: the group, version
// and kind triples of their applyTo, and for an AssignMetadata (which has
// none) the kinds its match selects, in every version (Version "*"); all
// is true when one of them can change every kind. With ids, only those
// mutators count. Mutators in a schema conflict count too: their conflict can end
// without any of them changing, and a webhook registered for them then
// must already receive their objects.
func (s *System) Targets(ids ...ID) (all bool, kinds []schema.GroupVersionKind) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[schema.GroupVersionKind]bool{}
	add := func(gvk schema.GroupVersionKind) {
		if !seen[gvk] {
			seen[gvk] = true
			kinds = append(kinds, gvk)
		}
	}
	for _, m := range s.ordered {
		if len(ids) > 0 && !slices.Contains(ids, m.id) {
			continue
		}
		if m.metadataOnly {
			every, pairs := m.matcher.GroupKinds()
			if every {
				return true, nil
			}
			for _, p := range pairs {
				add(schema.GroupVersionKind{Group: p[0], Version: "*", Kind: p[1]})
			}
			continue
		}
		for _, a := range m.applyTo {
			for _, g := range a.Groups {
				for _, v := range a.Versions {
					for _, k := range a.Kinds {
						add(schema.GroupVersionKind{Group: g, Version: v, Kind: k})
					}
				}
			}
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].String() < kinds[j].String() })
	return false, kinds
}

// Add adds or replaces a mutator. When its location conflicts with another
// mutator's, it is kept but neither is applied, and the conflict is
// returned (and reported by Conflicts for every mutator involved).
func (s *System) Add(m *Mutator) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.ordered), func(i int) bool { return !s.ordered[i].id.less(m.id) })
	if i < len(s.ordered) && s.ordered[i].id == m.id {
		s.ordered[i] = m
	} else {
		s.ordered = slices.Insert(s.ordered, i, m)
	}
	s.conflicts = findConflicts(s.ordered)
	s.notify()
	return s.conflicts[m.id]
}

// Remove drops the mutator with the given id, if present; mutators that
// conflicted only with it apply again.
func (s *System) Remove(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ordered = slices.DeleteFunc(s.ordered, func(m *Mutator) bool { return m.id == id })
	s.conflicts = findConflicts(s.ordered)
	s.notify()
}

// Mutators lists the mutators' ids in the order they apply.
func (s *System) Mutators() []ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ID, len(s.ordered))
	for i, m := range s.ordered {
		out[i] = m.id
	}
	return out
}

// AppliesTo reports whether any mutator outside a schema conflict applies
// to objects of group, version and kind under operation. When none does,
// Mutate changes nothing, so a caller can answer without decoding the
// object (most requests a mutating webhook receives, and all of them in a
// cluster with no mutators).
func (s *System) AppliesTo(group, version, kind, operation string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.ordered {
		if s.conflicts[m.id] == nil && m.appliesTo(group, version, kind, operation) {
			return true
		}
	}
	return false
}

// Conflicts returns, for every mutator in a schema conflict, the error
// naming the mutators it conflicts with.
func (s *System) Conflicts() map[ID]error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[ID]error, len(s.conflicts))
	for id, err := range s.conflicts {
		out[id] = err
	}
	return out
}

// Mutate applies every matching mutator to obj, in place, round after
// round until a round changes nothing. ns is the object's Namespace (nil
// when unknown or cluster-scoped); operation is CREATE or UPDATE ("" for
// any). It returns whether obj changed and the mutators that changed it, in
// the order they first did. As Gatekeeper does, it gives up with
// ErrNotConverging after one round more than there are mutators.
func (s *System) Mutate(obj, ns *unstructured.Unstructured, operation string) (bool, []ID, error) {
	return s.mutate(obj, ns, operation, false)
}

// MutateGenerated is Mutate for an object an ExpansionTemplate derived (a
// Deployment's Pod): mutators with match.source Original skip it, those
// with Generated apply to it alone.
func (s *System) MutateGenerated(obj, ns *unstructured.Unstructured, operation string) (bool, []ID, error) {
	return s.mutate(obj, ns, operation, true)
}

func (s *System) mutate(obj, ns *unstructured.Unstructured, operation string, generated bool) (bool, []ID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if obj == nil || obj.Object == nil {
		return false, nil, errors.New("mutating a nil object")
	}
	group, version := groupVersion(obj.GetAPIVersion())
	kind := obj.GetKind()
	var candidates []*Mutator
	for _, m := range s.ordered {
		if s.conflicts[m.id] == nil && m.appliesTo(group, version, kind, operation) {
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return false, nil, nil
	}
	original := deepCopy(obj.Object).(map[string]any)
	before := original
	var applied []ID
	mt := matchTarget(obj, ns, generated)
	for round := 0; round <= len(s.ordered); round++ {
		changed := false
		for _, m := range candidates {
			ok, err := m.matcher.Matches(mt)
			if err != nil {
				return false, applied, fmt.Errorf("mutator %s on %s: %w", m.id, describe(obj), err)
			}
			if !ok {
				continue
			}
			c, err := m.apply(obj.Object, target{name: mt.Name, namespace: mt.Namespace})
			if err != nil {
				return false, applied, fmt.Errorf("mutator %s on %s: %w", m.id, describe(obj), err)
			}
			if c {
				// Later mutators match against the object as it is now
				// (an added label may make one match).
				mt = matchTarget(obj, ns, generated)
				changed = true
				if !slices.Contains(applied, m.id) {
					applied = append(applied, m.id)
				}
			}
		}
		if !changed || reflect.DeepEqual(before, obj.Object) {
			if !reflect.DeepEqual(original, obj.Object) {
				return true, applied, nil
			}
			if round > 0 {
				return false, applied, fmt.Errorf("%s: mutators %s undo each other's changes", describe(obj), idList(applied))
			}
			return false, nil, nil
		}
		before = deepCopy(obj.Object).(map[string]any)
	}
	return false, applied, fmt.Errorf("%s: %w after %d rounds (mutators %s keep changing it)", describe(obj), ErrNotConverging, len(s.ordered)+1, idList(applied))
}

// MutateJSON is MutateGenerated on JSON-shaped values, the form the
// engine's expansion hands over its generated objects (engine.MutateFunc).
func (s *System) MutateJSON(obj, namespace map[string]any, operation string) error {
	var ns *unstructured.Unstructured
	if namespace != nil {
		ns = &unstructured.Unstructured{Object: namespace}
	}
	_, _, err := s.MutateGenerated(&unstructured.Unstructured{Object: obj}, ns, operation)
	return err
}

func describe(obj *unstructured.Unstructured) string {
	s := obj.GetKind() + " "
	if ns := obj.GetNamespace(); ns != "" {
		s += ns + "/"
	}
	return s + obj.GetName()
}

func idList(ids []ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

// matchTarget is what spec.match needs to know of the object as it is now.
func matchTarget(obj, ns *unstructured.Unstructured, generated bool) *match.Target {
	group, _ := groupVersion(obj.GetAPIVersion())
	t := &match.Target{
		Generated: generated,
		Group:     group,
		Kind:      obj.GetKind(),
		Name:      obj.GetName(),
		Namespace: obj.GetNamespace(),
		Labels:    obj.GetLabels(),
	}
	if ns != nil {
		t.NamespaceLabels = ns.GetLabels()
		t.NamespaceKnown = true
	}
	return t
}

// groupVersion splits an apiVersion; the core group's is just "v1".
func groupVersion(apiVersion string) (group, version string) {
	if g, v, ok := strings.Cut(apiVersion, "/"); ok {
		return g, v
	}
	return "", apiVersion
}
