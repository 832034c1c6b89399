package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/internal/up"
)

// TestUpDown runs the README's `bouncer up` end to end on a second,
// independent control plane: the starter policies are enforced; kill -9 of
// the bouncer serve child or of etcd is repaired by the supervisor without
// losing the cluster's data (#11 defect 11); down then up keeps the data;
// down --purge removes it and no process is left behind.
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
	t.Cleanup(func() {
		_ = exec.Command(bouncerBin, "down", "--purge", "--dir", dir).Run()
		if t.Failed() {
			for _, log := range []string{"bouncer-up.log", "bouncer-serve.log"} {
				t.Logf("%s tail:\n%s", log, tail(filepath.Join(dir, log), 40))
			}
		}
	})

	out := run("up")
	s := readyState(t, dir)
	if !strings.Contains(out, s.Kubeconfig) || !strings.Contains(out, "kubectl run") {
		t.Fatalf("up does not print the kubeconfig and commands to try:\n%s", out)
	}
	if !strings.Contains(out, "bouncer down --dir "+dir) {
		t.Errorf("up --dir does not print the matching down command:\n%s", out)
	}
	kubectlUp := func(args ...string) (string, error) {
		b, err := exec.Command(bins.Kubectl, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...).CombinedOutput()
		return string(b), err
	}
	refusesLatest := func() {
		t.Helper()
		got, err := kubectlUp("run", "web", "--image=nginx:latest")
		if err == nil || !strings.Contains(got, "disallowed") {
			t.Fatalf("nginx:latest must be refused by the starter policies: %v\n%s", err, got)
		}
	}
	refusesLatest()
	got, err := kubectlUp("run", "web", "--image=nginx:1.27.3")
	if err == nil || !strings.Contains(strings.ToUpper(got), "NET_RAW") {
		t.Fatalf("a pod keeping NET_RAW must be refused: %v\n%s", err, got)
	}
	if got, err := kubectlUp("create", "configmap", "kept", "--from-literal=k=v"); err != nil {
		t.Fatalf("creating a ConfigMap: %v\n%s", err, got)
	}
	holdsKept := func(when string) {
		t.Helper()
		got, err := kubectlUp("get", "configmap", "kept", "-o", "jsonpath={.data.k}")
		if err != nil || got != "v" {
			t.Fatalf("%s: the ConfigMap created earlier is gone: %v\n%s", when, err, got)
		}
	}
	if again := run("up"); !strings.Contains(again, "already running") {
		t.Fatalf("second up must report the running instance:\n%s", again)
	}

	// kill -9 of Bouncer: the supervisor starts it again; the control plane
	// is untouched.
	before := pids(s)
	for _, name := range []string{up.ServeComponent, controlplane.Etcd, controlplane.APIServer, controlplane.ControllerManager} {
		// kill(0) would signal this test's own process group.
		if before[name] <= 0 {
			t.Fatalf("state.json names no pid for %s: %+v", name, s.Components)
		}
	}
	killed := before[up.ServeComponent]
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s = waitRestarted(t, dir, up.ServeComponent, 1)
	after := pids(s)
	if after[up.ServeComponent] == killed || !processAlive(after[up.ServeComponent]) {
		t.Fatalf("bouncer serve not running again: killed %d, state %+v", killed, s.Components)
	}
	for _, name := range []string{controlplane.Etcd, controlplane.APIServer, controlplane.ControllerManager} {
		if after[name] != before[name] || !processAlive(after[name]) {
			t.Errorf("%s: pid %d before the kill, %d after (alive %v); killing Bouncer must not touch it",
				name, before[name], after[name], processAlive(after[name]))
		}
	}
	if !processAlive(s.PID) {
		t.Fatalf("the supervisor (pid %d) died with its child", s.PID)
	}
	refusesLatest()
	holdsKept("after kill -9 of bouncer serve")

	// kill -9 of etcd: restarted on the same data.
	if err := syscall.Kill(after[controlplane.Etcd], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s = waitRestarted(t, dir, controlplane.Etcd, 1)
	eventually(t, 60*time.Second, func() error {
		got, err := kubectlUp("get", "configmap", "kept", "-o", "jsonpath={.data.k}")
		if err != nil || got != "v" {
			return fmt.Errorf("%v: %s", err, got)
		}
		return nil
	})
	refusesLatest()

	// down keeps the data; the next up starts on it.
	pid := s.PID
	out = run("down")
	waitGone(t, pid)
	if _, err := os.Stat(filepath.Join(dir, "cluster", "etcd")); err != nil {
		t.Fatalf("down removed the cluster's data: %v\n%s", err, out)
	}
	run("up")
	s = readyState(t, dir)
	holdsKept("after down and up")
	refusesLatest()

	// down --purge removes it.
	pid = s.PID
	run("down", "--purge")
	waitGone(t, pid)
	if _, err := os.Stat(filepath.Join(dir, "cluster")); !os.IsNotExist(err) {
		t.Fatalf("down --purge left the cluster's data (stat: %v)", err)
	}
	if left := processesUsing(dir); len(left) > 0 {
		t.Fatalf("processes left behind: %v", left)
	}
}

func readyState(t *testing.T, dir string) *up.State {
	t.Helper()
	s, err := up.ReadState(dir)
	if err != nil || s == nil || !s.Ready || !up.Running(dir) {
		t.Fatalf("no ready, running state after up: %v %+v", err, s)
	}
	return s
}

func pids(s *up.State) map[string]int {
	m := map[string]int{}
	for _, c := range s.Components {
		m[c.Name] = c.PID
	}
	return m
}

// waitRestarted waits until state.json shows name restarted n times, up,
// and the whole instance ready again.
func waitRestarted(t *testing.T, dir, name string, n int) *up.State {
	t.Helper()
	var s *up.State
	eventually(t, 3*time.Minute, func() error {
		var err error
		if s, err = up.ReadState(dir); err != nil || s == nil {
			return fmt.Errorf("reading state: %v", err)
		}
		for _, c := range s.Components {
			if c.Name == name && c.Restarts == n && c.Up && s.Ready {
				if c.LastError == "" {
					t.Errorf("%s restarted but its last error is not recorded", name)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not restarted %d times: ready %v, %+v", name, n, s.Ready, s.Components)
	})
	return s
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && processAlive(pid) {
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Fatalf("daemon %d still running after down", pid)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
