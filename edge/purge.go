package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/edge/object"
	"github.com/duetcdn/duet/internal/purgereq"
)

// PurgeResult counts what a purge touched.
type PurgeResult struct {
	Entries int `json:"entries"`
}

// ErrBadPurge is wrapped by purge validation errors.
var ErrBadPurge = errors.New("bad purge")

// Purge applies a purge to both tiers and to running fills (whose bytes may be the old version:
// they reach the viewers already waiting but are not stored). It is the entry point the NATS
// purge consumer drives. Items that are not valid paths are skipped and reported in the error
// (wrapping ErrBadPurge); everything else is applied.
func (s *Server) Purge(ctx context.Context, req purgereq.Target) (PurgeResult, error) {
	if req.Items() == 0 {
		return PurgeResult{}, fmt.Errorf("%w: name at least one url, prefix or tag", ErrBadPurge)
	}
	// Invalid items are skipped (no cached key can match them) and reported; the rest applies.
	var bad []error
	keys := map[string]struct{}{}
	// What running fills must not commit: exact keys (with their variants and slices) and prefixes.
	stopKeys := map[string]struct{}{}
	var stopPrefixes []string
	for _, u := range req.URLs {
		p, q, err := s.normalisePurgePath(u)
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: url %q: %w", ErrBadPurge, u, err))
			continue
		}
		primary := cachekey.Key(p, q)
		stopKeys[primary] = struct{}{}
		for _, k := range s.store.keysUnder(primary) {
			keys[k] = struct{}{}
		}
	}
	for _, pre := range req.Prefixes {
		p, _, err := s.normalisePurgePath(pre)
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: prefix %q: %w", ErrBadPurge, pre, err))
			continue
		}
		if strings.HasSuffix(pre, "/") && !strings.HasSuffix(p, "/") {
			p += "/"
		}
		stopPrefixes = append(stopPrefixes, p)
		for _, k := range s.store.keysWithPrefix(p) {
			keys[k] = struct{}{}
		}
	}
	for _, t := range req.Tags {
		if t == "" {
			bad = append(bad, fmt.Errorf("%w: empty tag", ErrBadPurge))
			continue
		}
		for _, k := range s.store.keysTagged(t) {
			keys[k] = struct{}{}
			stopKeys[k] = struct{}{}
		}
	}
	s.stopFlights(stopKeys, stopPrefixes...)
	n := 0
	if req.Soft {
		for k := range keys {
			m, ok := s.store.peek(k)
			if !ok {
				continue
			}
			mm := *m
			mm.Flags |= object.SoftPurged
			if err := s.store.updateMeta(mm); err != nil {
				s.store.remove(k) // cannot mark it: removing it is the safe side
			}
			n++
		}
	} else {
		all := make([]string, 0, len(keys))
		for k := range keys {
			all = append(all, k)
		}
		n = s.store.removeMany(all)
	}
	mode := "hard"
	if req.Soft {
		mode = "soft"
	}
	s.m.purged.WithLabelValues(mode).Add(float64(n))
	s.log.LogAttrs(ctx, slog.LevelInfo, "purge applied", slog.String("mode", mode), slog.Int("entries", n),
		slog.Int("urls", len(req.URLs)), slog.Int("prefixes", len(req.Prefixes)), slog.Int("tags", len(req.Tags)))
	return PurgeResult{Entries: n}, errors.Join(bad...)
}

func (s *Server) normalisePurgePath(u string) (string, string, error) {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		j := strings.IndexByte(u, '/')
		if j < 0 {
			return "", "", errors.New("no path")
		}
		u = u[j:]
	}
	p, q, _ := strings.Cut(u, "?")
	return s.keys.Normalize(p, q)
}

// stopFlights keeps running fills from committing what they fetched (it may be the old
// version): fills of a key in exact, or of its variants and slices, and fills of every key under
// one of prefixes. One pass over the running fills, however many keys a purge names.
func (s *Server) stopFlights(exact map[string]struct{}, prefixes ...string) {
	s.fl.mu.Lock()
	defer s.fl.mu.Unlock()
	for k, f := range s.fl.m {
		_, stop := exact[k]
		if !stop {
			_, stop = exact[primaryOf(k)]
		}
		for _, p := range prefixes {
			stop = stop || strings.HasPrefix(k, p)
		}
		if stop {
			f.noStore.Store(true)
		}
	}
}

// checkPurge checks every item without applying anything (the admin endpoint rejects a request
// with any bad item as a whole).
func (s *Server) checkPurge(req purgereq.Target) error {
	if req.Items() == 0 {
		return fmt.Errorf("%w: name at least one url, prefix or tag", ErrBadPurge)
	}
	for _, u := range req.URLs {
		if _, _, err := s.normalisePurgePath(u); err != nil {
			return fmt.Errorf("%w: url %q: %w", ErrBadPurge, u, err)
		}
	}
	for _, p := range req.Prefixes {
		if _, _, err := s.normalisePurgePath(p); err != nil {
			return fmt.Errorf("%w: prefix %q: %w", ErrBadPurge, p, err)
		}
	}
	for _, t := range req.Tags {
		if t == "" {
			return fmt.Errorf("%w: empty tag", ErrBadPurge)
		}
	}
	return nil
}
