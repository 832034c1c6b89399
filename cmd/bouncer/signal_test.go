package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/cli"
)

// runSignalled runs the bouncer command line in this process with stdin on
// a real pipe that stays open (as in sleep 60 | bouncer test -), writes
// input to it, sends this process sig, and returns the exit code, stdout
// and stderr. With before, the command starts once the signal was handled.
func runSignalled(t *testing.T, args []string, input string, sig syscall.Signal, before bool) (int, string, string) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	oldIn, oldOut, oldErr := os.Stdin, os.Stdout, os.Stderr
	os.Stdin, os.Stdout, os.Stderr = pr, stdout, stderr
	defer func() { os.Stdin, os.Stdout, os.Stderr = oldIn, oldOut, oldErr }()

	ctx, stop := withSignals(t.Context())
	defer stop()
	if input != "" {
		if _, err := pw.WriteString(input); err != nil {
			t.Fatal(err)
		}
	}
	// The handler is installed: the signal cancels ctx instead of ending
	// the test binary, whenever the command is in its run.
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
	if before {
		<-ctx.Done()
	}
	code := run(ctx, args)
	out, _ := os.ReadFile(stdout.Name())
	errs, _ := os.ReadFile(stderr.Name())
	return code, string(out), string(errs)
}

// TestSignalStopsTest: SIGINT and SIGTERM stop bouncer test reading a pipe
// that never ends with 130 and 143 and a message; before, an interrupted
// run exited 0 with the report of what it had read (#12).
func TestSignalStopsTest(t *testing.T) {
	pods, err := os.ReadFile("../../pkg/cli/testdata/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policies := "../../pkg/cli/testdata/policies"
	for _, tc := range []struct {
		name  string
		input string
		sig   syscall.Signal
		code  int
	}{
		{"SIGTERM with objects read", string(pods) + "\n---\n", syscall.SIGTERM, 143},
		{"SIGINT waiting for input", "", syscall.SIGINT, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runSignalled(t, []string{"test", "--policy", policies, "-"}, tc.input, tc.sig, false)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			want := "error: " + cli.Interrupted{Signal: tc.sig}.Error() + ": not every object was reviewed; the report is incomplete\n"
			if stderr != want {
				t.Errorf("stderr %q, want %q", stderr, want)
			}
			// The report is still a whole document, marked incomplete
			// with the reason.
			if !strings.Contains(stdout, "incomplete: ") || !strings.Contains(stdout, "interrupted") {
				t.Errorf("the report must be closed as incomplete, saying why:\n%s", stdout)
			}
		})
	}
}

// TestSignalStopsVerify: verify stopped by a signal runs no further case
// and exits with the signal's status; before, it ran on to the end and
// reported PASS.
func TestSignalStopsVerify(t *testing.T) {
	code, stdout, stderr := runSignalled(t, []string{"verify", "../../pkg/cli/testdata/suite/good"}, "", syscall.SIGTERM, true)
	if code != 143 || stderr != "error: interrupted by SIGTERM: not every case ran\n" || strings.Contains(stdout, "PASS") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
