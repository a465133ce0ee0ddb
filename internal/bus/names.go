package bus

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest region, edge or purge id name, in bytes.
const MaxNameLen = 64

// ValidName reports whether s can name a region, an edge or a purge: 1 to MaxNameLen characters
// from [A-Za-z0-9_-]. Such a name is one NATS subject token, a valid stream and consumer name
// part and a valid JetStream domain. The error wraps ErrInvalidName.
func ValidName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %q is longer than %d characters", ErrInvalidName, s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q: use letters, digits, - and _", ErrInvalidName, s)
		}
	}
	return nil
}

// ValidRegion reports whether s can name a region: a valid name (ValidName) other than "ack",
// which would make the region's purge subjects ("duet.purge.<region>.>") swallow the purge
// acknowledgements ("duet.purge.ack.>"). The error wraps ErrInvalidName.
func ValidRegion(s string) error {
	if err := ValidName(s); err != nil {
		return err
	}
	if s == reservedRegion {
		return fmt.Errorf("%w: region %q is reserved (it would collide with %s)", ErrInvalidName, s, PurgeAckWildcard)
	}
	return nil
}

// reservedRegion is the one valid name a region cannot have.
const reservedRegion = "ack"

// Subjects and stream names, all in one place. Arguments are expected to be valid names
// (ValidName); the functions do not check them.
const (
	// HealthWildcard matches every edge's heartbeats in every region.
	HealthWildcard = "duet.health.>"
	// PurgeAckWildcard matches every edge's purge acknowledgements.
	PurgeAckWildcard = "duet.purge.ack.>"

	healthPrefix   = "duet.health."
	eventPrefix    = "duet.events."
	purgePrefix    = "duet.purge."
	purgeAckPrefix = "duet.purge.ack."
	purgeStreamPfx = "PURGE_"
)

// HealthSubject is where edge publishes its heartbeats (core NATS, crosses regions):
// "duet.health.<region>.<edge>".
func HealthSubject(region, edge string) string { return healthPrefix + region + "." + edge }

// EventSubject is where state changes of the given kind are published (core NATS):
// "duet.events.<kind>".
func EventSubject(kind string) string { return eventPrefix + kind }

// PurgeSubject is where a purge accepted in region is stored (JetStream, stream
// PurgeStreamName(region)): "duet.purge.<region>.cmd.<id>". Subjects are unique per id.
func PurgeSubject(region, id string) string { return purgePrefix + region + ".cmd." + id }

// PurgeTickSubject is where region's purge service stores its liveness ticks (JetStream, stream
// PurgeStreamName(region); the stream keeps only the latest): "duet.purge.<region>.tick". The
// stored publish is also a core message, so a subscriber in any linked region sees it live.
func PurgeTickSubject(region string) string { return purgePrefix + region + ".tick" }

// PurgeAckSubject is where edge of region acknowledges applying purge id (core NATS):
// "duet.purge.ack.<region>.<edge>.<id>". The edge's name is in the subject so that the servers'
// permissions let an edge acknowledge only as itself (Identity.Permissions).
func PurgeAckSubject(region, edge, id string) string {
	return purgeAckPrefix + region + "." + edge + "." + id
}

// PurgeAckSender returns the region and edge an acknowledgement's subject names; ok is false for
// other subjects.
func PurgeAckSender(subject string) (region, edge string, ok bool) {
	rest, ok := strings.CutPrefix(subject, purgeAckPrefix)
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// PurgeStreamName is region's purge stream: "PURGE_<region>". It holds the purges accepted in
// region and, by sourcing, those accepted in every other region.
func PurgeStreamName(region string) string { return purgeStreamPfx + region }

// purgeStreamSubjects is what region's purge stream captures: "duet.purge.<region>.>".
func purgeStreamSubjects(region string) string { return purgePrefix + region + ".>" }

// regionOfPurgeStream returns the region a purge stream name belongs to.
func regionOfPurgeStream(stream string) (string, bool) {
	return strings.CutPrefix(stream, purgeStreamPfx)
}

// EdgeReadyPath is the path on an edge's viewer listener that answers 200 while the edge takes
// viewers and 503 while it starts or drains; steering probes it.
const EdgeReadyPath = "/.well-known/duet/ready"
