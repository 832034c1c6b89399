package cli

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// Exit codes of a run stopped by a signal: 128 + the signal's number, the
// status a shell reports for a process the signal ended.
const (
	ExitInterrupted = 128 + int(syscall.SIGINT)  // 130
	ExitTerminated  = 128 + int(syscall.SIGTERM) // 143
)

// Interrupted is the cause cmd/bouncer gives the context of a command it
// stops on a signal, so the command can say so and exit with the
// signal's status.
type Interrupted struct{ Signal syscall.Signal }

func (i Interrupted) Error() string {
	switch i.Signal {
	case syscall.SIGINT:
		return "interrupted by SIGINT"
	case syscall.SIGTERM:
		return "interrupted by SIGTERM"
	}
	return "interrupted by signal " + i.Signal.String()
}

// ExitCode is 128 + the signal's number.
func (i Interrupted) ExitCode() int { return 128 + int(i.Signal) }

// stopped returns the exit code and error of a run whose context ended
// before the run did; what says what was left undone.
func stopped(ctx context.Context, what string) (int, error) {
	cause := context.Cause(ctx)
	var in Interrupted
	if errors.As(cause, &in) {
		return in.ExitCode(), fmt.Errorf("%v: %s", in, what)
	}
	return ExitInvalid, fmt.Errorf("stopped (%v): %s", cause, what)
}

// Stopped is stopped for commands outside this package (bouncer vet): the
// exit code and error of a run whose context ended before it did.
func Stopped(ctx context.Context, what string) (int, error) { return stopped(ctx, what) }
