package steering

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/duetcdn/duet/internal/viewerstate"
)

// The viewer state API (package viewerstate; Config.ViewerState):
//
//	GET    /v1/viewers/{id}/titles/{title...}  the title's state: 200 JSON viewerstate.TitleState, 404 when none
//	PUT    /v1/viewers/{id}/titles/{title...}  body viewerstate.TitleUpdate; answers the merged state
//	GET    /v1/viewers/{id}/settings           200 JSON viewerstate.SettingsState, 404 when none
//	PUT    /v1/viewers/{id}/settings           body {"name": "value" | null, ...}; answers the merged settings
//	DELETE /v1/viewers/{id}                    erases the viewer's state in every region: 204
//
// The viewer id is an opaque random id the player makes (16-128 of [A-Za-z0-9_-]); knowing it is
// what lets a client read and write the state, as with a session cookie. Requests are limited per
// viewer id (Config.ViewerState.RequestsPerMinute, 429 beyond); bad input is a 400 that says what
// to fix.

// viewerRoutes adds the viewer state API to mux.
func (s *Server) viewerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/viewers/{id}/titles/{title...}", s.viewerHandler(func(ctx context.Context, st *viewerstate.Store, r *http.Request, id string) (int, any, error) {
		v, err := st.Title(ctx, id, r.PathValue("title"))
		return http.StatusOK, v, err
	}))
	mux.HandleFunc("PUT /v1/viewers/{id}/titles/{title...}", s.viewerHandler(func(ctx context.Context, st *viewerstate.Store, r *http.Request, id string) (int, any, error) {
		b, err := readBody(r)
		if err != nil {
			return 0, nil, err
		}
		u, err := viewerstate.DecodeTitleUpdate(b)
		if err != nil {
			return 0, nil, err
		}
		v, err := st.PutTitle(ctx, id, r.PathValue("title"), u)
		return http.StatusOK, v, err
	}))
	mux.HandleFunc("GET /v1/viewers/{id}/settings", s.viewerHandler(func(ctx context.Context, st *viewerstate.Store, _ *http.Request, id string) (int, any, error) {
		v, err := st.Settings(ctx, id)
		return http.StatusOK, v, err
	}))
	mux.HandleFunc("PUT /v1/viewers/{id}/settings", s.viewerHandler(func(ctx context.Context, st *viewerstate.Store, r *http.Request, id string) (int, any, error) {
		b, err := readBody(r)
		if err != nil {
			return 0, nil, err
		}
		u, err := viewerstate.DecodeSettingsUpdate(b)
		if err != nil {
			return 0, nil, err
		}
		v, err := st.PutSettings(ctx, id, u)
		return http.StatusOK, v, err
	}))
	mux.HandleFunc("DELETE /v1/viewers/{id}", s.viewerHandler(func(ctx context.Context, st *viewerstate.Store, _ *http.Request, id string) (int, any, error) {
		return http.StatusNoContent, nil, st.Erase(ctx, id)
	}))
}

// viewerRequestTimeout bounds one viewer state request's NATS work.
const viewerRequestTimeout = 5 * time.Second

// viewerHandler checks that the API is on, the viewer id and the viewer's rate, then runs do.
func (s *Server) viewerHandler(do func(ctx context.Context, st *viewerstate.Store, r *http.Request, id string) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := s.viewerPrecheck(r)
		if err == nil {
			st := s.viewers.Load()
			ctx, cancel := context.WithTimeout(r.Context(), viewerRequestTimeout)
			defer cancel()
			var code int
			var v any
			if code, v, err = do(ctx, st, r, r.PathValue("id")); err == nil {
				if code == http.StatusNoContent {
					w.Header().Set("Cache-Control", "no-store")
					w.WriteHeader(code)
					return
				}
				writeJSON(w, code, v)
				return
			}
		}
		s.writeError(w, err, "viewers")
	}
}

func (s *Server) viewerPrecheck(r *http.Request) error {
	if s.cfg.ViewerState.Region == "" {
		return ErrViewerStateOff
	}
	id := r.PathValue("id")
	if err := viewerstate.CheckViewer(id); err != nil {
		return err
	}
	if !s.viewerLimit.allow(id, s.now()) {
		return ErrTooManyRequests
	}
	if s.viewers.Load() == nil {
		return ErrViewerStateUnavailable
	}
	return nil
}

// readBody reads a PUT body of at most viewerstate.MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, viewerstate.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", viewerstate.ErrBadInput, err)
	}
	if len(b) > viewerstate.MaxBodyBytes {
		return nil, fmt.Errorf("%w: body over %d bytes", viewerstate.ErrBadInput, viewerstate.MaxBodyBytes)
	}
	return b, nil
}

// runViewerState opens the region's viewer state store on nc (retrying while NATS is not
// ready) and keeps it running until ctx ends.
func (s *Server) runViewerState(ctx context.Context, nc *nats.Conn) {
	js, err := jetstream.New(nc)
	if err != nil {
		s.log.Error("viewer state off: JetStream", "error", err)
		return
	}
	var regions []string
	for _, r := range s.cfg.Regions {
		regions = append(regions, r.Name)
	}
	vc := s.cfg.ViewerState
	for attempt := 0; ctx.Err() == nil; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := viewerstate.Open(octx, js, viewerstate.Config{Region: vc.Region, Regions: regions, Retention: vc.Retention, MaxBytes: vc.MaxBytes},
			viewerstate.Deps{Logger: s.log, Registry: s.reg, Now: s.now})
		cancel()
		if err == nil {
			s.viewers.Store(st)
			s.log.Info("viewer state serving", "region", vc.Region, "regions", regions)
			_ = st.Run(ctx)
			return
		}
		if attempt == 0 || attempt%30 == 0 {
			s.log.Warn("viewer state not open yet, retrying", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// viewerLimiter limits each viewer id's requests (token bucket per id). Ids not seen for a while
// are forgotten, and the table is bounded.
type viewerLimiter struct {
	perMinute int

	mu    sync.Mutex // guards ids and swept
	ids   map[string]*viewerBucket
	swept time.Time
}

type viewerBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxTrackedViewers bounds the limiter's table: past it, it starts afresh (a burst of new ids
// costs the old ones their history, not the server its memory).
const maxTrackedViewers = 100_000

func newViewerLimiter(perMinute int) *viewerLimiter {
	return &viewerLimiter{perMinute: perMinute, ids: map[string]*viewerBucket{}}
}

func (l *viewerLimiter) allow(id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.ids {
			if now.Sub(b.seen) > 2*time.Minute {
				delete(l.ids, k)
			}
		}
		l.swept = now
	}
	b, ok := l.ids[id]
	if !ok {
		if len(l.ids) >= maxTrackedViewers {
			clear(l.ids)
		}
		b = &viewerBucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), max(l.perMinute/4, 1))}
		l.ids[id] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
