// Package zipf samples ranks with Zipf popularity for any exponent s > 0, for the load generator
// and the edge's hit-ratio simulation. math/rand's Zipf needs s > 1, but measured video
// catalogues sit near s ≈ 0.8–1.0, so this sampler inverts a precomputed cumulative table
// instead: P(rank k) ∝ 1/k^s for k = 1..N, one binary search per draw, no allocation.
package zipf

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// ErrConfig is wrapped by every invalid sampler configuration.
var ErrConfig = errors.New("invalid zipf sampler")

// MaxN bounds the catalogue size (the table costs 8 bytes a rank).
const MaxN = 10_000_000

// Sampler draws ranks 0..N-1 (0 the most popular). It is not safe for concurrent use: give
// each goroutine its own rand source through Draw.
type Sampler struct {
	s   float64
	cdf []float64 // cdf[k] = P(rank <= k); cdf[N-1] = 1
}

// New builds a sampler over n ranks with exponent s.
func New(n int, s float64) (*Sampler, error) {
	switch {
	case n < 1 || n > MaxN:
		return nil, fmt.Errorf("%w: catalogue size %d: use 1..%d", ErrConfig, n, MaxN)
	case !(s > 0) || math.IsInf(s, 0):
		return nil, fmt.Errorf("%w: exponent %v: use a finite s > 0 (0.9 is typical for video)", ErrConfig, s)
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
	return &Sampler{s: s, cdf: cdf}, nil
}

// N is the number of ranks.
func (z *Sampler) N() int { return len(z.cdf) }

// Prob is the probability of rank k (0-based).
func (z *Sampler) Prob(k int) float64 {
	if k < 0 || k >= len(z.cdf) {
		return 0
	}
	if k == 0 {
		return z.cdf[0]
	}
	return z.cdf[k] - z.cdf[k-1]
}

// Draw returns a rank in 0..N-1.
func (z *Sampler) Draw(r *rand.Rand) int {
	u := r.Float64()
	return sort.SearchFloat64s(z.cdf, u) // first k with cdf[k] >= u
}

// TopShare is the probability mass of the k most popular ranks: the hit ratio of the best static
// cache holding k objects, the ceiling for any policy when requests are independent.
func (z *Sampler) TopShare(k int) float64 {
	switch {
	case k <= 0:
		return 0
	case k >= len(z.cdf):
		return 1
	}
	return z.cdf[k-1]
}
