// Package up runs a local control plane with Bouncer enforcing, for trying
// Bouncer on a laptop. `bouncer up` starts a background daemon, waits until
// it is ready and returns; `bouncer down` stops it.
//
// The daemon is a supervisor: etcd, kube-apiserver, kube-controller-manager
// (internal/controlplane) and Bouncer itself (`bouncer serve`, the same
// executable) are its child processes, each restarted with backoff when it
// exits. Everything lives in one state directory: state.json (what runs,
// restarts, last errors), logs, the kubeconfig and the cluster's data,
// which outlives the daemon until `bouncer down --purge`.
//
// This is development tooling: nothing under pkg/ may import it.
package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// State is what the daemon records in state.json.
type State struct {
	PID        int    `json:"pid"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	APIServer  string `json:"apiServer,omitempty"`
	WebhookURL string `json:"webhookURL,omitempty"`
	ProbeURL   string `json:"probeURL,omitempty"`
	// Phase is building, starting, ready, degraded (a child is down and
	// being restarted), failed (the daemon gave up; Error says why) or
	// stopped (no daemon runs).
	Phase string `json:"phase"`
	// Ready is true while every child is up and Bouncer is enforcing.
	Ready bool `json:"ready"`
	// Error is why the daemon failed; empty while it runs.
	Error      string      `json:"error,omitempty"`
	Started    time.Time   `json:"started"`
	Components []Component `json:"components,omitempty"`
}

// Component is one supervised child process.
type Component struct {
	Name string `json:"name"`
	PID  int    `json:"pid,omitempty"`
	Up   bool   `json:"up"`
	// Restarts counts the times the supervisor started it again after it
	// exited.
	Restarts  int        `json:"restarts"`
	LastError string     `json:"lastError,omitempty"`
	LastExit  *time.Time `json:"lastExit,omitempty"`
}

// Phases of State.
const (
	PhaseBuilding = "building"
	PhaseStarting = "starting"
	PhaseReady    = "ready"
	PhaseDegraded = "degraded"
	PhaseFailed   = "failed"
	// PhaseStopped is never written: ReadState reports it when no daemon
	// runs.
	PhaseStopped = "stopped"
)

// Component names besides the control plane's own.
const ServeComponent = "bouncer-serve"

// DefaultDir is where `bouncer up` keeps its state.
func DefaultDir() string {
	if d := os.Getenv("BOUNCER_UP_DIR"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "bouncer", "up")
}

// Files and directories in the state directory. Purge removes exactly
// these, never the directory's other contents (it may be a user's --dir).
const (
	stateFile     = "state.json"
	lockFile      = "daemon.lock"
	daemonLog     = "bouncer-up.log"
	serveLog      = "bouncer-serve.log"
	kubeconfigOut = "kubeconfig"
	clusterDir    = "cluster"
)

func statePath(dir string) string { return filepath.Join(dir, stateFile) }

// ReadState returns the recorded state, or nil when none. A daemon that
// died without a word (kill -9) cannot correct its record, so a state whose
// daemon no longer holds the lock is returned as stopped: not ready, no
// child up.
func ReadState(dir string) (*State, error) {
	s, err := readStateFile(dir)
	if err != nil || s == nil || Running(dir) {
		return s, err
	}
	if s.Phase != PhaseFailed {
		s.Phase = PhaseStopped
	}
	s.Ready = false
	for i := range s.Components {
		s.Components[i].Up = false
	}
	return s, nil
}

func readStateFile(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", statePath(dir), err)
	}
	return &s, nil
}

func writeState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir))
}

// Running reports whether a daemon holds dir's lock. The lock, not the PID
// in state.json, is the truth: it goes with the daemon however it dies, and
// a PID may be reused.
func Running(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	// A shared lock is refused only while the daemon holds its exclusive one.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// lockDaemon takes dir's lock for the daemon's lifetime; it fails when
// another daemon holds it. It retries briefly because Running's probe holds
// a shared lock for an instant.
func lockDaemon(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	for range 20 {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	return nil, fmt.Errorf("another bouncer up runs on %s (lock %s): %w", dir, path, err)
}

// Options configure Up.
type Options struct {
	// Self is the bouncer executable, started as the daemon.
	Self string
	// Dir is the state directory.
	Dir string
	// Timeout bounds the wait for readiness. The daemon is never stopped
	// when it passes: a first build takes long, and the next Up waits for
	// it again.
	Timeout time.Duration
	// SyncRepo, when set, makes the cluster sync its policies from this
	// git URL (a fleet's repository) instead of applying the starter
	// policies; SyncToken is the receiver's token for its post-commit hook.
	SyncRepo, SyncToken string
}

// NotReadyError is returned when the wait ends (timeout or interrupt)
// before the daemon is ready; the daemon keeps going.
type NotReadyError struct {
	Dir    string
	PID    int
	Waited time.Duration
	Phase  string
	Cause  error
}

func (e *NotReadyError) Error() string {
	phase := e.Phase
	if phase == "" {
		phase = PhaseStarting
	}
	return fmt.Sprintf("not ready after %s (%v, still %s); the daemon (pid %d) keeps going in the background.\n"+
		"  %s   waits for it again (a build in progress continues; nothing is rebuilt)\n"+
		"  %s stops it\n"+
		"  log: %s",
		e.Waited.Round(time.Second), e.Cause, phase, e.PID,
		Command("up", e.Dir), Command("down", e.Dir), filepath.Join(e.Dir, daemonLog))
}

func (e *NotReadyError) Unwrap() error { return e.Cause }

// Command is how the user runs `bouncer <verb>` for dir: with --dir unless
// dir is the default.
func Command(verb, dir string) string {
	if filepath.Clean(dir) == filepath.Clean(DefaultDir()) {
		return "bouncer " + verb
	}
	return "bouncer " + verb + " --dir " + shellQuote(dir)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./~+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Up starts the daemon unless one runs, and waits until it is ready.
func Up(ctx context.Context, o Options, out io.Writer) (*State, error) {
	dir := o.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, daemonLog)
	if Running(dir) {
		s, err := ReadState(dir)
		if err != nil {
			return nil, err
		}
		if s != nil && s.Ready {
			fmt.Fprintf(out, "Bouncer is already running (pid %d); state in %s\n", s.PID, dir)
			return s, nil
		}
		pid := 0
		if s != nil {
			pid = s.PID
		}
		fmt.Fprintf(out, "bouncer up is already starting (pid %d); waiting until it is ready (log: %s)\n", pid, logPath)
		return waitReady(ctx, o, pid, nil, out, 0)
	}

	// Append: the log of the previous run says why it ended.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	from, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(o.Self, "up", "--foreground", "--dir", dir)
	if o.SyncRepo != "" {
		// The token goes by environment, not argv: ps shows argv to everyone.
		cmd.Args = append(cmd.Args, "--sync-repo", o.SyncRepo)
		cmd.Env = append(os.Environ(), syncTokenEnv+"="+o.SyncToken)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own: the daemon outlives this command, the shell and
	// a Ctrl-C in it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(out, "Starting a local control plane with Bouncer (log: %s)\n", logPath)
	return waitReady(ctx, o, cmd.Process.Pid, exited, out, from)
}

// waitReady follows the daemon's log and state until it is ready, fails or the
// wait ends. exited is nil when the daemon is not this process's child.
func waitReady(ctx context.Context, o Options, pid int, exited <-chan error, out io.Writer, from int64) (*State, error) {
	logPath := filepath.Join(o.Dir, daemonLog)
	begin := time.Now()
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	shown := from
	var phase string
	for {
		shown = followLog(logPath, shown, out)
		s, _ := ReadState(o.Dir)
		if s != nil && (s.PID == pid || pid == 0) {
			pid = s.PID
			phase = s.Phase
			if s.Error != "" {
				return nil, fmt.Errorf("bouncer up failed: %s (see %s)", s.Error, logPath)
			}
			if s.Ready {
				return s, nil
			}
		}
		var cause error
		select {
		case err := <-exited:
			followLog(logPath, shown, out)
			return nil, fmt.Errorf("the daemon exited before it was ready (%v); see %s", err, logPath)
		case <-ctx.Done():
			cause = errors.New("interrupted")
		case <-timeout:
			cause = fmt.Errorf("--timeout %s passed", o.Timeout)
		case <-time.After(500 * time.Millisecond):
			if exited == nil && !Running(o.Dir) {
				followLog(logPath, shown, out)
				return nil, fmt.Errorf("the daemon (pid %d) stopped before it was ready; see %s", pid, logPath)
			}
			continue
		}
		return nil, &NotReadyError{Dir: o.Dir, PID: pid, Waited: time.Since(begin), Phase: phase, Cause: cause}
	}
}

// followLog copies progress lines from the daemon's log so the user sees
// why the first run takes minutes.
func followLog(path string, from int64, out io.Writer) int64 {
	f, err := os.Open(path)
	if err != nil {
		return from
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return from
	}
	b, _ := io.ReadAll(f)
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasSuffix(line, "\n") {
			return from
		}
		from += int64(len(line))
		if strings.HasPrefix(line, "up: ") || strings.Contains(line, "building") || strings.Contains(line, "built ") {
			fmt.Fprint(out, "  ", strings.TrimPrefix(line, "up: "))
		}
	}
	return from
}

// Down stops a running daemon and waits until it is gone. The cluster's
// data stays for the next Up unless purge, which removes it with the
// kubeconfig, logs and state.
func Down(dir string, purge bool, out io.Writer, timeout time.Duration) error {
	s, err := ReadState(dir)
	if err != nil && !purge {
		return err
	}
	if !Running(dir) {
		fmt.Fprintln(out, "Bouncer is not running.")
	} else {
		if s == nil || s.PID <= 0 {
			return fmt.Errorf("a daemon holds %s but %s names no pid", filepath.Join(dir, lockFile), statePath(dir))
		}
		if err := syscall.Kill(s.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stopping pid %d: %w", s.PID, err)
		}
		deadline := time.Now().Add(timeout)
		for Running(dir) {
			if time.Now().After(deadline) {
				// Its children die with it (Pdeathsig).
				_ = syscall.Kill(s.PID, syscall.SIGKILL)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		fmt.Fprintf(out, "Stopped Bouncer and its control plane (pid %d).\n", s.PID)
	}
	if !purge {
		_ = os.Remove(statePath(dir))
		if _, err := os.Stat(filepath.Join(dir, clusterDir)); err == nil {
			fmt.Fprintf(out, "The cluster's data is kept in %s: %s starts it again, %s removes it.\n",
				filepath.Join(dir, clusterDir), Command("up", dir), Command("down --purge", dir))
		}
		return nil
	}
	return Purge(dir, out)
}

// Purge removes what the daemon wrote into dir, and dir itself if that
// leaves it empty. It refuses while a daemon runs.
func Purge(dir string, out io.Writer) error {
	if Running(dir) {
		return fmt.Errorf("bouncer up still runs on %s; stop it first", dir)
	}
	var errs []error
	for _, name := range []string{clusterDir, kubeconfigOut, stateFile, stateFile + ".tmp", daemonLog, serveLog, lockFile} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("purging %s: %w", dir, err)
	}
	_ = os.Remove(dir) // only if empty
	fmt.Fprintf(out, "Removed the cluster's data, kubeconfig and logs from %s.\n", dir)
	return nil
}

// PrintReady tells the user what runs and what to try; kubectl is the path
// of a kubectl to suggest.
func PrintReady(out io.Writer, s *State, dir, kubectl string) {
	fmt.Fprintf(out, "\nBouncer is enforcing on a local control plane at %s\n", s.APIServer)
	fmt.Fprintf(out, "  state, logs and data: %s\n  kubeconfig:           %s\n  metrics:              %s/metrics\n\n", dir, s.Kubeconfig, s.ProbeURL)
	fmt.Fprintf(out, "Try it:\n")
	fmt.Fprintf(out, "  export KUBECONFIG=%s\n", s.Kubeconfig)
	fmt.Fprintf(out, "  kubectl run web --image=nginx:latest            # refused: the latest tag is disallowed\n")
	fmt.Fprintf(out, "  kubectl run web --image=nginx:1.27.3            # refused: NET_RAW is not dropped\n")
	fmt.Fprintf(out, "  kubectl get constraints                         # what is enforced\n")
	fmt.Fprintf(out, "\nkubectl is at %s if you have none.\n", kubectl)
	fmt.Fprintf(out, "Stop everything with: %s (the cluster's data is kept; add --purge to remove it)\n", Command("down", dir))
}
