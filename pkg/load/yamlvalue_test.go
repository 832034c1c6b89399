package load

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// repoYAML returns every YAML file of the repository's policy library,
// deployment manifests and test data.
func repoYAML(t testing.TB) map[string][]byte {
	t.Helper()
	root := filepath.Join("..", "..")
	files := map[string][]byte{}
	for _, dir := range []string{"library", "deploy", "test/e2e/testdata", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || dir == "pkg" && !strings.Contains(filepath.ToSlash(p), "/testdata/") {
				return nil
			}
			if ext := strings.ToLower(filepath.Ext(p)); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[p] = b
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 100 {
		t.Fatalf("only %d YAML files found in the repository", len(files))
	}
	return files
}

// trickyYAML are documents where YAML and JSON disagree on numbers, keys,
// strings and structure.
var trickyYAML = []string{
	// Numbers of every form.
	"a: 0\n", "a: -0\n", "a: +1\n", "a: 007\n", "a: 0o17\n", "a: 0x1F\n", "a: -0x1F\n", "a: 0b101\n", "a: -0b101\n",
	"a: 1_000\n", "a: 1.0\n", "a: 1.\n", "a: .5\n", "a: -.5\n", "a: 0.0\n", "a: -0.0\n", "a: 1e3\n", "a: 1E3\n",
	"a: 1e+3\n", "a: 1.5e3\n", "a: 1e20\n", "a: 1e21\n", "a: -1e21\n", "a: 1e+21\n", "a: 9.3e18\n", "a: 1e-6\n",
	"a: 1e-7\n", "a: 0.1\n", "a: 4611686018427387904.0\n", "a: 9007199254740993.0\n", "a: 9223372036854775807\n",
	"a: 9223372036854775808\n", "a: -9223372036854775808\n", "a: -9223372036854775809\n", "a: 18446744073709551615\n",
	"a: 18446744073709551616\n", "a: 123456789012345678901234567890\n", "a: 1e400\n", "a: -1e400\n", "a: .inf\n",
	"a: -.Inf\n", "a: +.inf\n", "a: .NaN\n", "a: [.nan]\n", "a: 190:20:30\n", "a: 0x_1\n", "a: 1__0\n",
	"a: !!float 1\n", "a: !!float 3.5\n", "a: !!float '7'\n", "a: !!int 1.0\n", "a: !!int '12'\n", "a: !!str 1\n",
	"a: !!float 18446744073709551615\n", "a: 2e308\n", "a: 5e-324\n", "a: 1.7976931348623157e308\n",
	"42\n", "1.0\n", "-0.0\n", ".inf\n", "1e400\n", "[1, 1.0, 1.5, 1e21, 18446744073709551615]\n",
	// Keys of every type.
	"1: a\n", "-1: a\n", "1.5: a\n", "1.0: a\n", "0.1: a\n", "3.14159265358979: a\n", "1e20: a\n", "1e21: a\n",
	"1e-7: a\n", ".inf: a\n", "-.inf: a\n", ".nan: a\n", "true: a\n", "yes: a\n", "on: a\n", "off: a\n", "y: a\n",
	"~: a\n", "null: a\n", "? \n: a\n", "\"\": a\n", "18446744073709551615: a\n", "9223372036854775807: a\n",
	"0x10: a\n", "2001-12-14: a\n", "[a]: b\n", "{a: b}: c\n", "? [a, b]\n: c\n", "? !!binary /w==\n: a\n",
	"1: a\n\"1\": b\n", "\"1\": b\n1: a\n", "1.0: a\n1: b\n", "true: a\n\"true\": b\n", ".nan: a\n.nan: b\n",
	"yes: a\ntrue: b\n", "a: 1\na: 2\n", "{a: 1, a: 2}\n",
	// Anchors, aliases, merge keys.
	"a: &x {b: 1}\nc: *x\n", "a: &x [1, 2]\nb: [*x, *x]\n", "a: &x 1\nb: *x\n",
	"base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n", "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
	"<<: {a: 1}\n", "a: {<<: [1]}\n", "a: &x [*x]\n", "a: *nope\n", "a: &x {1: 2}\nb: {<<: *x, 1.0: 3}\n",
	"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
	// Strings: multi-line, escapes, invalid UTF-8.
	"a: |\n  x\n  y\n", "a: >\n  x\n  y\n\n  z\n", "a: |-\n  x\n", "a: >+\n  x\n\n", "a: 'x\n\n  y'\n",
	"a: \"x\\\n  y\"\n", "a: \"\\x41\\u00e9\\U0001F600\\0\\a\\e\\N\\_\\L\\P\"\n", "a: \"\\xff\"\n", "a: \"\\ud800\"\n",
	"a: !!binary /w==\n", "a: !!binary aGVsbG8=\n", "a: !!binary /w==\nb: [!!binary gICA]\n", "a: \xff\n", "\xef\xbb\xbfa: 1\n",
	"a: \u2028\n", "a: '<>&'\n", "a: \"\\t\\\"\"\n", "a: \"\\uFFFD\"\n",
	// Nulls, booleans, timestamps.
	"a: ~\n", "a: null\n", "a: Null\n", "a: NULL\n", "a:\n", "a: [~, null, ]\n", "~\n", "null\n",
	"a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\ng: True\nh: TRUE\n", "a: !!bool yes\n", "a: !!null ''\n",
	"a: 2001-12-14t21:59:43.10-05:00\n", "a: 2002-12-14\n", "a: !!timestamp 2001-12-14\n", "a: !!timestamp x\n",
	"a: 2001-12-14 21:59:43.10 -5\n", "[2001-12-14, '2001-12-14']\n",
	// Structure.
	"[]\n", "{}\n", "a: []\nb: {}\n", "- - - []\n", "a: [1, [2, [3, {b: [4]}]]]\n", "!!set {a, b}\n", "!!omap [a: 1]\n",
	"a: !foo bar\n", "a: !!map {}\n", "a: !!seq x\n", "- a\n- b: c\n  d: e\n",
	// Errors.
	"a: b: c\n", "a:\n\t- b\n", "[a, b\n", "a: 'x\n", "- a\nb: c\n", "a: &x\n", "{a: 1}}\n", "\"a\": [1,\n",
}

// deep nests n flow sequences under one key.
func deep(n int) string {
	return "a: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"
}

// sameDecoding decodes raw both ways and fails unless they agree; it
// reports whether the direct decoding handled raw itself.
func sameDecoding(t *testing.T, raw []byte) bool {
	t.Helper()
	got, direct, gotErr := decodeYAMLDirect(raw)
	if !direct {
		return false // the round trip itself decodes it
	}
	want, wantErr := roundTripYAML(raw)
	switch {
	case gotErr != nil || wantErr != nil:
		if gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error() {
			t.Fatalf("%q: direct error %v, round trip error %v", raw, gotErr, wantErr)
		}
	case !reflect.DeepEqual(got, want):
		t.Fatalf("%q:\ndirect     %#v\nround trip %#v", raw, got, want)
	}
	return true
}

// FuzzDecodeValueMatchesRoundTrip: decoding a YAML document directly gives
// exactly what the JSON round trip gives, the same values of the same types
// or the same error, or takes the round trip.
func FuzzDecodeValueMatchesRoundTrip(f *testing.F) {
	for _, b := range repoYAML(f) {
		f.Add(b)
	}
	for _, s := range trickyYAML {
		f.Add([]byte(s))
	}
	f.Add([]byte(deep(100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecoding(t, data)
		// And every document of data, as Read decodes them.
		_ = split("fuzz.yaml", bytes.NewReader(data), DefaultMaxDocumentBytes, func(start int, raw []byte) error {
			if !looksLikeJSON(bytes.TrimSpace(raw)) {
				sameDecoding(t, raw)
			}
			return nil
		})
	})
}

func TestDecodeYAMLTricky(t *testing.T) {
	// The round trip is not needed for these: the direct decoding must
	// handle them itself (and agree with it).
	direct := []string{
		"a: 1.0\n", "a: -0.0\n", "a: 1e20\n", "a: 1e21\n", "a: 18446744073709551615\n", "a: 4611686018427387904.0\n",
		"1.0: a\n", "0.1: a\n", "true: a\n", ".nan: a\n", "a: !!binary /w==\n", "? !!binary /w==\n: a\n",
		"base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n", "a: 2002-12-14\n", "[]\n", "a: 1e400\n", "a: 1\na: 2\n", deep(9999), "a: b: c\n",
	}
	// The round trip fails on these, or its result depends on map order.
	roundTrip := []string{
		"a: .nan\n", "a: .inf\n", "~: a\n", "18446744073709551615: a\n", "1: a\n\"1\": b\n",
		"1.0: a\n1: b\n", ".nan: a\n.nan: b\n", deep(10000),
	}
	for _, s := range trickyYAML {
		sameDecoding(t, []byte(s))
	}
	for _, s := range direct {
		if !sameDecoding(t, []byte(s)) {
			t.Errorf("%.40q: took the round trip", s)
		}
	}
	for _, s := range roundTrip {
		if sameDecoding(t, []byte(s)) {
			t.Errorf("%.40q: decoded directly", s)
		}
	}
	// A key too deep for JSON fails the same way through decodeYAML.
	if _, err := decodeYAML([]byte(deep(10000))); err == nil || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Errorf("depth 10,001: error %v", err)
	}
	// What today's decoding gives, spelled out.
	for in, want := range map[string]any{
		"a: 1.0\n":                   map[string]any{"a": int64(1)},
		"a: 1e21\n":                  map[string]any{"a": 1e21},
		"a: 1e20\n":                  map[string]any{"a": 1e20},
		"a: 18446744073709551615\n":  map[string]any{"a": 18446744073709551615.0},
		"a: 2001-12-14\n":            map[string]any{"a": "2001-12-14"},
		"1.0: a\n0.1: b\nyes: c\n":   map[string]any{"1": "a", "0.1": "b", "true": "c"},
		"a: !!binary /w==\n":         map[string]any{"a": "\ufffd"},
		"a: 9223372036854775808\n":   map[string]any{"a": 9223372036854775808.0},
		"a: 9223372036854775807\n":   map[string]any{"a": int64(9223372036854775807)},
		"a: 4611686018427387904.0\n": map[string]any{"a": int64(4611686018427388000)},
		"a: [yes, on, n, ~, '']\n":   map[string]any{"a": []any{true, true, false, nil, ""}},
		"2001-12-14: a\n":            map[string]any{"2001-12-14": "a"},
	} {
		got, err := decodeYAML([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %#v, %v; want %#v", in, got, err, want)
		}
	}
}

// TestDecodeYAMLRepository: every document in the repository decodes as
// before, and directly unless the round trip refuses it.
func TestDecodeYAMLRepository(t *testing.T) {
	docs, fallbacks := 0, 0
	for p, b := range repoYAML(t) {
		_ = split(p, bytes.NewReader(b), DefaultMaxDocumentBytes, func(start int, raw []byte) error {
			if looksLikeJSON(bytes.TrimSpace(raw)) {
				return nil
			}
			docs++
			if !sameDecoding(t, raw) {
				fallbacks++
				if _, err := roundTripYAML(raw); err == nil {
					t.Errorf("%s:%d: took the round trip, which decodes it", p, start)
				}
			}
			return nil
		})
	}
	t.Logf("%d documents, %d through the round trip", docs, fallbacks)
}
