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
	"sigs.k8s.io/yaml"
)

// MaxDocumentBytes bounds one YAML/JSON document; larger ones are rejected
// with an error instead of exhausting memory.
const MaxDocumentBytes = 32 << 20

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
}

// Walk reads every document under paths in order and calls fn for each.
// Directories are walked recursively in lexical order, reading .yaml, .yml
// and .json files; a directory holding a kustomization file is rendered
// with kustomize instead. fn's error stops the walk and is returned as is.
func Walk(paths []string, opts Options, fn func(*Document) error) error {
	for _, p := range paths {
		if err := walkPath(p, opts, fn); err != nil {
			return err
		}
	}
	return nil
}

func walkPath(p string, opts Options, fn func(*Document) error) error {
	if p == Stdin {
		in := opts.Stdin
		if in == nil {
			in = os.Stdin
		}
		return Read("<stdin>", in, fn)
	}
	st, err := os.Stat(p)
	if err != nil {
		return &Error{File: p, Err: errors.Unwrap(err)}
	}
	if !st.IsDir() {
		return readFile(p, fn)
	}
	if IsKustomization(p) {
		return Kustomize(p, fn)
	}
	var files []string
	var kustomizations []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if path != p && IsKustomization(path) {
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
		return &Error{File: p, Err: err}
	}
	sort.Strings(files)
	for _, f := range files {
		if err := readFile(f, fn); err != nil {
			return err
		}
	}
	for _, k := range kustomizations {
		if err := Kustomize(k, fn); err != nil {
			return err
		}
	}
	return nil
}

func hasManifestExt(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func readFile(p string, fn func(*Document) error) error {
	f, err := os.Open(p)
	if err != nil {
		return &Error{File: p, Err: errors.Unwrap(err)}
	}
	defer f.Close()
	return Read(p, f, fn)
}

// Read splits r into YAML (or JSON) documents and calls fn for each object.
func Read(name string, r io.Reader, fn func(*Document) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf bytes.Buffer
	line, start, index := 0, 1, 0
	flush := func() error {
		defer buf.Reset()
		if isBlank(buf.Bytes()) {
			return nil
		}
		idx := index
		index++
		return decode(name, start, idx, buf.Bytes(), fn)
	}
	for {
		text, err := br.ReadBytes('\n')
		if len(text) > 0 {
			line++
			if isSeparator(text) {
				if ferr := flush(); ferr != nil {
					return ferr
				}
				start = line + 1
			} else {
				if buf.Len()+len(text) > MaxDocumentBytes {
					return &Error{File: name, Line: start, Err: fmt.Errorf("document is larger than %d MiB", MaxDocumentBytes>>20)}
				}
				if buf.Len() == 0 && isBlank(text) {
					start = line + 1
				} else {
					buf.Write(text)
				}
			}
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return &Error{File: name, Line: line, Err: err}
		}
	}
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

// isBlank reports whether b holds only whitespace, comments or a document
// end marker.
func isBlank(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("...")) {
			continue
		}
		return false
	}
	return true
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func decode(name string, start, index int, raw []byte, fn func(*Document) error) error {
	var v any
	trimmed := bytes.TrimSpace(raw)
	var err error
	if len(trimmed) > 0 && trimmed[0] == '{' {
		err = utiljson.Unmarshal(trimmed, &v)
	} else {
		var js []byte
		js, err = yaml.YAMLToJSON(raw)
		if err == nil {
			err = utiljson.Unmarshal(js, &v)
		}
	}
	if err != nil {
		// Report the YAML parser's line relative to the file, not the document.
		msg := yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
			n, _ := strconv.Atoi(m[5:])
			return fmt.Sprintf("line %d", n+start-1)
		})
		return &Error{File: name, Line: start, Err: fmt.Errorf("malformed document %d: %s", index+1, msg)}
	}
	if v == nil {
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return &Error{File: name, Line: start, Err: fmt.Errorf("document %d is a %s, not an object", index+1, typeName(v))}
	}
	return emit(&Document{File: name, Line: start, Index: index, Object: obj}, fn)
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
