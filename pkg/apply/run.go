package apply

import (
	"container/heap"
	"fmt"
)

// outcome is what became of one node in a run.
type outcome int

const (
	outcomeNotRun outcome = iota
	outcomeApplied
	outcomeUnchanged
	outcomeUnchecked
	outcomeFailed
)

// ok: the node's dependents may go.
func (o outcome) ok() bool {
	return o == outcomeApplied || o == outcomeUnchanged || o == outcomeUnchecked
}

// run calls do for the nodes of seq, up to workers at once, each once
// every node it depends on has finished: a node whose dependency did not
// finish well (failed, or never ran because it is not in seq) is not
// started and fails with an error naming that dependency. Among the nodes
// free to go, the one earliest in seq starts first, so one worker applies
// in seq's order. A node already marked failed fails without an error of
// its own (the caller reported it). It returns each node's outcome and
// error, by node index.
func run(nodes []*node, seq []int, workers int, do func(i int) (outcome, error)) ([]outcome, []error) {
	outcomes := make([]outcome, len(nodes))
	errs := make([]error, len(nodes))
	pos := make([]int, len(nodes))
	inSeq := make([]bool, len(nodes))
	for k, i := range seq {
		pos[i], inSeq[i] = k, true
	}
	waiting := make([]int, len(nodes))
	dependents := make([][]int, len(nodes))
	for _, i := range seq {
		for _, j := range nodes[i].deps {
			if inSeq[j] {
				waiting[i]++
				dependents[j] = append(dependents[j], i)
			}
		}
	}
	ready := &byPosition{pos: pos}
	for _, i := range seq {
		if waiting[i] == 0 {
			heap.Push(ready, i)
		}
	}
	type done struct {
		i   int
		out outcome
		err error
	}
	results := make(chan done)
	finished, inflight := 0, 0
	finish := func(i int, out outcome, err error) {
		outcomes[i], errs[i] = out, err
		finished++
		for _, d := range dependents[i] {
			if waiting[d]--; waiting[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	for finished < len(seq) {
		for inflight < workers && ready.Len() > 0 {
			i := heap.Pop(ready).(int)
			if nodes[i].failed {
				finish(i, outcomeFailed, nil)
				continue
			}
			if dep := firstNotOK(nodes, nodes[i], outcomes); dep != nil {
				finish(i, outcomeFailed, fmt.Errorf("not applied: depends on %s, which was not applied", dep.ref))
				continue
			}
			inflight++
			go func() {
				out, err := do(i)
				if err != nil {
					out = outcomeFailed
				}
				results <- done{i, out, err}
			}()
		}
		if inflight == 0 {
			break // cannot happen for an ordered seq; never wait for nothing
		}
		r := <-results
		inflight--
		finish(r.i, r.out, r.err)
	}
	return outcomes, errs
}

func firstNotOK(nodes []*node, n *node, outcomes []outcome) *node {
	for _, j := range n.deps {
		if !outcomes[j].ok() {
			return nodes[j]
		}
	}
	return nil
}

// byPosition is a min-heap of node indexes by their position in seq.
type byPosition struct {
	pos []int
	ix  []int
}

func (h *byPosition) Len() int           { return len(h.ix) }
func (h *byPosition) Less(a, b int) bool { return h.pos[h.ix[a]] < h.pos[h.ix[b]] }
func (h *byPosition) Swap(a, b int)      { h.ix[a], h.ix[b] = h.ix[b], h.ix[a] }
func (h *byPosition) Push(x any)         { h.ix = append(h.ix, x.(int)) }
func (h *byPosition) Pop() any {
	x := h.ix[len(h.ix)-1]
	h.ix = h.ix[:len(h.ix)-1]
	return x
}
