// Package match decides whether a constraint applies to an object, with
// Gatekeeper's match semantics (kinds, scope, namespaces, excludedNamespaces,
// labelSelector, namespaceSelector, name, source).
//
// Selectors are parsed once, when a constraint is added, so that the
// per-review work is only comparisons. The package knows nothing of Rego,
// CEL or API clients.
package match

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Wildcard matches any group or kind.
const Wildcard = "*"

// ErrNamespaceUnknown is returned when a namespaceSelector must be checked
// for a namespaced object whose Namespace object was not supplied.
var ErrNamespaceUnknown = errors.New("namespaceSelector needs the object's Namespace, which is unknown")

// Target is what matching needs to know of an object under review.
type Target struct {
	Group     string
	Kind      string
	Name      string
	Namespace string
	Labels    map[string]string
	// NamespaceLabels are the labels of the object's Namespace; nil with
	// NamespaceKnown false when the Namespace object is unknown.
	NamespaceLabels map[string]string
	NamespaceKnown  bool
	// Generated is true for objects derived by expansion.
	Generated bool
}

// IsNamespace reports whether the target is a core Namespace.
func (t *Target) IsNamespace() bool { return t.Group == "" && t.Kind == "Namespace" }

// namespaceName is the namespace a target lives in, or a Namespace's own
// name; ok is false for other cluster-scoped objects.
func (t *Target) namespaceName() (string, bool) {
	if t.IsNamespace() {
		return t.Name, true
	}
	return t.Namespace, t.Namespace != ""
}

// Matcher is a compiled Match.
type Matcher struct {
	spec              apis.Match
	labelSelector     labels.Selector
	namespaceSelector labels.Selector
}

// Compile validates a Match and parses its selectors.
func Compile(m apis.Match) (*Matcher, error) {
	c := &Matcher{spec: m}
	switch m.Scope {
	case "", "*", "Cluster", "Namespaced":
	default:
		return nil, fmt.Errorf("spec.match.scope: %q is not one of *, Cluster, Namespaced", m.Scope)
	}
	switch m.Source {
	case "", apis.SourceAll, apis.SourceOriginal, apis.SourceGenerated:
	default:
		return nil, fmt.Errorf("spec.match.source: %q is not one of All, Original, Generated", m.Source)
	}
	for i, ns := range m.Namespaces {
		if err := validGlob(ns); err != nil {
			return nil, fmt.Errorf("spec.match.namespaces[%d]: %w", i, err)
		}
	}
	for i, ns := range m.ExcludedNamespaces {
		if err := validGlob(ns); err != nil {
			return nil, fmt.Errorf("spec.match.excludedNamespaces[%d]: %w", i, err)
		}
	}
	if m.Name != "" {
		if err := validGlob(m.Name); err != nil {
			return nil, fmt.Errorf("spec.match.name: %w", err)
		}
	}
	var err error
	if m.LabelSelector != nil {
		if c.labelSelector, err = metav1.LabelSelectorAsSelector(m.LabelSelector); err != nil {
			return nil, fmt.Errorf("spec.match.labelSelector: %w", err)
		}
	}
	if m.NamespaceSelector != nil {
		if c.namespaceSelector, err = metav1.LabelSelectorAsSelector(m.NamespaceSelector); err != nil {
			return nil, fmt.Errorf("spec.match.namespaceSelector: %w", err)
		}
	}
	return c, nil
}

// Spec returns the Match the matcher was compiled from.
func (c *Matcher) Spec() apis.Match { return c.spec }

// Matches reports whether every criterion of the Match holds for t.
func (c *Matcher) Matches(t *Target) (bool, error) {
	if !c.kindMatches(t) || !c.sourceMatches(t) || !c.scopeMatches(t) ||
		!c.namespacesMatch(t) || !c.excludedNamespacesMatch(t) || !c.nameMatches(t) {
		return false, nil
	}
	if c.labelSelector != nil && !c.labelSelector.Matches(labels.Set(t.Labels)) {
		return false, nil
	}
	return c.namespaceSelectorMatches(t)
}

// KindMatches reports whether the kinds criterion alone holds; the engine
// index uses it to skip constraints that cannot apply.
func (c *Matcher) KindMatches(group, kind string) bool {
	return c.kindMatches(&Target{Group: group, Kind: kind})
}

// GroupKinds lists the (group, kind) pairs the kinds criterion admits;
// every is true when it admits every kind (no kinds, or a wildcard group).
// A wildcard kind within a group comes back as kind "*".
func (c *Matcher) GroupKinds() (every bool, pairs [][2]string) {
	if len(c.spec.Kinds) == 0 {
		return true, nil
	}
	for _, k := range c.spec.Kinds {
		if len(k.APIGroups) == 0 || slices.Contains(k.APIGroups, Wildcard) {
			return true, nil
		}
		kinds := k.Kinds
		if len(kinds) == 0 || slices.Contains(kinds, Wildcard) {
			kinds = []string{Wildcard}
		}
		for _, g := range k.APIGroups {
			for _, kind := range kinds {
				pairs = append(pairs, [2]string{g, kind})
			}
		}
	}
	return false, pairs
}

func (c *Matcher) kindMatches(t *Target) bool {
	if len(c.spec.Kinds) == 0 {
		return true
	}
	for _, k := range c.spec.Kinds {
		if (len(k.Kinds) == 0 || slices.Contains(k.Kinds, Wildcard) || slices.Contains(k.Kinds, t.Kind)) &&
			(len(k.APIGroups) == 0 || slices.Contains(k.APIGroups, Wildcard) || slices.Contains(k.APIGroups, t.Group)) {
			return true
		}
	}
	return false
}

func (c *Matcher) sourceMatches(t *Target) bool {
	switch c.spec.Source {
	case apis.SourceOriginal:
		return !t.Generated
	case apis.SourceGenerated:
		return t.Generated
	default:
		return true
	}
}

func (c *Matcher) scopeMatches(t *Target) bool {
	namespaced := t.Namespace != "" && !t.IsNamespace()
	switch c.spec.Scope {
	case "Cluster":
		return !namespaced
	case "Namespaced":
		return namespaced
	default:
		return true
	}
}

func (c *Matcher) namespacesMatch(t *Target) bool {
	if len(c.spec.Namespaces) == 0 {
		return true
	}
	ns, ok := t.namespaceName()
	if !ok {
		// Gatekeeper cannot disqualify a cluster-scoped object by namespace.
		return true
	}
	return anyGlob(c.spec.Namespaces, ns)
}

func (c *Matcher) excludedNamespacesMatch(t *Target) bool {
	if len(c.spec.ExcludedNamespaces) == 0 {
		return true
	}
	ns, ok := t.namespaceName()
	if !ok {
		return true
	}
	return !anyGlob(c.spec.ExcludedNamespaces, ns)
}

func (c *Matcher) nameMatches(t *Target) bool {
	return c.spec.Name == "" || Glob(c.spec.Name, t.Name)
}

func (c *Matcher) namespaceSelectorMatches(t *Target) (bool, error) {
	if c.namespaceSelector == nil {
		return true, nil
	}
	if t.IsNamespace() {
		return c.namespaceSelector.Matches(labels.Set(t.Labels)), nil
	}
	if t.Namespace == "" {
		// Cluster-scoped objects other than Namespaces are not filtered.
		return true, nil
	}
	if !t.NamespaceKnown {
		return false, fmt.Errorf("%w (namespace %q)", ErrNamespaceUnknown, t.Namespace)
	}
	return c.namespaceSelector.Matches(labels.Set(t.NamespaceLabels)), nil
}

// Glob matches s against a pattern that may start and/or end with "*".
func Glob(pattern, s string) bool {
	prefix := strings.HasSuffix(pattern, "*")
	suffix := strings.HasPrefix(pattern, "*")
	core := strings.TrimSuffix(strings.TrimPrefix(pattern, "*"), "*")
	switch {
	case pattern == "*":
		return true
	case prefix && suffix:
		return strings.Contains(s, core)
	case prefix:
		return strings.HasPrefix(s, core)
	case suffix:
		return strings.HasSuffix(s, core)
	default:
		return s == pattern
	}
}

func validGlob(p string) error {
	core := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
	if strings.Contains(core, "*") {
		return fmt.Errorf("%q: '*' is only allowed at the start or the end", p)
	}
	return nil
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if Glob(p, s) {
			return true
		}
	}
	return false
}
