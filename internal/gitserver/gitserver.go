// Package gitserver serves git repositories on loopback for tests, so
// clients talk to real git. Server is smart HTTP: git's own http-backend
// behind net/http, with an optional bearer or basic-auth token, optionally
// over HTTPS, counting the requests and pack bytes it serves so tests can
// tell a fetch that transferred nothing from one that did. SSHServer runs
// git-upload-pack over ssh (golang.org/x/crypto/ssh) for one client key.
package gitserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Server serves every bare repository under Root at /<name>.git.
type Server struct {
	// Root holds bare repositories.
	Root string
	// Token, when set, is required as HTTP basic-auth password or bearer token.
	Token string
	// TLS, when set before Start, makes the server speak HTTPS with this
	// certificate.
	TLS *tls.Certificate

	srv *http.Server
	ln  net.Listener

	requests, uploadPacks, packBytes atomic.Int64
}

// Stats counts what the server served since Start.
type Stats struct {
	// Requests counts every request, refused ones included.
	Requests int64
	// UploadPacks counts POSTs to git-upload-pack: fetches that asked for
	// objects, beyond listing refs.
	UploadPacks int64
	// UploadPackBytes counts the response bytes of those POSTs.
	UploadPackBytes int64
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), UploadPacks: s.uploadPacks.Load(), UploadPackBytes: s.packBytes.Load()}
}

// countingWriter counts the bytes of a response body.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

// Start listens on a free loopback port.
func (s *Server) Start() error {
	backend, err := httpBackend()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("git server: listening: %w", err)
	}
	h := &cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*s.TLS}, MinVersion: tls.VersionTLS12})
	}
	s.ln = ln
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.Token != "" && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			s.uploadPacks.Add(1)
			w = countingWriter{ResponseWriter: w, n: &s.packBytes}
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

func (s *Server) authorized(r *http.Request) bool {
	if _, pw, ok := r.BasicAuth(); ok && pw == s.Token {
		return true
	}
	return r.Header.Get("Authorization") == "Bearer "+s.Token
}

// URL is the clone URL of the repository name (without .git).
func (s *Server) URL(name string) string {
	scheme := "http"
	if s.TLS != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/%s.git", scheme, s.ln.Addr(), name)
}

// Close stops serving.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// InitBare creates an empty bare repository Root/<name>.git whose HEAD is main.
func (s *Server) InitBare(ctx context.Context, name string) (string, error) {
	dir := filepath.Join(s.Root, name+".git")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "git", "init", "-q", "--bare", "-b", "main", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git init %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	// http-backend refuses pushes unless receive-pack is on.
	if out, err := exec.CommandContext(ctx, "git", "-C", dir, "config", "http.receivepack", "true").CombinedOutput(); err != nil {
		return "", fmt.Errorf("git config %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return dir, nil
}

func httpBackend() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git server: git is not installed: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("git server: git-http-backend not found at " + p)
	}
	return p, nil
}
