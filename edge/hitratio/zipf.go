// Package hitratio replays request traces through the edge's real cache tiers and through
// reference policies (an exact LRU, and the optimal static cache for independent requests), so
// that the tiers' admission and eviction can be judged by the hit ratio they reach.
package hitratio

import (
	"fmt"
	"math/rand/v2"

	"github.com/duetcdn/duet/internal/zipf"
)

// Zipf draws object ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^s, for any s > 0 (video and web
// caches measure 0.6–1.0, where math/rand's Zipf does not go). It is deterministic for a seed.
type Zipf struct {
	*zipf.Sampler
	rng *rand.Rand
}

// NewZipf builds a generator over n objects with exponent s.
func NewZipf(n int, s float64, seed uint64) (*Zipf, error) {
	z, err := zipf.New(n, s)
	if err != nil {
		return nil, fmt.Errorf("hitratio: %w", err)
	}
	return &Zipf{Sampler: z, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, nil
}

// Next is the next rank.
func (z *Zipf) Next() int { return z.Draw(z.rng) }
