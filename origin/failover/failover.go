// Package failover groups several origins (usually the same bucket replicated in several regions)
// behind one Fetch: members are tried in order, and a fetch moves on to the next member when one
// gives no answer (connection error, origin.ErrTimeout) or a server error (5xx). Each member has a
// circuit breaker, so a dead origin is skipped instead of costing every fetch a failed attempt.
//
// What a failover does not do:
//
//   - It does not retry mid-body. Once a member has answered, its body is the answer; a body cut
//     short is the caller's failure to handle (the edge treats a short body as a failed fill and
//     never caches it). Retrying mid-body would need the same bytes from another member at the
//     same offset, which the next point shows is not guaranteed.
//   - It does not change an object's identity. Members that hold the same bytes may still give
//     them different ETags (a replicated multipart object gets its ETag from how it was uploaded).
//     The edge pins the slices of a large object with If-Match on the first slice's ETag; when a
//     later slice is fetched from another member whose ETag differs, that member answers 412, and
//     the group returns the 412 as it is (a 4xx is an answer, not a failure). The edge already
//     handles a 412 by refetching the object, so it never stitches together slices of two
//     different versions.
package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/origin"
)

// Fetcher is what a member must do: the edge's Origin.
type Fetcher interface {
	Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error)
}

// Forwarder is what a member may also do: pass methods other than GET and HEAD through (HTTP
// origins).
type Forwarder interface {
	Forward(ctx context.Context, method, path, query string, header http.Header, body io.Reader) (*origin.Response, error)
}

// Member is one origin of a group.
type Member struct {
	// Name identifies the member in Health, logs and metric labels, for example its region.
	// Letters, digits, '.', '_' and '-', at most 64. Required and unique within the group.
	Name string
	// Origin fetches from the member; when it also implements Forwarder, the member can forward.
	Origin Fetcher
}

// Defaults for Config.
const (
	DefaultFailures    = 3
	DefaultCooldown    = time.Second
	DefaultMaxCooldown = 2 * time.Second
)

// probeTimeout bounds a background probe whose member's own timeout did not end it.
const probeTimeout = 30 * time.Second

// Config describes a group.
type Config struct {
	// Members in the order they are tried: the edge's own region first. At least one.
	Members []Member
	// Failures is how many failures in a row open a member's breaker. Zero means 3.
	Failures int
	// Cooldown is how long an open breaker skips its member before a fetch starts a probe of it
	// (a HEAD sent in the background; see breaker). Each failed probe doubles it, up to
	// MaxCooldown; a success resets it. Each wait is drawn from [half, all] of it. Zero means 1s.
	Cooldown time.Duration
	// MaxCooldown caps the doubled cool-down, and so how long a member that answers again may
	// stay out of rotation. Zero means 2s (or Cooldown, when that is longer).
	MaxCooldown time.Duration
	// Metrics are the series the group updates (see Metrics). Nil means series that are only
	// kept, not served.
	Metrics Metrics
	// Logger receives breaker changes. Nil means discard.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// MemberHealth is one member's state, as Health reports it.
type MemberHealth struct {
	Name string
	// State is the breaker's: "closed", "open" or "half-open".
	State State
	// Healthy is true while the breaker is closed.
	Healthy bool
	// ConsecutiveFailures counts the failures since the last answer.
	ConsecutiveFailures int
	// LastError is the last failure's message ("" before the first one).
	LastError string
	// LastChange is when State last changed (or when the group was built).
	LastChange time.Time
}

// Group tries its members in order. It is safe for concurrent use.
type Group struct {
	members    []*member
	forwarding bool
	m          Metrics
	log        *slog.Logger
	now        func() time.Time
}

type member struct {
	name string
	f    Fetcher
	fw   Forwarder // nil when the member cannot forward
	b    *breaker
	// errs are the member's error counters by reason, resolved once.
	errTimeout, errOther, err5xx prometheus.Counter
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// New validates cfg and builds the group.
func New(cfg Config) (*Group, error) {
	if cfg.Failures == 0 {
		cfg.Failures = DefaultFailures
	}
	if cfg.Cooldown == 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.MaxCooldown == 0 {
		cfg.MaxCooldown = max(DefaultMaxCooldown, cfg.Cooldown)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = unservedMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	switch {
	case len(cfg.Members) == 0:
		bad("no members")
	case cfg.Failures < 0:
		bad("Failures %d is negative", cfg.Failures)
	case cfg.Cooldown < 0:
		bad("Cooldown %s is negative", cfg.Cooldown)
	case cfg.MaxCooldown < cfg.Cooldown:
		bad("MaxCooldown %s is shorter than Cooldown %s", cfg.MaxCooldown, cfg.Cooldown)
	}
	seen := map[string]bool{}
	for i, mb := range cfg.Members {
		switch {
		case !validName.MatchString(mb.Name):
			bad("member %d: name %q must be 1 to 64 letters, digits, '.', '_' or '-'", i, mb.Name)
		case seen[mb.Name]:
			bad("member %d: name %q is used twice", i, mb.Name)
		}
		seen[mb.Name] = true
		if mb.Origin == nil {
			bad("member %d (%s): no origin", i, mb.Name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := cfg.Metrics
	g := &Group{m: m, log: cfg.Logger.With("component", "origin_failover"), now: cfg.Now, forwarding: true}
	now := cfg.Now()
	for _, mb := range cfg.Members {
		mm := &member{name: mb.Name, f: mb.Origin,
			errTimeout: m.MemberErrors(mb.Name, reasonTimeout),
			errOther:   m.MemberErrors(mb.Name, reasonError),
			err5xx:     m.MemberErrors(mb.Name, reason5xx),
		}
		if fw, ok := mb.Origin.(Forwarder); ok {
			mm.fw = fw
		} else {
			g.forwarding = false
		}
		up, state := m.OriginUp(mb.Name), m.BreakerState(mb.Name)
		up.Set(1)
		state.Set(StateClosed.gaugeValue())
		name := mb.Name
		mm.b = newBreaker(cfg.Failures, cfg.Cooldown, cfg.MaxCooldown, now, func(s State) {
			state.Set(s.gaugeValue())
			if s == StateClosed {
				up.Set(1)
			} else {
				up.Set(0)
			}
			g.log.Info("origin breaker changed", "origin", name, "state", string(s))
		})
		g.members = append(g.members, mm)
	}
	return g, nil
}

// Forwarding reports whether every member can forward, so that Forward works. A group that
// cannot should be handed to the edge as read-only (without its Forward method), so that the edge
// answers other methods with 405.
func (g *Group) Forwarding() bool { return g.forwarding }

// Health returns each member's state, in the group's order.
func (g *Group) Health() []MemberHealth {
	out := make([]MemberHealth, len(g.members))
	for i, m := range g.members {
		s, n, last, at := m.b.snapshot()
		out[i] = MemberHealth{Name: m.name, State: s, Healthy: s == StateClosed,
			ConsecutiveFailures: n, LastError: last, LastChange: at}
	}
	return out
}

// Fetch reads r from the first member that answers. Members whose breaker is open are skipped;
// when every member is open, all are tried in order anyway. An answer below 500 (200, 206, 304,
// 404, 412, 416...) is returned as it is: those are the object's state, the same at every
// member. A 5xx moves on to the next member (its body drained and closed), unless it came from
// the last member tried, when it is returned. A cancelled ctx stops at once.
func (g *Group) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	return g.try(ctx, "fetch", r.Path, true, func(m *member) (*origin.Response, error) {
		return m.f.Fetch(ctx, r)
	}, func() *origin.Request {
		return &origin.Request{Path: r.Path, Query: r.Query, Header: r.Header.Clone(), Head: true}
	})
}

// Forward passes a request through to the first member that answers, as Fetch does, with two
// limits that keep it from repeating a request with effects: only idempotent methods (PUT, DELETE,
// OPTIONS, TRACE...) fail over, and only when body is nil or an io.Seeker (rewound to where it
// started for each attempt). Anything else goes to one member only: the first whose breaker lets
// it through. Forward returns ErrNotForwarding when some member cannot forward.
func (g *Group) Forward(ctx context.Context, method, path, query string, header http.Header, body io.Reader) (*origin.Response, error) {
	if !g.forwarding {
		return nil, fmt.Errorf("forward %s %s: %w", method, path, ErrNotForwarding)
	}
	retry := idempotent(method)
	var (
		seeker io.Seeker
		start  int64
	)
	if body != nil && retry {
		var ok bool
		if seeker, ok = body.(io.Seeker); ok {
			var err error
			if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
				seeker, retry = nil, false
			}
		} else {
			retry = false
		}
	}
	attempts := 0
	return g.try(ctx, "forward "+method, path, retry, func(m *member) (*origin.Response, error) {
		if attempts++; attempts > 1 && seeker != nil {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewind request body: %w", err)
			}
		}
		return m.fw.Forward(ctx, method, path, query, header, body)
	}, func() *origin.Request {
		return &origin.Request{Path: path, Query: query, Header: header.Clone(), Head: true}
	})
}

// idempotent reports whether a method may be sent twice (RFC 9110 section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// drainLimit is how much of a 5xx body is read before closing it, so that the connection can be
// reused; a longer body costs the connection instead.
const drainLimit = 64 << 10

// try runs call on members in order until one answers below 500. With failover false it stops
// after the first attempt, whatever happens. op and path only name the request in errors. A
// member whose cool-down is over gets probeReq's request in the background (startProbe), and
// this fetch goes on without it.
func (g *Group) try(ctx context.Context, op, path string, failover bool, call func(*member) (*origin.Response, error),
	probeReq func() *origin.Request) (*origin.Response, error) {
	var (
		errs    []error
		pending *origin.Response // the last 5xx, returned if nothing better comes
		prev    *member          // the last member tried, for the failover counter
	)
	attempt := func(m *member, p permit) (resp *origin.Response, done bool, err error) {
		if pending != nil {
			drain(pending)
			pending = nil
		}
		if prev != nil {
			g.m.Failovers(prev.name, m.name).Inc()
		}
		prev = m
		resp, err = call(m)
		now := g.now()
		switch {
		case err != nil && ctx.Err() != nil:
			// The caller gave up: not the member's fault, and no reason to try another.
			m.b.release(p)
			return nil, true, err
		case err != nil:
			if errors.Is(err, origin.ErrTimeout) {
				m.errTimeout.Inc()
			} else {
				m.errOther.Inc()
			}
			m.b.failure(p, now, err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
			return nil, false, nil
		case resp.Status >= 500:
			m.err5xx.Inc()
			m.b.failure(p, now, fmt.Sprintf("status %d", resp.Status))
			pending = resp
			return nil, false, nil
		}
		m.b.success(p, now)
		return resp, true, nil
	}

	tried := false
	for _, m := range g.members {
		if tried && (!failover || ctx.Err() != nil) {
			break
		}
		p := m.b.acquire(g.now())
		if p == probe {
			g.startProbe(m, probeReq()) //nolint:contextcheck // the probe outlives the viewer's fetch on purpose: it runs in the background
			continue
		}
		if p == denied {
			continue
		}
		tried = true
		if resp, done, err := attempt(m, p); done {
			return resp, err
		}
	}
	if !tried {
		// Every breaker is open (or probing): never fail without trying, so go down the list.
		for _, m := range g.members {
			if ctx.Err() != nil {
				break
			}
			if resp, done, err := attempt(m, forced); done {
				return resp, err
			}
			if !failover {
				break
			}
		}
	}
	if pending != nil {
		return pending, nil
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%s %s: %w: %w", op, path, ErrAllFailed, errors.Join(errs...))
}

// startProbe tests an open member with r (a HEAD) in the background: an answer below 500 closes
// its breaker, anything else reopens it for a longer cool-down. Nobody waits for it.
func (g *Group) startProbe(m *member, r *origin.Request) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		resp, err := m.f.Fetch(ctx, r)
		now := g.now()
		switch {
		case err != nil:
			if errors.Is(err, origin.ErrTimeout) {
				m.errTimeout.Inc()
			} else {
				m.errOther.Inc()
			}
			m.b.failure(probe, now, "probe: "+err.Error())
		case resp.Status >= 500:
			drain(resp)
			m.err5xx.Inc()
			m.b.failure(probe, now, fmt.Sprintf("probe: status %d", resp.Status))
		default:
			drain(resp)
			m.b.success(probe, now)
		}
	}()
}

// drain reads a little of a discarded answer's body and closes it.
func drain(r *origin.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
	_ = r.Body.Close()
}
