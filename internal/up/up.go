// Package up runs a local control plane with Bouncer enforcing, for trying
// Bouncer on a laptop: `bouncer up` starts a background daemon (etcd,
// kube-apiserver, kube-controller-manager and Bouncer's webhook in-process),
// waits until it is ready and returns; `bouncer down` stops it all.
//
// Everything lives in one state directory: state.json, logs, the kubeconfig
// and the cluster's data.
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

// State is what a running instance records in state.json.
type State struct {
	PID        int       `json:"pid"`
	Kubeconfig string    `json:"kubeconfig"`
	APIServer  string    `json:"apiServer"`
	WebhookURL string    `json:"webhookURL"`
	ProbeURL   string    `json:"probeURL"`
	Ready      bool      `json:"ready"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started"`
}

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

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// ReadState returns the recorded state, or nil when none.
func ReadState(dir string) (*State, error) {
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

// Alive reports whether the recorded daemon still runs.
func (s *State) Alive() bool {
	if s == nil || s.PID <= 0 {
		return false
	}
	return syscall.Kill(s.PID, 0) == nil
}

// Up starts the daemon (unless one runs) and waits until it is ready.
// self is the bouncer executable.
func Up(ctx context.Context, self, dir string, out io.Writer, timeout time.Duration) (*State, error) {
	if s, err := ReadState(dir); err == nil && s.Alive() {
		fmt.Fprintf(out, "Bouncer is already running (pid %d); state in %s\n", s.PID, dir)
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	_ = os.Remove(statePath(dir))
	logPath := filepath.Join(dir, "bouncer-up.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(self, "up", "--foreground", "--dir", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session of its own: the daemon outlives this command and the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(out, "Starting a local control plane with Bouncer (log: %s)\n", logPath)
	fmt.Fprintln(out, "The first run builds Kubernetes from the Go module proxy and takes several minutes.")

	deadline := time.Now().Add(timeout)
	var shown int64
	for {
		shown = followLog(logPath, shown, out)
		s, _ := ReadState(dir)
		if s != nil && s.Error != "" {
			return nil, fmt.Errorf("bouncer up failed: %s (see %s)", s.Error, logPath)
		}
		if s != nil && s.Ready {
			return s, nil
		}
		select {
		case err := <-exited:
			followLog(logPath, shown, out)
			return nil, fmt.Errorf("the daemon exited before it was ready (%v); see %s", err, logPath)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return nil, fmt.Errorf("not ready after %s; see %s", timeout, logPath)
		}
	}
}

// followLog copies build progress lines from the daemon's log so the user
// sees why the first run takes minutes.
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
		if strings.HasPrefix(line, "up: ") || strings.Contains(line, "building") || strings.Contains(line, "go: downloading") {
			fmt.Fprint(out, "  ", strings.TrimPrefix(line, "up: "))
		}
	}
	return from
}

// Down stops a running instance and waits until it is gone.
func Down(dir string, out io.Writer, timeout time.Duration) error {
	s, err := ReadState(dir)
	if err != nil {
		return err
	}
	if !s.Alive() {
		fmt.Fprintln(out, "Bouncer is not running.")
		_ = os.Remove(statePath(dir))
		return nil
	}
	if err := syscall.Kill(s.PID, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping pid %d: %w", s.PID, err)
	}
	deadline := time.Now().Add(timeout)
	for s.Alive() {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-s.PID, syscall.SIGKILL)
			_ = syscall.Kill(s.PID, syscall.SIGKILL)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = os.Remove(statePath(dir))
	fmt.Fprintf(out, "Stopped Bouncer and its control plane (pid %d).\n", s.PID)
	return nil
}
