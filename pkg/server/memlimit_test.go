package server

import "testing"

func TestParseMemoryMax(t *testing.T) {
	for in, want := range map[string]int64{"536870912\n": 536870912, "max\n": 0, "": 0, "garbage": 0, "-1": 0} {
		got, ok := parseMemoryMax(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseMemoryMax(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}
