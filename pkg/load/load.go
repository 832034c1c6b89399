// Package load reads Kubernetes objects from files, directories, standard
// input and kustomize directories, one document at a time, for the CLI, git
// sync and tests alike. Every document carries its file and line, so errors
// and reports can point at the source.
//
// It streams: a directory of 20,000 objects is never held in memory at once
// (kustomize output, which kustomize itself builds in memory, excepted).
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// DefaultMaxDocumentBytes bounds one YAML or JSON document unless
// Options say otherwise. The apiserver refuses requests over 3 MiB, so no
// single object above that can exist; 16 MiB leaves room for the List
// documents `kubectl get -o yaml` writes (thousands of objects in one
// document) while the decoded document, about 20 times its size in memory
// (a 16 MiB List of 31,794 Pods: 420 MiB peak RSS for bouncer test), stays
// well inside a CI runner.
const DefaultMaxDocumentBytes = 16 << 20

// ErrDocumentTooLarge is wrapped by the error for a document over the limit.
var ErrDocumentTooLarge = errors.New("document is larger than the document size limit")

// Document is one object read from a source.
type Document struct {
	// File is the path as given (or "<stdin>"); Line is the 1-based line
	// where the document starts; Index is its 0-based position in the file.
	File   string
	Line   int
	Index  int
	Object map[string]any
}

// Location is "file:line".
func (d *Document) Location() string { return fmt.Sprintf("%s:%d", d.File, d.Line) }

// APIVersion, Kind, Name and Namespace read the object's identity.
func (d *Document) APIVersion() string { s, _ := d.Object["apiVersion"].(string); return s }

// Kind returns the object's kind.
func (d *Document) Kind() string { s, _ := d.Object["kind"].(string); return s }

// Name returns metadata.name.
func (d *Document) Name() string { return metaString(d.Object, "name") }

// Namespace returns metadata.namespace.
func (d *Document) Namespace() string { return metaString(d.Object, "namespace") }

func metaString(obj map[string]any, key string) string {
	m, _ := obj["metadata"].(map[string]any)
	s, _ := m[key].(string)
	return s
}

// Error is a problem with one document or file, located.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Stdin is the path that means standard input.
const Stdin = "-"

// Options change how paths are read.
type Options struct {
	// Stdin replaces os.Stdin (tests).
	Stdin io.Reader
	// MaxDocumentBytes bounds one document; 0 means DefaultMaxDocumentBytes.
	// The limit is checked while a document is read, so a file without line
	// breaks costs no more memory than the limit.
	MaxDocumentBytes int64
	// AllowRemote lets kustomizations name remote resources (http(s) URLs
	// and git repositories), which kustomize then fetches. Off, a
	// kustomization naming one is an error and nothing is fetched.
	AllowRemote bool
	// Root, when set, confines kustomize to this directory (a repository's
	// checkout): a kustomization reaching a base, file or link outside it
	// is an error wrapping ErrOutsideRoot, and nothing outside is read.
	Root string
}

func (o Options) limit() int64 {
	if o.MaxDocumentBytes > 0 {
		return o.MaxDocumentBytes
	}
	return DefaultMaxDocumentBytes
}

// Walk is WalkContext without cancellation.
func Walk(paths []string, opts Options, fn func(*Document) error) error {
	return WalkContext(context.Background(), paths, opts, fn)
}

// WalkContext reads every document under paths in order and calls fn for
// each. Directories are walked recursively in lexical order, reading
// .yaml, .yml and .json files; a directory holding a kustomization file is
// rendered with kustomize instead. fn's error stops the walk and is
// returned as is; when ctx is done, reading stops (a read blocked on a pipe
// or terminal included) with an error wrapping ctx.Err().
func WalkContext(ctx context.Context, paths []string, opts Options, fn func(*Document) error) error {
	for _, p := range paths {
		if err := walkPath(ctx, p, opts, fn); err != nil {
			return err
		}
	}
	return nil
}

func walkPath(ctx context.Context, p string, opts Options, fn func(*Document) error) error {
	if p == Stdin {
		in := opts.Stdin
		if in == nil {
			in = os.Stdin
		}
		return ReadContext(ctx, "<stdin>", in, opts, fn)
	}
	st, err := os.Stat(p)
	if err != nil {
		return &Error{File: p, Err: errors.Unwrap(err)}
	}
	if !st.IsDir() {
		return readFile(ctx, p, opts, fn)
	}
	if IsKustomization(p) {
		return KustomizeContext(ctx, p, opts, fn)
	}
	files, kustomizations, err := Sources(p)
	if err != nil {
		return err
	}
	for _, src := range append(files, kustomizations...) {
		if err := ReadSource(ctx, src, opts, fn); err != nil {
			return err
		}
	}
	return nil
}

// ReadSource reads one entry of Sources: a manifest file, or a directory
// kustomize renders.
func ReadSource(ctx context.Context, src string, opts Options, fn func(*Document) error) error {
	st, err := os.Stat(src)
	if err != nil {
		return &Error{File: src, Err: errors.Unwrap(err)}
	}
	if st.IsDir() {
		return KustomizeContext(ctx, src, opts, fn)
	}
	// A checkout may hold a named pipe or a link to a device under a
	// manifest's name: opening a pipe blocks until someone writes.
	if !st.Mode().IsRegular() {
		return &Error{File: src, Err: fmt.Errorf("not a regular file (%s) in directory %s", st.Mode().Type(), filepath.Dir(src))}
	}
	return readFile(ctx, src, opts, fn)
}

// Sources lists what WalkContext reads under dir, which holds no
// kustomization itself: its manifest files in lexical order and the
// subdirectories that kustomize renders, so a caller can read each one on
// its own and report every problem, not only the first.
func Sources(dir string) (files, kustomizations []string, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if path != dir && IsKustomization(path) {
				kustomizations = append(kustomizations, path)
				return filepath.SkipDir
			}
			return nil
		}
		if hasManifestExt(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, nil, &Error{File: dir, Err: err}
	}
	sort.Strings(files)
	return files, kustomizations, nil
}

func hasManifestExt(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(ctx context.Context, p string, opts Options, fn func(*Document) error) error {
	f, err := os.Open(p)
	if err != nil {
		return &Error{File: p, Err: errors.Unwrap(err)}
	}
	defer f.Close()
	return ReadContext(ctx, p, f, opts, fn)
}

// Read is ReadContext without cancellation, with the default options.
func Read(name string, r io.Reader, fn func(*Document) error) error {
	return ReadContext(context.Background(), name, r, Options{}, fn)
}

// ReadContext splits r into YAML (or JSON) documents and calls fn for each
// object. Documents are split where YAML splits them: a line starting with
// "---" (which may carry the document's first node, as in "--- {a: b}" or
// "--- !!map") or with "...". A document larger than opts' limit is an
// error, raised before more than the limit is held in memory.
func ReadContext(ctx context.Context, name string, r io.Reader, opts Options, fn func(*Document) error) error {
	in, stop := interruptible(ctx, r)
	defer stop()
	index := 0
	return split(name, in, opts.limit(), func(start int, raw []byte) error {
		v, err := decodeValue(start, raw)
		if err != nil {
			return &Error{File: name, Line: start, Err: fmt.Errorf("malformed document %d: %s", index+1, err)}
		}
		idx := index
		index++
		if v == nil {
			return nil
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return &Error{File: name, Line: start, Err: fmt.Errorf("document %d is a %s, not an object", idx+1, typeName(v))}
		}
		return emit(&Document{File: name, Line: start, Index: idx, Object: obj}, fn)
	})
}

// split calls fn with each document of r that holds more than blank lines
// and comments, and the 1-based line it starts on. raw is only valid
// during the call.
func split(name string, r io.Reader, limit int64, fn func(start int, raw []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	line, start := 0, 1
	// content: buf holds more than comments; directives: buf holds only
	// %-directives (and comments), which belong to the next "---".
	content, directives := false, false
	flush := func() error {
		defer func() { buf, content, directives = buf[:0], false, false }()
		if !content {
			if directives {
				return &Error{File: name, Line: start, Err: errors.New("directives without a document: a %-line must be followed by ---")}
			}
			return nil
		}
		return fn(start, buf)
	}
	for {
		lineStart := len(buf)
		var err error
		buf, err = readLine(br, buf, limit)
		if errors.Is(err, ErrDocumentTooLarge) {
			// start is the line being read when buf holds nothing else.
			return &Error{File: name, Line: start, Err: fmt.Errorf("%w (%s)", err, byteSize(limit))}
		}
		text := buf[lineStart:]
		if len(text) > 0 {
			line++
			if at := strayMarker(text); at >= 0 {
				return &Error{File: name, Line: line, Err: fmt.Errorf("document marker %q after a line break other than \\n (CR, NEL, LS or PS) at byte %d: use \\n line breaks", text[at:at+3], at)}
			}
			rest, marker := markerLine(text)
			switch {
			case marker == "---" && directives:
				// The directives' document starts here.
				content = content || !isBlankLine(rest)
				directives = false
			case marker == "---":
				buf = buf[:lineStart]
				if ferr := flush(); ferr != nil {
					return ferr
				}
				if isBlankLine(rest) {
					start = line + 1
				} else {
					// The document's first node sits on the marker line;
					// the YAML parser reads "--- " itself.
					buf = append(buf, text...)
					start, content = line, true
				}
			case marker == "...":
				if !isBlankLine(rest) {
					return &Error{File: name, Line: line, Err: fmt.Errorf("content after the document end marker: %q", bytes.TrimSpace(text))}
				}
				buf = buf[:lineStart]
				if ferr := flush(); ferr != nil {
					return ferr
				}
				start = line + 1
			case lineStart == 0 && text[0] == '%':
				directives = true
			case lineStart == 0 && isBlankLine(text):
				buf = buf[:lineStart]
				start = line + 1
			case !isBlankLine(text):
				content = true
			}
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return &Error{File: name, Line: max(line, 1), Err: err}
		}
	}
}

// readLine appends the next line of br (with its line break) to buf,
// failing with ErrDocumentTooLarge as soon as the document would pass
// limit. A marker line ends the document before it, so it counts only
// towards the next one.
func readLine(br *bufio.Reader, buf []byte, limit int64) ([]byte, error) {
	base := int64(len(buf))
	first := true
	for {
		chunk, err := br.ReadSlice('\n')
		if first {
			if _, m := markerLine(chunk); m != "" {
				base = 0
			}
			first = false
		}
		if base+int64(len(chunk)) > limit {
			return buf, ErrDocumentTooLarge
		}
		buf = append(buf, chunk...)
		base += int64(len(chunk))
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// markerLine reports whether text starts with a document marker ("---" or
// "...") followed by white space or the line's end, as YAML defines one,
// and returns what follows it.
func markerLine(text []byte) (rest []byte, marker string) {
	if len(text) < 3 {
		return nil, ""
	}
	m := string(text[:3])
	if m != "---" && m != "..." {
		return nil, ""
	}
	if len(text) > 3 && !isWhite(text[3]) {
		return nil, ""
	}
	return text[3:], m
}

func isWhite(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// strayMarker finds a document marker after a line break that is not \n:
// the YAML parser starts a new document there, which the line splitter
// would not see, so the rest of the document would be dropped.
func strayMarker(text []byte) int {
	for i := otherBreak(text, 0); i >= 0; i = otherBreak(text, i) {
		if _, m := markerLine(text[i:]); m != "" {
			return i
		}
	}
	return -1
}

// otherBreak returns the index just after the first line break at or
// after from that is not \n (nor the \r of \r\n): a lone CR, NEL, LS
// or PS, which the YAML parser takes as line breaks; -1 when there is none.
func otherBreak(text []byte, from int) int {
	if bytes.IndexByte(text[from:], '\r') < 0 && bytes.IndexByte(text[from:], 0xc2) < 0 && bytes.IndexByte(text[from:], 0xe2) < 0 {
		return -1
	}
	for i := from; i < len(text); i++ {
		switch {
		case text[i] == '\r' && (i+1 == len(text) || text[i+1] != '\n'):
			return i + 1
		case text[i] == 0xc2 && i+1 < len(text) && text[i+1] == 0x85:
			return i + 2
		case text[i] == 0xe2 && i+2 < len(text) && text[i+1] == 0x80 && (text[i+2] == 0xa8 || text[i+2] == 0xa9):
			return i + 3
		}
	}
	return -1
}

// isBlankLine reports whether b holds only white space or a comment, as
// YAML sees them: other Unicode spaces are content, and so is whatever
// follows a CR, NEL, LS or PS, which end a comment.
func isBlankLine(b []byte) bool {
	t := bytes.Trim(b, " \t\r\n")
	return len(t) == 0 || (t[0] == '#' && otherBreak(t, 0) < 0)
}

func byteSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// looksLikeJSON tells a JSON object from a YAML flow mapping ({a: b}),
// which goes to the YAML parser: JSON's first key is quoted.
func looksLikeJSON(b []byte) bool {
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	rest := bytes.TrimLeft(b[1:], " \t\r\n")
	return len(rest) > 0 && (rest[0] == '"' || rest[0] == '}')
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// decodeValue decodes one document; start is its line in the file.
func decodeValue(start int, raw []byte) (any, error) {
	trimmed := bytes.TrimSpace(raw)
	if looksLikeJSON(trimmed) {
		var v any
		if err := utiljson.Unmarshal(trimmed, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
	v, err := decodeYAML(raw)
	if err != nil {
		// Report the YAML parser's line relative to the file, not the document.
		return nil, errors.New(yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
			n, _ := strconv.Atoi(m[5:])
			return fmt.Sprintf("line %d", n+start-1)
		}))
	}
	return v, nil
}

// emit unpacks List objects into their items.
func emit(d *Document, fn func(*Document) error) error {
	if items, ok := d.Object["items"].([]any); ok && isList(d) {
		for i, it := range items {
			o, ok := it.(map[string]any)
			if !ok {
				return &Error{File: d.File, Line: d.Line, Err: fmt.Errorf("items[%d] is a %s, not an object", i, typeName(it))}
			}
			if err := fn(&Document{File: d.File, Line: d.Line, Index: d.Index, Object: o}); err != nil {
				return err
			}
		}
		return nil
	}
	return fn(d)
}

func isList(d *Document) bool {
	k := d.Kind()
	return k == "List" || (strings.HasSuffix(k, "List") && d.APIVersion() != "")
}

func typeName(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}

// CheckObject returns an error unless the document has apiVersion, kind and
// metadata.name (or metadata.generateName).
func CheckObject(d *Document) error {
	var missing []string
	if d.APIVersion() == "" {
		missing = append(missing, "apiVersion")
	}
	if d.Kind() == "" {
		missing = append(missing, "kind")
	}
	if d.Name() == "" && metaString(d.Object, "generateName") == "" {
		missing = append(missing, "metadata.name")
	}
	if len(missing) > 0 {
		return &Error{File: d.File, Line: d.Line, Err: fmt.Errorf("document %d is not a Kubernetes object: missing %s", d.Index+1, strings.Join(missing, ", "))}
	}
	return nil
}
