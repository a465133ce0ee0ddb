// Package rendezvous is highest-random-weight (rendezvous) hashing: the score of a (key, member)
// pair, from which every party that sees the same members picks the same owner for a key, and
// losing a member moves only the keys it owned. Steering orders a region's edges with it
// (steering/hrw); edges pick the peer that owns a cache key with it (edge/peers).
package rendezvous

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// Hash is the hash of a key or a member's ID that Score takes.
func Hash(s string) uint64 { return xxhash.Sum64String(s) }

// Score is the rendezvous score of a key for a member, from their hashes: u, uniform in (0, 1)
// from a hash of (key, member), when unweighted; -w / ln(u) with weight w otherwise (weighted
// rendezvous hashing: a member's chance to score highest is its share of the total weight). When
// all members weigh the same, -1/ln(u) orders like u itself, so the logarithm is skipped. A
// weight of 0 (or less) counts as 1.
func Score(keyHash, memberHash uint64, weight float64, weighted bool) float64 {
	h := mix(keyHash ^ memberHash)
	u := (float64(h>>11) + 0.5) / (1 << 53) // (0, 1)
	if !weighted {
		return u
	}
	if !(weight > 0) {
		weight = 1
	}
	return -weight / math.Log(u)
}

// mix is the SplitMix64 finalizer: every input bit affects every output bit, so (key, member)
// pairs that differ in one bit score independently.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
