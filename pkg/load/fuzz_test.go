package load

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read: it must never panic, every
// document it yields must be located inside the input, and every error
// must be a located *Error.
func FuzzRead(f *testing.F) {
	for _, p := range []string{"testdata/multi.yaml", "testdata/malformed.yaml", "testdata/kustomize/base/deployment.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "---", "---\n---\n", "a: b\n---\n- x\n", "{\"a\": [1, 2", "apiVersion: v1\nkind: List\nitems: [{a: 1}, 2]\n",
		"a: &x [*x]\n", "a: !!binary AAAA\n", "? [a]\n: b\n", "\t- a\n", "...\n---\n...", "a: 1e400\n", "{\"a\": 1e400}",
		"a:\n  - b\n - c\n", "%YAML 1.2\n---\na: b\n", "--- |\n  text\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		err := Read("fuzz.yaml", bytes.NewReader(data), func(d *Document) error {
			if d.Object == nil {
				t.Fatal("document without an object")
			}
			if d.File != "fuzz.yaml" || d.Line < 1 || d.Line > lines {
				t.Fatalf("document located at %s:%d, input has %d lines", d.File, d.Line, lines)
			}
			return nil
		})
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.File != "fuzz.yaml" || le.Line < 1 || le.Line > lines {
				t.Fatalf("error %v is not located inside the input", err)
			}
		}
	})
}
