package load

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"

// TestSeparatorForms: every document YAML starts is read, wherever its
// first node sits; none is dropped (#12).
func TestSeparatorForms(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		// want: kind/name@line of every document
		want string
	}{
		{"node on the separator line", cm + "--- {apiVersion: v1, kind: Pod, metadata: {name: second}}\n",
			"ConfigMap/first@1 Pod/second@4"},
		{"tag on the separator line", cm + "--- !!map\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\n",
			"ConfigMap/first@1 Pod/second@4"},
		{"bare document after ...", cm + "...\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\n",
			"ConfigMap/first@1 Pod/second@5"},
		{"bare document after ... and blank lines", cm + "...\n\n# next\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\n",
			"ConfigMap/first@1 Pod/second@7"},
		{"... then ---", cm + "...\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\n",
			"ConfigMap/first@1 Pod/second@6"},
		{"separator with a tab", cm + "---\t{apiVersion: v1, kind: Pod, metadata: {name: second}}\n",
			"ConfigMap/first@1 Pod/second@4"},
		{"CRLF line breaks", strings.ReplaceAll(cm+"---\r\n"+cm, "\n", "\r\n"),
			"ConfigMap/first@1 ConfigMap/first@5"},
		{"flow mapping document", "{apiVersion: v1, kind: Pod, metadata: {name: flow}}\n", "Pod/flow@1"},
		{"directive", "%YAML 1.1\n---\n" + cm, "ConfigMap/first@1"},
		{"directive, node on the marker line", "%YAML 1.1\n--- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n", "Pod/p@1"},
		{"marker-like text inside a line", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  x: '--- y'\n  z: |\n    ---\n    ...\n", "ConfigMap/a@1"},
		{"three dashes then text is a scalar", "---x: 1\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "ConfigMap/a@1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := Read("in.yaml", strings.NewReader(tc.in), func(d *Document) error {
				got = append(got, fmt.Sprintf("%s/%s@%d", d.Kind(), d.Name(), d.Line))
				return nil
			})
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("read %q, want %q", g, tc.want)
			}
		})
	}
}

// TestSeparatorErrors: forms the line splitter cannot follow are refused
// with the file and line rather than read as one document, which the YAML
// parser would cut short after its first document.
func TestSeparatorErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"marker after a lone CR", cm + "data: {a: b}\r--- {apiVersion: v1, kind: Pod, metadata: {name: x}}\n", "in.yaml:4: document marker \"---\" after a line break other than \\n"},
		{"end marker after a lone CR", cm + "data: {a: b}\r...\rkind: Pod\n", "in.yaml:4: document marker \"...\""},
		{"marker after NEL", cm + "data: {a: b}\u0085--- {kind: Pod}\n", "in.yaml:4: document marker"},
		{"marker after LS", cm + "data: {a: b}\u2028---\nkind: Pod\n", "in.yaml:4: document marker"},
		{"content after ...", cm + "... {kind: Pod}\n", "in.yaml:4: content after the document end marker"},
		{"directive without a document", "%YAML 1.1\n...\n", "in.yaml:1: directives without a document"},
		{"malformed JSON", "{\"apiVersion\": \"v1\", \"kind\": }\n", "in.yaml:1: malformed document 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := Read("in.yaml", strings.NewReader(tc.in), func(*Document) error { n++; return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q (after %d documents)", err, tc.want, n)
			}
			var le *Error
			if !errors.As(err, &le) {
				t.Errorf("error %v is not a *load.Error", err)
			}
		})
	}
}

// endless yields lines (or, with line "", bytes without any line break)
// for ever, and fails the test once more than max bytes were taken.
type endless struct {
	t        *testing.T
	line     string
	max, got int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.got > e.max {
		e.t.Errorf("read %d bytes, more than %d: the limit is not checked while reading", e.got, e.max)
		return 0, errors.New("read past the bound")
	}
	n := len(p)
	if e.line == "" {
		for i := range p {
			p[i] = 'a'
		}
	} else {
		n = 0
		for n+len(e.line) <= len(p) {
			n += copy(p[n:], e.line)
		}
	}
	e.got += int64(n)
	return n, nil
}

// TestLimitWhileReading: a document over the limit is refused once the
// limit is reached, whether it has line breaks or none (#12: /dev/zero
// grew to 24 GB, a 400 MB line peaked at 842 MB).
func TestLimitWhileReading(t *testing.T) {
	const slack = 128 << 10 // the reader's buffer
	for _, tc := range []struct {
		name  string
		line  string
		limit int64
	}{
		{"one endless line, default limit", "", 0},
		{"endless lines, default limit", "k: " + strings.Repeat("v", 60) + "\n", 0},
		{"endless line, 1 KiB", "", 1 << 10},
		{"endless lines, 1 KiB", "k: v\n", 1 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = DefaultMaxDocumentBytes
			}
			src := &endless{t: t, line: tc.line, max: limit + slack}
			in := io.MultiReader(strings.NewReader(cm+"---\n"), src)
			n := 0
			err := ReadContext(t.Context(), "big.yaml", in, Options{MaxDocumentBytes: tc.limit}, func(*Document) error { n++; return nil })
			if !errors.Is(err, ErrDocumentTooLarge) {
				t.Fatalf("error %v, want ErrDocumentTooLarge", err)
			}
			if want := fmt.Sprintf("big.yaml:5: document is larger than the document size limit (%s)", byteSize(limit)); err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if n != 1 {
				t.Errorf("%d documents before the large one, want 1", n)
			}
		})
	}
}

// TestLimitExact: a document of exactly the limit is read.
func TestLimitExact(t *testing.T) {
	doc := cm + "data: {k: " + strings.Repeat("v", 100) + "}\n"
	for _, tc := range []struct {
		limit int64
		ok    bool
	}{{int64(len(doc)), true}, {int64(len(doc) - 1), false}} {
		n := 0
		err := ReadContext(t.Context(), "in.yaml", strings.NewReader("---\n"+doc+"---\n"), Options{MaxDocumentBytes: tc.limit}, func(*Document) error { n++; return nil })
		if tc.ok && (err != nil || n != 1) {
			t.Errorf("limit %d: %d documents, %v; want the document", tc.limit, n, err)
		}
		if !tc.ok && !errors.Is(err, ErrDocumentTooLarge) {
			t.Errorf("limit %d: %v, want ErrDocumentTooLarge", tc.limit, err)
		}
	}
}

// TestCommentEndsAtCR: a lone CR ends a comment for the YAML parser, so
// what follows is a document, not part of a blank line (found by FuzzRead).
func TestCommentEndsAtCR(t *testing.T) {
	in := "# old Mac line breaks\rapiVersion: v1\rkind: Pod\rmetadata: {name: p}\r"
	var got []string
	err := Read("in.yaml", strings.NewReader(in), func(d *Document) error { got = append(got, d.Kind()+"/"+d.Name()); return nil })
	if err != nil || strings.Join(got, ",") != "Pod/p" {
		t.Errorf("read %v, %v; want Pod/p", got, err)
	}
}
