// Package gitserver serves git repositories over smart HTTP on loopback for
// tests: git's own http-backend behind net/http, so clients
// talk to real git, with an optional bearer or basic-auth token.
package gitserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Server serves every bare repository under Root at /<name>.git.
type Server struct {
	// Root holds bare repositories.
	Root string
	// Token, when set, is required as HTTP basic-auth password or bearer token.
	Token string

	srv *http.Server
	ln  net.Listener
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
	s.ln = ln
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Token != "" && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
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
	return fmt.Sprintf("http://%s/%s.git", s.ln.Addr(), name)
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
