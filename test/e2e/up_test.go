package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/up"
)

// TestUpDown runs the README's "run" command end to end: bouncer up starts
// a second, independent control plane with Bouncer enforcing the starter
// policies, a second up reports the running instance, and down leaves no
// process behind.
func TestUpDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "up")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bouncerBin, append(args, "--dir", dir)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bouncer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command(bouncerBin, "down", "--dir", dir).Run() })

	out := run("up")
	s, err := up.ReadState(dir)
	if err != nil || s == nil || !s.Ready {
		t.Fatalf("no ready state after up: %v %+v\n%s", err, s, out)
	}
	if !strings.Contains(out, s.Kubeconfig) || !strings.Contains(out, "kubectl run") {
		t.Fatalf("up does not print the kubeconfig and commands to try:\n%s", out)
	}
	kubectlUp := func(args ...string) (string, error) {
		b, err := exec.Command(bins.Kubectl, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...).CombinedOutput()
		return string(b), err
	}
	got, err := kubectlUp("run", "web", "--image=nginx:latest")
	if err == nil || !strings.Contains(got, "disallowed") {
		t.Fatalf("nginx:latest must be refused by the starter policies: %v\n%s", err, got)
	}
	got, err = kubectlUp("run", "web", "--image=nginx:1.27.3")
	if err == nil || !strings.Contains(strings.ToUpper(got), "NET_RAW") {
		t.Fatalf("a pod keeping NET_RAW must be refused: %v\n%s", err, got)
	}
	if again := run("up"); !strings.Contains(again, "already running") {
		t.Fatalf("second up must report the running instance:\n%s", again)
	}

	pid := s.PID
	run("down")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && processAlive(pid) {
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Fatalf("daemon %d still running after down", pid)
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Fatalf("processes left behind: %v", left)
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// A zombie has exited; only its parent's wait is missing.
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

// processesUsing lists live processes whose command line mentions dir.
func processesUsing(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		if n := atoi(pid); processAlive(n) {
			out = append(out, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
