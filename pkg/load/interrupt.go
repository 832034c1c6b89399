package load

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
)

// interruptible returns a reader that stops with ctx.Err() once ctx is
// done. Readers that can block indefinitely (pipes, terminals, devices,
// anything unknown) are read on a goroutine, so a read waiting for input
// does not hold up cancellation; that goroutine may stay blocked in its
// read after stop, until the input ends or the process exits.
func interruptible(ctx context.Context, r io.Reader) (io.Reader, func()) {
	if ctx.Done() == nil {
		return r, func() {}
	}
	switch x := r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		return &checkedReader{ctx: ctx, r: r}, func() {}
	case *os.File:
		if st, err := x.Stat(); err == nil && st.Mode().IsRegular() {
			return &checkedReader{ctx: ctx, r: r}, func() {}
		}
	}
	p := &pumpReader{ctx: ctx, r: r, ch: make(chan chunk), done: make(chan struct{})}
	return p, func() { close(p.done) }
}

// checkedReader reads a source that never blocks for long, checking ctx
// before each read.
type checkedReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type chunk struct {
	data []byte
	err  error
}

// pumpReader reads r on its own goroutine, one chunk ahead.
type pumpReader struct {
	ctx     context.Context
	r       io.Reader
	ch      chan chunk
	done    chan struct{}
	started bool
	cur     []byte
	err     error
}

func (p *pumpReader) pump() {
	for {
		buf := make([]byte, 64<<10)
		n, err := p.r.Read(buf)
		select {
		case p.ch <- chunk{buf[:n], err}:
		case <-p.ctx.Done():
			return
		case <-p.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (p *pumpReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	for len(p.cur) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		if !p.started {
			p.started = true
			go p.pump()
		}
		select {
		case c := <-p.ch:
			p.cur, p.err = c.data, c.err
		case <-p.ctx.Done():
			return 0, p.ctx.Err()
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}
