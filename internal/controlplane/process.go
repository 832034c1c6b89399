package controlplane

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

// stopGrace is how long a component gets to exit after SIGTERM before it is
// killed. kube-apiserver shuts down in about a second when etcd is still up.
const stopGrace = 5 * time.Second

// process is one running control-plane component.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result, valid after done is closed
}

// startProcess runs bin with args in its own process group, its output
// going to logPath and, if tee is non-nil, to tee with a "[name] " prefix.
func startProcess(name, bin string, args []string, logPath string, tee io.Writer) (*process, error) {
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
		cmd.WaitDelay = stopGrace
	}
	cmd.Stdout = out
	cmd.Stderr = out
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: logFile, done: make(chan struct{})}
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

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to stopGrace, then sends
// SIGKILL. It returns once the process has been reaped.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	pgid := p.pid() // Setpgid makes the child a group leader
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			return fmt.Errorf("stopping %s (pid %d): still running after SIGKILL", p.name, pgid)
		}
	}
	// Members of the group other than the leader (none expected) must not
	// outlive Stop either.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// exitError describes why a process ended before it became ready, with the
// end of its log, which is where the reason is.
func (p *process) exitError() error {
	tail := logTail(p.logPath, 20)
	err := fmt.Errorf("%s exited early (%v); last log lines from %s:\n%s", p.name, p.err, p.logPath, tail)
	if strings.Contains(tail, "address already in use") {
		return errors.Join(errAddrInUse, err)
	}
	return err
}

// errAddrInUse marks a start failure caused by a port taken between
// choosing it and the component binding it; Start retries with new ports.
var errAddrInUse = errors.New("port already in use")

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
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

// prefixWriter prefixes each line written to w. Several components may
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
			// A failing log sink must not kill the component (its stdout
			// write would fail with EPIPE); drop the copy instead.
			pw.w = io.Discard
		}
	}
	return len(b), nil
}
