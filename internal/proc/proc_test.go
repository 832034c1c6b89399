package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitErrorCarriesTheLogTail(t *testing.T) {
	log := filepath.Join(t.TempDir(), "child.log")
	p, err := Start("child", "/bin/sh", []string{"-c", "echo listen tcp 127.0.0.1:1: bind: address already in use; exit 3"}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	err = p.ExitError()
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("ExitError = %v; want the exit status and the log's last line", err)
	}
	if !errors.Is(err, ErrAddrInUse) {
		t.Errorf("ExitError does not mark a port clash: %v", err)
	}
}

// Stop ends the whole process group, grandchildren included.
func TestStopEndsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild")
	p, err := Start("parent", "/bin/sh", []string{"-c", "sleep 600 & echo $! > " + pidFile + "; wait"}, filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	for grandchild == 0 {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		if s := strings.TrimSpace(string(b)); s != "" {
			grandchild, err = strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	// The grandchild was reparented when its parent died; until its new
	// parent reaps it, it is a zombie, which still counts as a member.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Kill(-p.PID(), 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(grandchild) + "/stat"); time.Now().After(deadline) {
			t.Fatalf("process group %d survives Stop (kill: %v; grandchild: %s)", p.PID(), err, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
