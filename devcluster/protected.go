package devcluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/duetcdn/duet/internal/signedurl"
)

// The dev stack's protected stream: the sample again, under a prefix the edges serve only with
// a signed URL (signed_urls.protect). Every start makes a new signing key and mints one token
// for the stream, played as /play?src=/r/_t/<token>/vod/premium/master.m3u8: the path form, so
// that the stream's relative URIs and steering's pathway clones keep the token.

// protectedPrefix is where the protected stream lives, in the buckets and in viewers' URLs.
const protectedPrefix = "vod/premium/"

// devKeyID names the dev signing key.
const devKeyID = "dev"

// protectedTTL is how long the printed token plays.
const protectedTTL = 7 * 24 * time.Hour

// streams are the prefixes the sample is uploaded under.
var streams = []string{samplePrefix, protectedPrefix}

// signing is the dev stack's signed-URL setup.
type signing struct {
	cfg   signedurl.Config // what every edge runs with
	token string           // the protected stream's token
}

func newSigning(now time.Time) (signing, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return signing{}, fmt.Errorf("make the dev signing key: %w", err)
	}
	cfg := signedurl.Config{Keys: signedurl.KeyList{{ID: devKeyID, Secret: hex.EncodeToString(b[:])}}, SignWith: devKeyID,
		Protect: []string{"/" + protectedPrefix}}
	tok, err := cfg.Sign("", "/"+protectedPrefix, now.Add(protectedTTL), netip.Addr{})
	return signing{cfg: cfg, token: tok}, err
}

// playPath is the protected stream's master playlist with the token in its path.
func (s signing) playPath() string {
	return signedurl.PathMarker + s.token + "/" + protectedPrefix + "master.m3u8"
}
