package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile/httpapi"
	"github.com/domicile/domicile/policy"
)

func (m *Main) serveCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API that services call",
		Long: `serve answers the HTTP API (see README.md): every request runs in its subject's
home region; during a move's fence it waits (api.fence_wait) and retries,
and after a move it follows the tombstone to the new region. It also resolves,
every few seconds, the moves of processes that died, and runs due purges.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			a, err := m.open(ctx, true)
			if err != nil {
				return err
			}
			defer a.Close()
			if listen == "" {
				listen = a.cfg.API.Listen
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv, err := a.server()
			if err != nil {
				ln.Close()
				return err
			}
			m.Logger.Info("serving the API", "addr", ln.Addr().String())
			fmt.Fprintf(m.Stderr, "domicile: serving on http://%s\n", ln.Addr())
			return a.serve(ctx, srv, ln)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default api.listen)")
	return cmd
}

// server returns the API's HTTP server.
func (a *app) server() (*http.Server, error) {
	token, err := a.cfg.Token()
	if err != nil {
		return nil, err
	}
	h := httpapi.New(httpapi.Config{
		Router: a.router(), Token: token, MaxBody: a.cfg.API.MaxBody,
		ResolveCountry: policy.ResolveCountry, Logger: a.log,
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}, nil
}

// serve runs srv on ln, with the mover's background recovery and the
// sealing of the ledger head, until ctx ends; then it shuts down gracefully
// and seals the head once more.
func (a *app) serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	mv, err := a.mover()
	if err != nil {
		return err
	}
	bg, stop := context.WithCancel(ctx)
	var background sync.WaitGroup
	background.Go(func() { a.recoverLoop(bg, mv.ResolveExpired, mv.PurgeDue) })
	background.Go(func() { a.sealLoop(bg) })
	background.Go(func() { a.awaitRegions(bg) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	}
	stop()
	background.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	a.sealed(ctx, &err)
	return err
}

// recoverLoop resolves expired moves and runs due purges every second. A
// failure that repeats is logged once a minute, not every second.
func (a *app) recoverLoop(ctx context.Context, resolve, purge func(context.Context) (int, error)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[string]time.Time{} // message → when it was last logged
	warn := func(msg string, err error) {
		key := msg + ": " + err.Error()
		if now := time.Now(); now.Sub(last[key]) >= time.Minute {
			last[key] = now
			a.log.Warn(msg, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := resolve(ctx); err != nil && ctx.Err() == nil {
			warn("resolving open moves", err)
		} else if n > 0 {
			a.log.Info("resolved moves of a process that stopped", "moves", n)
		}
		if _, err := purge(ctx); err != nil && ctx.Err() == nil {
			warn("purging", err)
		}
	}
}
