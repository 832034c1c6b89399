package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runInterrupted starts bouncer test on a pipe, writes first to it, and
// once the command has read it, cancels the run as cmd/bouncer does on sig.
func runInterrupted(t *testing.T, paths []string, o TestOptions, first []byte, sig syscall.Signal) result {
	t.Helper()
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancelCause(t.Context())
	var out, errb bytes.Buffer
	o.Stdin, o.Stdout, o.Stderr, o.Timeout = pr, &out, &errb, 10*time.Second
	done := make(chan int)
	go func() { done <- RunTest(ctx, paths, o) }()
	// An io.Pipe write returns once a reader took every byte.
	if _, err := pw.Write(first); err != nil {
		t.Fatal(err)
	}
	cancel(Interrupted{Signal: sig})
	return result{<-done, out.String(), errb.String()}
}

// TestTestInterrupted: a run stopped by SIGINT or SIGTERM (a CI timeout)
// exits 130 or 143 and says so, without a summary that looks complete;
// before, it exited 0 with the report of the objects read so far (#12).
func TestTestInterrupted(t *testing.T) {
	pods := readFile(t, "testdata/pods.yaml")
	var stream bytes.Buffer
	for _, f := range []string{"testdata/policies/template.yaml", "testdata/policies/constraints.yaml", "testdata/compliant.yaml"} {
		stream.Write(readFile(t, f))
		stream.WriteString("\n---\n")
	}
	for _, tc := range []struct {
		name  string
		paths []string
		o     TestOptions
		first []byte
		sig   syscall.Signal
		code  int
	}{
		{"SIGTERM while objects stream in", []string{"-"}, TestOptions{Policies: []string{policies}}, append(pods, "\n---\n"...), syscall.SIGTERM, ExitTerminated},
		{"SIGINT while objects stream in", []string{"-"}, TestOptions{Policies: []string{policies}}, append(pods, "\n---\n"...), syscall.SIGINT, ExitInterrupted},
		{"SIGINT while waiting for the first byte", []string{"-"}, TestOptions{Policies: []string{policies}}, nil, syscall.SIGINT, ExitInterrupted},
		{"SIGTERM while policies stream in", []string{"-"}, TestOptions{}, stream.Bytes(), syscall.SIGTERM, ExitTerminated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runInterrupted(t, tc.paths, tc.o, tc.first, tc.sig)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			want := "error: " + Interrupted{Signal: tc.sig}.Error() + ": not every object was reviewed; the report is incomplete\n"
			if r.stderr != want {
				t.Errorf("stderr %q, want %q", r.stderr, want)
			}
			// The report is still a whole document, marked incomplete
			// with the reason.
			if !strings.Contains(r.stdout, "incomplete: ") || !strings.Contains(r.stdout, "interrupted") {
				t.Errorf("an interrupted run must close its report as incomplete, saying why:\n%s", r.stdout)
			}
		})
	}
}

// TestTestStoppedOtherwise: a context cancelled without a signal as its
// cause is an input error, not a pass.
func TestTestStoppedOtherwise(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errb bytes.Buffer
	code := RunTest(ctx, []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{policies}, Stdout: &out, Stderr: &errb, Timeout: time.Second})
	if code != ExitInvalid || !strings.HasPrefix(errb.String(), "error: stopped (context canceled)") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestEmptyInput: input with no object to review is an input error unless
// --allow-empty; before, it reported "0 objects" and exited 0 (#12).
func TestEmptyInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	seps := filepath.Join(dir, "separators.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seps, []byte("---\n---\n# nothing\n...\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		paths []string
		stdin string
	}{
		{"empty file", []string{empty}, ""},
		{"file of separators", []string{seps}, ""},
		{"empty stdin", []string{"-"}, ""},
		{"empty directory", []string{t.TempDir()}, ""},
		{"policies only", []string{policies}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := TestOptions{Policies: []string{policies}, Stdin: strings.NewReader(tc.stdin)}
			r := runTestCmd(t, tc.paths, o)
			want := "error: no object to review in " + strings.Join(tc.paths, ", ") + "; --allow-empty accepts that\n"
			if r.code != ExitInvalid || r.stderr != want {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, ExitInvalid, want)
			}
			o.AllowEmpty = true
			o.Stdin = strings.NewReader(tc.stdin)
			r = runTestCmd(t, tc.paths, o)
			if r.code != ExitOK || !strings.Contains(r.stdout, "0 objects reviewed") {
				t.Errorf("--allow-empty: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestRemoteResourcesOffByDefault: bouncer test makes no request for a
// kustomization's remote resource and names the flag that allows it.
func TestRemoteResourcesOffByDefault(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(readFile(t, "testdata/pods.yaml"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- "+srv.URL+"/pods.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTestCmd(t, []string{dir}, TestOptions{Policies: []string{policies}})
	want := "error: " + filepath.Join(dir, "kustomization.yaml") + ": resources: \"" + srv.URL + "/pods.yaml\" is remote, and remote resources are not fetched; --allow-remote-resources fetches them\n"
	if r.code != ExitInvalid || r.stderr != want || hits.Load() != 0 {
		t.Errorf("exit %d, %d requests, stderr %q; want %d, no request, %q", r.code, hits.Load(), r.stderr, ExitInvalid, want)
	}
	r = runTestCmd(t, []string{dir}, TestOptions{Policies: []string{policies}, AllowRemoteResources: true})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "Pod shop/latest: [K8sDisallowedTags/no-latest]") || hits.Load() != 1 {
		t.Errorf("--allow-remote-resources: exit %d, %d requests\n%s%s", r.code, hits.Load(), r.stdout, r.stderr)
	}
}

// TestMaxDocumentSize: the limit applies and the error names the flag.
func TestMaxDocumentSize(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	pod := string(readFile(t, "testdata/pods.yaml")) + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  annotations:\n    note: " + strings.Repeat("x", 8<<10) + "\n"
	if err := os.WriteFile(big, []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTestCmd(t, []string{big}, TestOptions{Policies: []string{policies}, MaxDocumentSize: 8 << 10})
	want := "error: " + big + ":21: document is larger than the document size limit (8 KiB); --max-document-size raises the limit\n"
	if r.code != ExitInvalid || r.stderr != want {
		t.Errorf("exit %d, stderr %q; want %q", r.code, r.stderr, want)
	}
	if r = runTestCmd(t, []string{big}, TestOptions{Policies: []string{policies}, MaxDocumentSize: 9 << 10}); r.code != ExitDenied {
		t.Errorf("limit 9 KiB: exit %d, %s", r.code, r.stderr)
	}
	r = runTestCmd(t, []string{"-"}, TestOptions{Stdin: bytes.NewReader(readFile(t, "testdata/policies/template.yaml")), MaxDocumentSize: 64})
	if r.code != ExitInvalid || !strings.Contains(r.stderr, "<stdin>:1: document is larger than") {
		t.Errorf("stdin, policies in the stream: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"16Mi": 16 << 20, "512Ki": 512 << 10, "20M": 20e6, "1000": 1000} {
		var b ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1Mi", "lots", "1.5"} {
		var b ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
	if b := ByteSize(16 << 20); b.String() != "16Mi" {
		t.Errorf("String() = %q", b.String())
	}
}

// TestVerifyInterrupted: verify stops at once and reports no PASS; before,
// it ran every suite to the end and exited 0 (#12).
func TestVerifyInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(Interrupted{Signal: syscall.SIGTERM})
	var out, errb bytes.Buffer
	code := RunVerify(ctx, []string{"testdata/suite/good"}, VerifyOptions{Stdout: &out, Stderr: &errb, Timeout: time.Second, Verbose: true})
	if code != ExitTerminated || errb.String() != "error: interrupted by SIGTERM: not every case ran\n" {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if strings.Contains(out.String(), "PASS") || strings.Contains(out.String(), "ok   ") {
		t.Errorf("cases ran after the interrupt:\n%s", out.String())
	}
}

// TestVerifyRunMatchesNothing: a --run that selects no case is an error,
// not a PASS of 0 cases (#12).
func TestVerifyRunMatchesNothing(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/good"}, VerifyOptions{Run: "no-such-case"})
	want := "error: --run \"no-such-case\" matches no test or case in testdata/suite/good\n"
	if r.code != ExitInvalid || r.stderr != want || strings.Contains(r.stdout, "PASS") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q", r.code, r.stdout, r.stderr, ExitInvalid, want)
	}
}
