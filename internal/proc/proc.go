// Package proc runs the child processes of Bouncer's local development
// tooling (etcd, kube-apiserver, kube-controller-manager, `bouncer serve`):
// each in its own process group, its output in a log file, killed by the
// kernel if the parent dies, and stopped with SIGTERM then SIGKILL.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long a process gets to exit after SIGTERM before it is
// killed. kube-apiserver shuts down in about a second when etcd is still up.
const StopGrace = 5 * time.Second

// Process is one running child.
type Process struct {
	// Name is what the process is called in errors and log prefixes.
	Name string
	// LogPath is the file its standard output and error go to.
	LogPath string

	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result, valid after done is closed
}

// Start runs bin with args in its own process group, its output appended
// to logPath and, if tee is non-nil, copied to tee with a "[name] " prefix.
func Start(name, bin string, args []string, logPath string, tee io.Writer) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: opening log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = childSysProcAttr()
	var out io.Writer = logFile
	if tee != nil {
		out = io.MultiWriter(logFile, &prefixWriter{prefix: "[" + name + "] ", w: tee})
		// With a non-file writer exec copies through a pipe; do not let a
		// lingering grandchild holding the pipe block Wait forever.
		cmd.WaitDelay = StopGrace
	}
	cmd.Stdout = out
	cmd.Stderr = out
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

var (
	spawnerOnce sync.Once
	spawnerReqs chan func()
)

// onSpawnerThread runs f on one OS thread reserved for starting children.
// Pdeathsig fires when the thread that forked the child exits, not the
// process, and Go ends a thread when a goroutine locked to it exits. Forking
// from a locked goroutine that never returns keeps children alive exactly
// as long as this process.
func onSpawnerThread(f func()) {
	spawnerOnce.Do(func() {
		spawnerReqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked, see above
			for req := range spawnerReqs {
				req()
			}
		}()
	})
	done := make(chan struct{})
	spawnerReqs <- func() { defer close(done); f() }
	<-done
}

// PID is the process's id, which is also its process group's id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Process) Started() time.Time { return p.started }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (exec.Cmd.Wait's error: nil for exit status
// 0); valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM to the process group, waits up to StopGrace, then sends
// SIGKILL. It returns once the process has been reaped.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	pgid := p.PID() // Setpgid makes the child a group leader
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(StopGrace):
			return fmt.Errorf("stopping %s (pid %d): still running after SIGKILL", p.Name, pgid)
		}
	}
	// Members of the group other than the leader (none expected) must not
	// outlive Stop either.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// ExitError describes why a process ended, with the end of its log, which
// is where the reason is. Call it once Done is closed.
func (p *Process) ExitError() error {
	tail := LogTail(p.LogPath, 20)
	err := fmt.Errorf("%s exited (%v); last log lines from %s:\n%s", p.Name, p.Err(), p.LogPath, tail)
	if strings.Contains(tail, "address already in use") {
		return errors.Join(ErrAddrInUse, err)
	}
	return err
}

// ErrAddrInUse marks an exit caused by a port taken between choosing it and
// the process binding it.
var ErrAddrInUse = errors.New("port already in use")

// LogTail returns the last n lines of a log file.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prefixWriter prefixes each line written to w. Several processes may
// share one w, so writes are serialized and only whole lines are emitted.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

var teeMu sync.Mutex

func (pw *prefixWriter) Write(b []byte) (int, error) {
	teeMu.Lock()
	defer teeMu.Unlock()
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(pw.prefix)+i+1)
		line = append(append(line, pw.prefix...), pw.buf[:i+1]...)
		pw.buf = pw.buf[i+1:]
		if _, err := pw.w.Write(line); err != nil {
			// A failing log sink must not kill the process (its stdout
			// write would fail with EPIPE); drop the copy instead.
			pw.w = io.Discard
		}
	}
	return len(b), nil
}
