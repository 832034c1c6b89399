package dashboard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Listen opens addr for the dashboard. Without authentication only a
// loopback address is allowed: the pages show every cluster's violations,
// and an address reachable from elsewhere must never serve them to anyone
// by accident.
func Listen(addr string, authenticated bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard address %q: %w", addr, err)
	}
	if !authenticated && !isLoopback(host) {
		return nil, fmt.Errorf("dashboard address %q is not a loopback address and authentication is off: bind 127.0.0.1 or ::1 (reach it with a port-forward or SSH tunnel), or serve it from bouncer serve, where it checks tokens", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard listener: %w", err)
	}
	return lis, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves h on lis until ctx ends, then lets requests in flight
// finish for a few seconds. With tlsConfig it serves HTTPS: bearer tokens
// must not cross a network in the clear.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, tlsConfig *tls.Config, log *slog.Logger) error {
	scheme := "http://"
	if tlsConfig != nil {
		lis = tls.NewListener(lis, tlsConfig)
		scheme = "https://"
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second}
	if log != nil {
		log.Info("serving the dashboard", "addr", scheme+lis.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
