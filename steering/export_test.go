package steering

import "context"

// ProbeWith probes baseURL with s's own prober (the one New built from the config).
func ProbeWith(ctx context.Context, s *Server, baseURL string) error {
	return s.prober.Probe(ctx, baseURL)
}
