package controls

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: a catalogue file is user input; Parse never panics, and what
// it accepts holds the invariants coverage relies on.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("catalogue/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("standard: x\nedition: v1\ngroups: [g]\ncumulative: true\ncontrols: [{id: a, group: g, title: A}]\n"))
	f.Add([]byte("standard: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		if s.ID == "" || s.Edition == "" || len(s.Controls) == 0 {
			t.Fatalf("accepted an incomplete standard: %+v", s)
		}
		seen := map[string]bool{}
		for _, c := range s.Controls {
			if seen[c.ID] || c.ID == "" || c.Title == "" {
				t.Fatalf("accepted control %+v", c)
			}
			seen[c.ID] = true
			if _, ok := s.Control(c.ID); !ok {
				t.Fatalf("Control(%q) finds nothing", c.ID)
			}
		}
		n := 0
		for _, g := range s.Groups {
			n += len(s.InGroup(g))
		}
		if len(s.Groups) > 0 && !s.Cumulative && n != len(s.Controls) {
			t.Fatalf("groups count %d controls of %d", n, len(s.Controls))
		}
	})
}
