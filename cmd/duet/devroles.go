package main

import (
	"time"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/edge"
	"github.com/duetcdn/duet/internal/tlsconf"
	"github.com/duetcdn/duet/origin/replicate"
	"github.com/duetcdn/duet/origin/upload"
	"github.com/duetcdn/duet/origin/upload/uploadcmd"
	"github.com/duetcdn/duet/purge"
	"github.com/duetcdn/duet/steering"
)

// devRoles gives `duet dev` the roles' own configurations, so each process it starts reads
// exactly what `duet <role> --config` would.
type devRoles struct{}

var _ devcluster.Roles = devRoles{}

func (devRoles) Upload(s devcluster.UploadSpec) any {
	up := uploadcmd.DefaultSettings()
	up.Region = s.Region
	for _, b := range s.Buckets {
		up.Regions = append(up.Regions, upload.Region{Name: b.Region, Config: b.S3})
	}
	return up
}

func (devRoles) Purge(s devcluster.PurgeSpec) any {
	pc := purgeServeConfig{ServiceConfig: purge.DefaultServiceConfig(), NATS: natsConfig{URLs: []string{s.NATSURL}, NKeyFile: s.NATSNKeyFile}}
	pc.Region, pc.Regions, pc.Listen = s.Region, s.Regions, s.Listen
	pc.Tokens = []purge.Token{{Name: "dev", Secret: s.Token}}
	return pc
}

func (devRoles) Replicate(s devcluster.ReplicateSpec) any {
	rc := defaultReplicateRoleConfig()
	rc.Name, rc.Region, rc.NATS, rc.Admin = s.Name, s.Region, natsConfig{URLs: []string{s.NATSURL}, NKeyFile: s.NATSNKeyFile}, s.Admin
	for _, b := range s.Buckets {
		rc.Regions = append(rc.Regions, replicate.RegionConfig{Name: b.Region, Config: b.S3})
	}
	rc.SweepInterval = s.SweepInterval
	return rc
}

func (devRoles) Steering(s devcluster.SteeringSpec) any {
	sc := steeringRoleConfig{Config: steering.DefaultConfig(), Name: s.Name, NATS: natsConfig{URLs: []string{s.NATSURL}, NKeyFile: s.NATSNKeyFile}}
	sc.Listen, sc.Regions, sc.DefaultRegion = s.Listen, s.Regions, s.DefaultRegion
	sc.EdgeURLs = s.EdgeURLs
	// Each dev steering serves its own region (its default region) and keeps its viewer state.
	sc.ViewerState.Region = s.DefaultRegion
	if s.TLS != nil {
		sc.TLS = tlsconf.Default()
		sc.TLS.Certificates = []tlsconf.CertKey{{Cert: s.TLS.Cert, Key: s.TLS.Key}}
		sc.ProbeCARoots = s.TLS.CA
	}
	return sc
}

// Edge sizes a dev edge for a laptop: small tiers, a quick drain, and quick failover between the
// regions' origins.
func (devRoles) Edge(s devcluster.EdgeSpec) any {
	ec := defaultEdgeRoleConfig()
	ec.Name, ec.Region, ec.Listen, ec.AdminListen, ec.AdminToken = s.Name, s.Region, s.Listen, s.Admin, s.AdminToken
	for i, b := range s.Origins {
		o := edge.OriginConfig{Name: b.Region, Type: "s3", Config: b.S3, Timeout: 5 * time.Second}
		if i == 0 {
			ec.Origin = o
		} else {
			ec.Origin.Fallbacks = append(ec.Origin.Fallbacks, o)
		}
	}
	ec.Origin.BreakerFailures, ec.Origin.BreakerCooldown = 3, time.Second
	ec.Memory = edge.MemoryConfig{MaxBytes: 64 << 20, MaxObjectBytes: 4 << 20}
	ec.Disk = edge.DiskConfig{Dir: s.CacheDir, MaxBytes: 512 << 20}
	ec.DrainDelay, ec.ShutdownTimeout = 500*time.Millisecond, 5*time.Second
	ec.NATS, ec.Purge.Regions = natsConfig{URLs: []string{s.NATSURL}, NKeyFile: s.NATSNKeyFile}, s.PurgeRegions
	ec.Steering = steeringInjectConfig{HLSServerURI: s.HLSSteeringURI, DASHServerURI: s.DASHSteeringURI}
	ec.SignedURLs = s.SignedURLs
	// Prefetch is off by default (it spends origin egress on a guess); the dev player shows
	// what it buys: after its first segments, every segment is a hit.
	ec.Prefetch.Enabled = true
	ec.PeerFill.Enabled, ec.PeerFill.Secret = s.PeerSecret != "", s.PeerSecret
	if s.TLS != nil {
		ec.TLS.Certificates = []tlsconf.CertKey{{Cert: s.TLS.Cert, Key: s.TLS.Key}}
	}
	return ec
}
