package zipf

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestFrequenciesFitTheLaw draws from s = 0.9 (below math/rand's s > 1 limit) and checks the
// observed counts against the law with a chi-square test: with 99 degrees of freedom the
// statistic exceeds 150 with probability well below 0.1%, while a sampler off by even a few
// percent on the head lands in the thousands.
func TestFrequenciesFitTheLaw(t *testing.T) {
	for _, s := range []float64{0.6, 0.9, 1.2} {
		z, err := New(100, s)
		if err != nil {
			t.Fatal(err)
		}
		const draws = 200_000
		counts := make([]int, z.N())
		r := rand.New(rand.NewPCG(1, 2))
		for range draws {
			counts[z.Draw(r)]++
		}
		var chi2 float64
		for k, c := range counts {
			exp := z.Prob(k) * draws
			chi2 += (float64(c) - exp) * (float64(c) - exp) / exp
		}
		if chi2 > 150 {
			t.Errorf("s=%v: chi-square %.1f over 99 dof: the draws do not follow the law", s, chi2)
		}
		// The head is the most popular, and by the ratio the law gives.
		if got, want := float64(counts[0])/float64(counts[9]), math.Pow(10, s); math.Abs(got-want)/want > 0.1 {
			t.Errorf("s=%v: rank1/rank10 = %.2f, want ≈ %.2f", s, got, want)
		}
	}
}

func TestProbabilitiesSumToOne(t *testing.T) {
	z, err := New(1000, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for k := range z.N() {
		sum += z.Prob(k)
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("probabilities sum to %v", sum)
	}
	if z.Prob(-1) != 0 || z.Prob(1000) != 0 {
		t.Fatal("out-of-range ranks must have probability 0")
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		n int
		s float64
	}{{0, 0.9}, {MaxN + 1, 0.9}, {10, 0}, {10, -1}, {10, math.NaN()}, {10, math.Inf(1)}} {
		if _, err := New(tc.n, tc.s); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%d, %v) = %v, want ErrConfig", tc.n, tc.s, err)
		}
	}
}
