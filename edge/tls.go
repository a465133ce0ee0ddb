package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/duetcdn/duet/internal/tlsconf"
)

// serveTLS starts what HTTPS needs besides the viewer listener itself (Serve wraps that in
// TLS): the redirect listener for plain HTTP, when configured, and the certificates' upkeep
// (file reloads, ACME), both until ctx ends. The redirect server is returned for Serve to shut
// down; its failure is sent to errc.
func (s *Server) serveTLS(ctx context.Context, ln net.Listener, errc chan<- error) (*http.Server, error) {
	ls := tlsconf.Listeners{TLS: ln.Addr()}
	var redirect *http.Server
	if addr := s.cfg.TLS.RedirectListen; addr != "" {
		var lc net.ListenConfig
		rl, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen for plain HTTP (tls.redirect_listen) on %s: %w", addr, err)
		}
		ls.Redirect = rl.Addr()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		redirect = &http.Server{Handler: s.tls.RedirectHandler(port), ReadHeaderTimeout: s.cfg.ReadTimeout,
			IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: int(s.cfg.MaxHeaderBytes)}
		go func() {
			if err := redirect.Serve(rl); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve tls.redirect_listen: %w", err)
			}
		}()
		s.log.Info("redirecting plain HTTP to HTTPS", "listen", rl.Addr().String())
	}
	go func() {
		if err := s.tls.Run(ctx, ls); err != nil {
			s.log.Error("TLS certificates not managed", "error", err)
			errc <- err
		}
	}()
	return redirect, nil
}
