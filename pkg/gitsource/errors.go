package gitsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Kind says why a fetch failed, so a caller can report it as a code
// without parsing messages.
type Kind string

// Kinds of fetch failure.
const (
	KindAuth        Kind = "auth"          // the server wants credentials or refused them (HTTP 401)
	KindForbidden   Kind = "forbidden"     // the credentials may not read the repository (HTTP 403)
	KindNotFound    Kind = "not-found"     // no such repository (HTTP 404)
	KindRefNotFound Kind = "ref-not-found" // the repository lacks the branch, tag or commit
	KindUnreachable Kind = "unreachable"   // no connection to the server
	KindTLS         Kind = "tls"           // the server's certificate is not trusted
	KindHostKey     Kind = "host-key"      // the ssh server's host key is not in known_hosts, or differs
	KindOther       Kind = "other"         // anything else: a broken server, a corrupt pack, a cancelled context
)

// FetchError is the error of a failed Fetch.
type FetchError struct {
	Kind Kind
	// Repo is the repository URL with any password masked.
	Repo string
	// Ref names what was asked for, such as `branch "main"`.
	Ref string
	// Err is the cause.
	Err error
}

var hints = map[Kind]string{
	KindAuth:        "the server refused the credentials or wants some",
	KindForbidden:   "the credentials may not read the repository",
	KindNotFound:    "the repository does not exist or the credentials cannot see it",
	KindRefNotFound: "the repository has no such ref",
	KindUnreachable: "cannot reach the git server",
	KindTLS:         "the server's certificate is not trusted",
	KindHostKey:     "the server's ssh host key is not the one known_hosts holds",
}

func (e *FetchError) Error() string {
	msg := "git: fetching " + e.Repo
	if e.Ref != "" {
		msg += " " + e.Ref
	}
	if h := hints[e.Kind]; h != "" {
		msg += ": " + h
	}
	// Servers' reasons end up in go-git's messages with their newlines,
	// or empty after a colon; status messages read better on one line.
	cause := strings.TrimSuffix(strings.Join(strings.Fields(e.Err.Error()), " "), ":")
	return msg + ": " + cause
}

func (e *FetchError) Unwrap() error { return e.Err }

// KindOf is the kind of a Fetch error; KindOther for errors that are no
// FetchError.
func KindOf(err error) Kind {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return KindOther
}

// fetchError wraps a go-git error with its kind.
func fetchError(repo, ref string, err error) *FetchError {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe
	}
	return &FetchError{Kind: classify(err), Repo: redact(repo), Ref: ref, Err: err}
}

func classify(err error) Kind {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		recordHdr   tls.RecordHeaderError
		opErr       *net.OpError
		dnsErr      *net.DNSError
		unexpected  *plumbing.UnexpectedError
		noMatchSpec git.NoMatchingRefSpecError
		hostKey     *knownhosts.KeyError
		revoked     *knownhosts.RevokedError
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return KindOther
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return KindAuth
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return KindForbidden
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return KindNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository), errors.As(err, &noMatchSpec):
		return KindRefNotFound
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &recordHdr):
		return KindTLS
	case errors.As(err, &hostKey), errors.As(err, &revoked):
		return KindHostKey
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		// x/crypto/ssh's client has no error type for a refused key.
		return KindAuth
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return KindUnreachable
	case errors.As(err, &unexpected) && unexpected.Err != nil:
		// go-git's UnexpectedError does not unwrap.
		return classify(unexpected.Err)
	}
	return KindOther
}

// redact masks the password of an http(s) URL; ssh and file URLs carry
// none.
func redact(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil || !strings.HasPrefix(u.Scheme, "http") {
		return repo
	}
	return u.Redacted()
}

// reclonable says whether a fresh clone may succeed where fetching into the
// cached repository failed: not when the server, the credentials or the
// ref are the cause.
func reclonable(err error) bool {
	var unexpected *plumbing.UnexpectedError
	if errors.As(err, &unexpected) {
		var status *githttp.Err
		if errors.As(unexpected.Err, &status) {
			return false // an HTTP error status: the server's doing
		}
	}
	return KindOf(err) == KindOther && !errors.Is(err, errUnsafeTree) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// refNotFound is the error for a ref the repository lacks.
func refNotFound(repo, ref, format string, args ...any) *FetchError {
	return &FetchError{Kind: KindRefNotFound, Repo: redact(repo), Ref: ref, Err: fmt.Errorf(format, args...)}
}
