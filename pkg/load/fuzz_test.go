package load

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	yamlv2 "go.yaml.in/yaml/v2"
)

// FuzzRead feeds arbitrary bytes to Read: it must never panic, every
// document it yields must be located inside the input, every error must
// be a located *Error, and when both Read and the YAML parser's own
// multi-document decoder accept the input they must find the same number
// of documents: a document Read does not see would pass unreviewed.
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
		// Separator forms (#12): a node on the separator line, a tag, a
		// bare document after ..., directives, other line breaks.
		"a: 1\n--- {b: 2}\n", "a: 1\n--- !!map\nb: 2\n", "a: 1\n...\nb: 2\n", "a: 1\n... # end\nb: 2\n",
		"a: 1\n---\t{b: 2}\n", "a: 1\n--- # c\nb: 2\n", "%YAML 1.1\n---\na: 1\n", "%YAML 1.1\n--- {a: 1}\n",
		"%TAG ! tag:example.com,2000:\n---\na: 1\n", "a: 1\r--- {b: 2}\n", "a: 1\r\n---\r\nb: 2\r\n", "a: 1\u0085---\nb: 2\n",
		"a: 1\u2028...\nb: 2\n", "a: |\n  x\n---\nb: 2\n", "a: 'x\n--- y'\n", "{a: 1}\n---\n{\"b\": 2}\n", "--- >\n  folded\n...\n",
		"a: 1\n---x\n", "a: 1\n....\n", "\ufeffa: 1\n--- {b: 2}\n",
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

		got := 0
		err = split("fuzz.yaml", bytes.NewReader(data), DefaultMaxDocumentBytes, func(start int, raw []byte) error {
			v, err := decodeValue(start, raw)
			if v != nil {
				got++
			}
			return err
		})
		if err != nil {
			return
		}
		want := 0
		dec := yamlv2.NewDecoder(bytes.NewReader(data))
		for {
			var v any
			err := dec.Decode(&v)
			if err == io.EOF {
				break
			}
			if err != nil {
				return // the parser refuses what Read accepts: nothing to compare
			}
			if v != nil {
				want++
			}
		}
		if got != want {
			t.Fatalf("Read found %d non-null documents, the YAML decoder %d, in %q", got, want, data)
		}
	})
}

// FuzzReadLimit: under any document size limit, Read either refuses a
// document with ErrDocumentTooLarge or hands over every document whole:
// the same documents, in the same order, as without a limit, none larger
// than the limit.
func FuzzReadLimit(f *testing.F) {
	for _, s := range []string{
		"a: 1\n---\nb: 2\n", "a: 1\n--- {b: 2}\n", "a: 1\n...\nb: 2\n", "---\n---\n---\n", "%YAML 1.1\n---\na: 1\n",
		"# a comment longer than the limit\na: 1\n", "a: 1\n--- " + string(bytes.Repeat([]byte("x"), 100)) + "\n",
	} {
		f.Add([]byte(s), uint16(8))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		if limit == 0 {
			return
		}
		type doc struct {
			start int
			raw   string
		}
		collect := func(limit int64) ([]doc, error) {
			var docs []doc
			err := split("fuzz.yaml", bytes.NewReader(data), limit, func(start int, raw []byte) error {
				if int64(len(raw)) > limit {
					t.Fatalf("document of %d bytes at line %d passed the limit of %d", len(raw), start, limit)
				}
				docs = append(docs, doc{start, string(raw)})
				return nil
			})
			return docs, err
		}
		all, err := collect(int64(len(data)) + 1)
		if err != nil {
			return // refused without a limit too
		}
		limited, err := collect(int64(limit))
		if err != nil && !errors.Is(err, ErrDocumentTooLarge) {
			t.Fatalf("with a limit of %d: %v, which it did not say without one", limit, err)
		}
		if len(limited) > len(all) {
			t.Fatalf("%d documents with a limit, %d without", len(limited), len(all))
		}
		for i := range limited {
			if limited[i] != all[i] {
				t.Fatalf("document %d: %+v with a limit of %d, %+v without", i, limited[i], limit, all[i])
			}
		}
		if err == nil && len(limited) != len(all) {
			t.Fatalf("with a limit of %d, %d documents and no error; %d without", limit, len(limited), len(all))
		}
	})
}
