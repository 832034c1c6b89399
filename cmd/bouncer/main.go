// Command bouncer is Bouncer's single binary: the admission webhook and
// controllers (serve), the offline policy runner for CI (test, verify), the
// built-in library (library) and a local control plane (up, down).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bouncer-policy/bouncer/pkg/cli"
)

func main() {
	ctx, stop := withSignals(context.Background())
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// withSignals returns a context cancelled on the first SIGINT or SIGTERM,
// with cli.Interrupted naming the signal as its cause: test and verify then
// say they were interrupted and exit 130 or 143, as a shell reports a
// process the signal killed. Later signals are ignored until stop.
func withSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			sig, _ := s.(syscall.Signal)
			cancel(cli.Interrupted{Signal: sig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}
