// Package hitratio replays request traces through the edge's real cache tiers and through
// reference policies (an exact LRU, and the optimal static cache for independent requests), so
// that the tiers' admission and eviction can be judged by the hit ratio they reach.
package hitratio

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Zipf draws object ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^s. Unlike math/rand's Zipf it accepts
// s ≤ 1, the range measured for video and web caches (0.6–1.0). It is deterministic for a seed.
type Zipf struct {
	cdf []float64 // cumulative probabilities, cdf[n-1] == 1
	rng *rand.Rand
}

// NewZipf builds a generator over n objects with exponent s.
func NewZipf(n int, s float64, seed uint64) (*Zipf, error) {
	if n <= 0 || s <= 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("hitratio: zipf needs n > 0 and a finite s > 0, got n=%d s=%v", n, s)
	}
	cdf := make([]float64, n)
	var sum float64
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	cdf[n-1] = 1
	return &Zipf{cdf: cdf, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, nil
}

// Next is the next rank.
func (z *Zipf) Next() int {
	return sort.SearchFloat64s(z.cdf, z.rng.Float64())
}

// TopShare is the probability mass of the k most popular objects: the hit ratio of the best
// static cache holding k objects, the ceiling for any policy when requests are independent.
func (z *Zipf) TopShare(k int) float64 {
	switch {
	case k <= 0:
		return 0
	case k >= len(z.cdf):
		return 1
	}
	return z.cdf[k-1]
}
