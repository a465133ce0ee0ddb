package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// pathwayPenalty is how long hls.js benches a pathway that failed it
// (PATHWAY_PENALTY_DURATION_MS in its content-steering controller).
const pathwayPenalty = 300 * time.Second

// steeringTag reads a multivariant playlist's EXT-X-CONTENT-STEERING: the steering URI and the
// initial pathway ("." when the tag names none). ok is false without the tag.
func steeringTag(body []byte) (serverURI, pathway string, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#EXT-X-CONTENT-STEERING:") {
			continue
		}
		serverURI, ok = attr(line, "SERVER-URI")
		if !ok || serverURI == "" {
			return "", "", false
		}
		pathway, _ = attr(line, "PATHWAY-ID")
		if pathway == "" {
			pathway = "."
		}
		return serverURI, pathway, true
	}
	return "", "", false
}

// steering is what an hls.js-like player knows of content steering, and does with it: it plays
// from its current pathway; when a request fails there, it benches the pathway for
// pathwayPenalty and moves to the next pathway of the last PATHWAY-PRIORITY that is not benched
// and that it has a host for (its playlist's own, or a clone it was given), without asking
// steering; every TTL it loads the steering manifest again (from RELOAD-URI), makes the clones
// it does not have yet (a clone whose ID it has is ignored), and moves to the first pathway of
// the new priority that is not benched.
type steering struct {
	uri       string            // the next steering request, without _HLS_ parameters
	next      time.Time         // when to load it
	priority  []string          // the last PATHWAY-PRIORITY
	hosts     map[string]string // pathway ID → base URL (scheme://host:port)
	current   string
	ttl       time.Duration // the last TTL
	benched   map[string]time.Time
	switches  int // pathway changes
	lastError error
	guard     Guard // steering URIs and clone hosts off this machine are refused (ignored)
}

func newSteering(serverURI, pathway, baseURL string, guard Guard) *steering {
	s := &steering{uri: serverURI, current: pathway, hosts: map[string]string{pathway: baseURL}, benched: map[string]time.Time{}, guard: guard}
	if err := guard.Check("steering URI", serverURI); err != nil {
		s.uri, s.lastError = "", err
	}
	return s
}

// baseURL is the current pathway's scheme://host:port.
func (s *steering) baseURL() string { return s.hosts[s.current] }

// fail benches the current pathway and moves to the next usable one; false when none is left.
func (s *steering) fail(now time.Time) bool {
	if _, ok := s.benched[s.current]; !ok {
		s.benched[s.current] = now
	}
	return s.apply(now)
}

// apply makes the first usable pathway of the priority current (hls.js's
// updatePathwayPriority); false when none is usable.
func (s *steering) apply(now time.Time) bool {
	for id, at := range s.benched {
		if now.Sub(at) > pathwayPenalty {
			delete(s.benched, id)
		}
	}
	order := s.priority
	if len(order) == 0 {
		order = []string{s.current}
	}
	for _, id := range order {
		if _, ok := s.benched[id]; ok {
			continue
		}
		if _, ok := s.hosts[id]; !ok {
			continue
		}
		if id != s.current {
			s.current = id
			s.switches++
		}
		return true
	}
	_, benched := s.benched[s.current]
	return !benched
}

// steeringManifest is the part of an HLS steering manifest a player reads.
type steeringManifest struct {
	Version  int      `json:"VERSION"`
	TTL      int      `json:"TTL"`
	Reload   string   `json:"RELOAD-URI"`
	Priority []string `json:"PATHWAY-PRIORITY"`
	Clones   []struct {
		BaseID string `json:"BASE-ID"`
		ID     string `json:"ID"`
		URI    struct {
			Host string `json:"HOST"`
		} `json:"URI-REPLACEMENT"`
	} `json:"PATHWAY-CLONES"`
}

// load asks steering when it is due. A failed load is tried again after the last TTL at the
// same URI, as hls.js does.
func (s *steering) load(ctx context.Context, client *http.Client, timeout time.Duration, now time.Time) {
	if now.Before(s.next) || s.uri == "" {
		return
	}
	m, u, err := s.fetch(ctx, client, timeout)
	if err != nil {
		s.lastError = err
		s.next = now.Add(s.retryAfter())
		return
	}
	s.lastError = nil
	if m.Reload != "" {
		if ru, err := u.Parse(m.Reload); err == nil && s.guard.Check("RELOAD-URI", ru.String()) == nil {
			q := ru.Query()
			q.Del("_HLS_pathway")
			q.Del("_HLS_throughput")
			ru.RawQuery = q.Encode()
			s.uri = ru.String()
		}
	}
	s.ttl = time.Duration(max(m.TTL, 1)) * time.Second
	s.next = now.Add(s.ttl)
	for _, c := range m.Clones {
		if _, have := s.hosts[c.ID]; have || c.URI.Host == "" {
			continue
		}
		base, ok := s.hosts[c.BaseID]
		if !ok {
			continue
		}
		bu, err := url.Parse(base)
		if err != nil {
			continue
		}
		if p := bu.Port(); p != "" {
			bu.Host = c.URI.Host + ":" + p // HOST replaces the host name; the port stays
		} else {
			bu.Host = c.URI.Host
		}
		if s.guard.Check("pathway clone", bu.String()) == nil {
			s.hosts[c.ID] = bu.String()
		}
	}
	if len(m.Priority) > 0 {
		s.priority = m.Priority
		s.apply(now)
	}
}

// retryAfter is when a failed load is tried again: the last TTL (hls.js), 10 s before any.
func (s *steering) retryAfter() time.Duration {
	if s.ttl > 0 {
		return s.ttl
	}
	return 10 * time.Second
}

func (s *steering) fetch(ctx context.Context, client *http.Client, timeout time.Duration) (steeringManifest, *url.URL, error) {
	u, err := url.Parse(s.uri)
	if err != nil {
		return steeringManifest{}, nil, fmt.Errorf("steering URI %q: %w", s.uri, err)
	}
	q := u.Query()
	q.Set("_HLS_pathway", s.current)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return steeringManifest{}, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return steeringManifest{}, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return steeringManifest{}, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return steeringManifest{}, nil, fmt.Errorf("steering %s: %s", u.Redacted(), resp.Status)
	}
	var m steeringManifest
	if err := json.Unmarshal(body, &m); err != nil || m.Version != 1 {
		return steeringManifest{}, nil, fmt.Errorf("steering %s: not a version 1 steering manifest", u.Redacted())
	}
	return m, u, nil
}
