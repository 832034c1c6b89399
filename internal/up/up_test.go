package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/proc"
)

// The test binary doubles as a fake `bouncer up --foreground` daemon that
// holds the lock and stays in the building phase, like a first build.
const fakeDaemonEnv = "BOUNCER_UP_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(fakeDaemonEnv) != "" {
		os.Exit(fakeDaemon(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeDaemon(args []string) int {
	if len(args) != 4 || args[0] != "up" || args[1] != "--foreground" || args[2] != "--dir" {
		fmt.Fprintln(os.Stderr, "fake daemon: unexpected arguments", args)
		return 2
	}
	dir := args[3]
	lock, err := lockDaemon(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer lock.Close()
	if err := writeState(dir, &State{PID: os.Getpid(), Phase: PhaseBuilding, Started: time.Now()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("  building kube-apiserver (2 of 4)")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	return 0
}

// A wait that ends before the daemon is ready must leave the daemon (and
// its build) running and say how to wait again or stop it, naming --dir;
// before the fix the client killed the build it had started (#12 item 12).
func TestUpTimeoutLeavesTheDaemonRunning(t *testing.T) {
	t.Setenv(fakeDaemonEnv, "1")
	dir := filepath.Join(t.TempDir(), "my up")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(dir, true, io.Discard, 10*time.Second) })
	var out strings.Builder
	_, err = Up(t.Context(), Options{Self: self, Dir: dir, Timeout: 2 * time.Second}, &out)
	var nr *NotReadyError
	if !errors.As(err, &nr) {
		t.Fatalf("Up = %v, want a NotReadyError\n%s", err, out.String())
	}
	if !Running(dir) {
		t.Fatal("the daemon was stopped when the wait timed out")
	}
	msg := err.Error()
	for _, want := range []string{"bouncer down --dir '" + dir + "'", "bouncer up --dir '" + dir + "'", "still building", "keeps going"} {
		if !strings.Contains(msg, want) {
			t.Errorf("timeout message lacks %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(out.String(), "building kube-apiserver (2 of 4)") {
		t.Errorf("build progress not shown:\n%s", out.String())
	}

	// The next up attaches to the running daemon instead of starting one.
	out.Reset()
	_, err = Up(t.Context(), Options{Self: "/nonexistent/bouncer", Dir: dir, Timeout: time.Second}, &out)
	if !errors.As(err, &nr) || nr.PID == 0 {
		t.Fatalf("second Up = %v, want a NotReadyError naming the running daemon\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "already starting") {
		t.Errorf("second Up does not say it waits for the running daemon:\n%s", out.String())
	}

	out.Reset()
	if err := Down(dir, false, &out, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if Running(dir) {
		t.Fatal("daemon still running after Down")
	}
	if _, err := os.Stat(filepath.Join(dir, daemonLog)); err != nil {
		t.Errorf("Down without --purge removed the log: %v", err)
	}
}

func TestDownPurge(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "up")
	if err := os.MkdirAll(filepath.Join(dir, clusterDir, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "notes.txt")
	for _, f := range []string{filepath.Join(dir, kubeconfigOut), filepath.Join(dir, daemonLog), mine} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	if err := Down(dir, false, &out, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, clusterDir, "etcd")); err != nil {
		t.Fatalf("down without --purge removed the data: %v", err)
	}
	if !strings.Contains(out.String(), "bouncer down --purge --dir "+dir) {
		t.Errorf("down does not say how to remove the data:\n%s", out.String())
	}
	if err := Down(dir, true, io.Discard, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{clusterDir, kubeconfigOut, daemonLog} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("purge left %s (stat: %v)", gone, err)
		}
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("purge removed a file it did not write: %v", err)
	}
}

func TestCommand(t *testing.T) {
	t.Setenv("BOUNCER_UP_DIR", "/tmp/default-up")
	for dir, want := range map[string]string{
		"/tmp/default-up":  "bouncer down",
		"/tmp/default-up/": "bouncer down",
		"/srv/up":          "bouncer down --dir /srv/up",
		"/srv/my up":       "bouncer down --dir '/srv/my up'",
		"/srv/it's":        `bouncer down --dir '/srv/it'\''s'`,
	} {
		if got := Command("down", dir); got != want {
			t.Errorf("Command(down, %q) = %q, want %q", dir, got, want)
		}
	}
}

// kill -9 of a supervised child: the supervisor starts it again and the
// state says so (#11 defect 11: nothing restarted anything and state.json
// kept saying ready).
func TestSuperviseRestartsAKilledChild(t *testing.T) {
	dir := t.TempDir()
	lock, err := lockDaemon(dir) // as Foreground does
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	d := &daemon{dir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		state:      &State{PID: os.Getpid(), Phase: PhaseReady, Ready: true},
		backoffMin: 10 * time.Millisecond, backoffMax: 20 * time.Millisecond}
	var cur *proc.Process
	start := func(context.Context) error {
		p, err := proc.Start("sleeper", "/bin/sleep", []string{"600"}, filepath.Join(dir, "sleeper.log"), nil)
		if err != nil {
			return err
		}
		d.mu.Lock()
		cur = p
		d.mu.Unlock()
		return nil
	}
	current := func() *proc.Process { d.mu.Lock(); defer d.mu.Unlock(); return cur }
	if err := start(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.update(func(s *State) { s.Components = []Component{{Name: "sleeper", PID: cur.PID(), Up: true}} })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); d.supervise(ctx, "sleeper", current, start) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = current().Stop()
	})

	first := current()
	if err := syscall.Kill(first.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var s *State
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		s, err = ReadState(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Components) == 1 && s.Components[0].Restarts == 1 && s.Components[0].Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child not restarted; state %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := s.Components[0]
	if c.PID == first.PID() || c.PID != current().PID() || current().Exited() {
		t.Errorf("state pid %d; killed %d, running %d (exited %v)", c.PID, first.PID(), current().PID(), current().Exited())
	}
	if !strings.Contains(c.LastError, "killed") || c.LastExit == nil {
		t.Errorf("last error %q, last exit %v; want the kill recorded", c.LastError, c.LastExit)
	}
	if !s.Ready || s.Phase != PhaseReady {
		t.Errorf("after the restart: ready %v, phase %q", s.Ready, s.Phase)
	}
}

// The product's packages must not depend on the development tooling
// (the package docs promise it).
func TestProductDoesNotImportTooling(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over pkg/...")
	}
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "github.com/bouncer-policy/bouncer/pkg/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, tooling := range []string{"internal/up", "internal/controlplane", "internal/proc", "internal/podgen"} {
			if dep == "github.com/bouncer-policy/bouncer/"+tooling {
				t.Errorf("a package under pkg/ depends on %s", dep)
			}
		}
	}
}

// state.json of a daemon killed with -9 still says ready; ReadState must
// not (#11 defect 11).
func TestReadStateOfADeadDaemon(t *testing.T) {
	dir := t.TempDir()
	if err := writeState(dir, &State{PID: 1 << 22, Phase: PhaseReady, Ready: true,
		Components: []Component{{Name: ServeComponent, Up: true}}}); err != nil {
		t.Fatal(err)
	}
	s, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready || s.Phase != PhaseStopped || s.Components[0].Up {
		t.Errorf("state of a daemon that holds no lock: ready %v, phase %q, %+v", s.Ready, s.Phase, s.Components)
	}
	lock, err := lockDaemon(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if s, err = ReadState(dir); err != nil || !s.Ready || s.Phase != PhaseReady {
		t.Errorf("state while the lock is held: %+v, %v; want it as recorded", s, err)
	}
}
