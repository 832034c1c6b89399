package controller

import "testing"

func TestTrackerWaitsForPopulationAndEveryExpectation(t *testing.T) {
	tr := newTracker()
	if tr.satisfied() {
		t.Fatal("satisfied before the initial listing")
	}
	tr.expect("a")
	tr.expect("b")
	tr.populated()
	if tr.satisfied() {
		t.Fatal("satisfied with a and b pending")
	}
	tr.observe("a")
	tr.expect("c") // registered later, e.g. constraints of a kind
	tr.observe("b")
	if tr.satisfied() {
		t.Fatalf("satisfied with c pending: %v", tr.pending(5))
	}
	tr.observe("c")
	if !tr.satisfied() {
		t.Fatalf("not satisfied with nothing pending: %v", tr.pending(5))
	}
	tr.expect("d") // after readiness: ignored, readiness does not flap
	if !tr.satisfied() {
		t.Fatal("readiness flapped after a late expectation")
	}
}

// A reconcile may finish before the initial listing registers its object:
// the early observation must count.
func TestTrackerObservedBeforeExpected(t *testing.T) {
	tr := newTracker()
	tr.observe("a")
	tr.expect("a")
	tr.populated()
	if !tr.satisfied() {
		t.Fatalf("an object observed before it was expected still blocks readiness: %v", tr.pending(5))
	}
}
