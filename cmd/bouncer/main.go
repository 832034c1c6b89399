// Command bouncer is Bouncer's single binary: the admission webhook and
// controllers (serve), the offline policy runner for CI (test, verify), the
// built-in library (library) and a local control plane (up, down).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
