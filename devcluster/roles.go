package devcluster

import (
	"time"

	"github.com/duetcdn/duet/internal/signedurl"
	"github.com/duetcdn/duet/origin/s3conf"
	"github.com/duetcdn/duet/steering"
)

// Roles turns what the cluster decided about each process into that role's configuration, which
// the cluster writes as YAML and starts `duet <role> --config` with. cmd/duet implements it with
// the roles' own config types, so that what `duet dev` writes is exactly what the roles read.
type Roles interface {
	Upload(UploadSpec) any
	Purge(PurgeSpec) any
	Replicate(ReplicateSpec) any
	Steering(SteeringSpec) any
	Edge(EdgeSpec) any
}

// Bucket is one region's origin: a bucket on its MinIO (path-style, static credentials: those of
// the MinIO user the role gets, never the root's).
type Bucket struct {
	Region string
	S3     s3conf.Config
}

// UploadSpec is `duet upload`'s configuration: every region's bucket, Region the default.
type UploadSpec struct {
	Region  string
	Buckets []Bucket
}

// PurgeSpec is one region's purge API: it listens on Listen, accepts Token, and waits for the
// acknowledgements of the edges of Regions. Every role connects to NATSURL with the nkey seed in
// NATSNKeyFile (its own identity; see natsIdentities).
type PurgeSpec struct {
	Region, Listen, Token, NATSURL, NATSNKeyFile string
	Regions                                      []string
}

// ReplicateSpec is one region's replicator, copying between Buckets.
type ReplicateSpec struct {
	Name, Region, NATSURL, NATSNKeyFile, Admin string
	Buckets                                    []Bucket
	SweepInterval                              time.Duration
}

// SteeringSpec is one region's steering service; EdgeURLs are the only edge URLs it accepts
// from heartbeats (the dev edges').
type SteeringSpec struct {
	Name, Listen, DefaultRegion, NATSURL, NATSNKeyFile string
	Regions                                            []steering.Region
	EdgeURLs                                           []string
	TLS                                                *TLSSpec // nil: plain HTTP
}

// EdgeSpec is one edge: Origins in the order it tries them (its region's first), its disk cache
// in CacheDir, the purges of PurgeRegions, content steering pointing at the steering URIs, its
// admin listener's /purge and /debug/pprof behind AdminToken.
type EdgeSpec struct {
	Name, Region, Listen, Admin, NATSURL, NATSNKeyFile string
	AdminToken                                         string
	Origins                                            []Bucket
	CacheDir                                           string
	PurgeRegions                                       []string
	HLSSteeringURI, DASHSteeringURI                    string
	// SignedURLs are the keys and protected prefixes (the protected stream's).
	SignedURLs signedurl.Config
	TLS        *TLSSpec // nil: plain HTTP
	// PeerSecret is the region's peer fill secret: the edges of a region fill their misses from
	// each other (docs/scale-out.md).
	PeerSecret string
}

// TLSSpec is `duet dev --https`'s certificate for a viewer-facing listener, and the CA that
// signs it (which steering trusts when it probes the edges).
type TLSSpec struct {
	Cert, Key, CA string
}
