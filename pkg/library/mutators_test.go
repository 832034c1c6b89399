package library_test

import (
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/library"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

// TestMutatorsCompileAndNamePolicies holds every library mutator to what
// Bouncer runs, and its bouncer.dev/satisfies to a library policy.
func TestMutatorsCompileAndNamePolicies(t *testing.T) {
	ms, err := library.Mutators()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 6 {
		t.Fatalf("%d library mutators, want at least the six defaults", len(ms))
	}
	ps, err := library.Policies()
	if err != nil {
		t.Fatal(err)
	}
	sys := mutation.NewSystem()
	for _, m := range ms {
		c, err := mutation.Decode(m.Object)
		if err != nil {
			t.Errorf("%s: %v", m.File, err)
			continue
		}
		if err := sys.Add(c); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
		if m.Description == "" || len(m.Bundles) == 0 {
			t.Errorf("%s: description %q, bundles %v", m.Name, m.Description, m.Bundles)
		}
		if m.Satisfies != "" {
			if _, ok := library.Get(ps, m.Satisfies); !ok {
				t.Errorf("%s satisfies %q, which is no library policy", m.Name, m.Satisfies)
			}
		}
	}
	for id, err := range sys.Conflicts() {
		t.Errorf("%s: %v", id, err)
	}
}
