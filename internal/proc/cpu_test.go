package proc

import (
	"os"
	"testing"
)

func TestCPUSecondsOfThisProcess(t *testing.T) {
	before, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 200_000_000 {
		x ^= i
	}
	after, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time did not grow over a busy loop (%d): %v then %v", x, before, after)
	}
	if _, err := CPUSeconds(-1); err == nil {
		t.Error("no error for a process that cannot exist")
	}
}
