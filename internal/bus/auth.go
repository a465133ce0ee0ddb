package bus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Role is what a NATS client does in Duet; it decides the subjects the client may use.
type Role string

// The roles. Every Duet process connects as one of them; the region's object store (MinIO's
// notification target) too.
const (
	// RoleEdge publishes its own heartbeats and purge acknowledgements and consumes its region's
	// purge stream through its own durable consumer.
	RoleEdge Role = "edge"
	// RolePurge (the purge service) owns its region's purge stream: it alone stores ticks, and it
	// stores the purges its API accepts; it reads heartbeats and acknowledgements.
	RolePurge Role = "purge"
	// RoleSteering reads heartbeats and publishes edge state changes (bus.EventSubject("edge")),
	// and keeps its region's viewer state bucket (ViewerBucket): it writes only the keys of its
	// own region there and reads every region's (sourced).
	RoleSteering Role = "steering"
	// RoleReplicate owns its region's origin event stream and tombstones, consumes the origin
	// stream, and stores the purges that keep edges in step with origin changes (never ticks).
	RoleReplicate Role = "replicate"
	// RoleOrigin is the region's object store: it publishes its bucket events, nothing else.
	RoleOrigin Role = "origin"
)

// Identity is one NATS client: who it is and, through its role, what it may do. A server built
// from identities (natsserver.Config.Identities, or RenderAuthorization for nats-server.conf)
// refuses every other connection, and every subject the role does not need.
type Identity struct {
	// Role decides the permissions. Required.
	Role Role
	// Region is the region whose subjects and streams the identity may use. Required.
	Region string
	// Name names an edge (RoleEdge): its heartbeat subject and durable consumer are the only ones
	// it may use. Empty gives every edge of the region one shared identity (a deployment whose
	// edges have no stable names, such as a Kubernetes Deployment), which lets an edge speak for
	// any edge of its region; name edges wherever you can. Other roles: a label only.
	Name string
	// NKey is the client's public user nkey ("U…"; the client holds the seed). Or User and
	// Password, for clients without nkey support (MinIO). Exactly one of the two.
	NKey string
	// User and Password are a user name and password.
	User, Password string
}

// Permissions are the subjects a client may publish to and subscribe to; anything else is
// refused by the server.
type Permissions struct {
	Publish, Subscribe []string
}

// inboxes is where clients get their request replies (JetStream API answers, publish acks,
// pulled messages).
const inboxes = "_INBOX.>"

// ErrInvalidIdentity is returned for an identity that cannot be turned into permissions.
var ErrInvalidIdentity = errors.New("invalid NATS identity")

// Validate reports what is wrong with id.
func (id Identity) Validate() error {
	var errs []error
	switch id.Role {
	case RoleEdge, RolePurge, RoleSteering, RoleReplicate, RoleOrigin:
	default:
		errs = append(errs, fmt.Errorf("unknown role %q", id.Role))
	}
	if err := ValidRegion(id.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	if id.Role == RoleEdge && id.Name != "" {
		if err := ValidName(id.Name); err != nil {
			errs = append(errs, fmt.Errorf("edge name: %w", err))
		}
	}
	switch {
	case id.NKey != "" && id.User != "":
		errs = append(errs, errors.New("give an nkey or a user, not both"))
	case id.NKey != "" && (!strings.HasPrefix(id.NKey, "U") || len(id.NKey) != 56):
		errs = append(errs, errors.New("nkey: want a public user nkey (56 characters starting with U)"))
	case id.NKey == "" && (id.User == "" || id.Password == ""):
		errs = append(errs, errors.New("an nkey, or a user and a password, is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalidIdentity, id.label(), err)
	}
	return nil
}

// label names id in messages, without its secrets.
func (id Identity) label() string {
	s := string(id.Role) + " of " + id.Region
	if id.Name != "" {
		s += " (" + id.Name + ")"
	}
	return s
}

// EdgeConsumerName is the durable consumer an edge reads its region's purge stream with.
func EdgeConsumerName(edge string) string { return "edge-" + edge }

// ReplicateConsumerName is the durable consumer a region's replicator reads its origin stream
// with.
func ReplicateConsumerName(region string) string { return "replicate-" + region }

// TombstoneBucket is the key-value bucket holding a region's replicated deletes.
func TombstoneBucket(region string) string { return "duet_tombstones_" + region }

// Permissions returns what id may publish and subscribe to: only what its role needs (see the
// roles). An invalid identity gets nothing.
func (id Identity) Permissions() Permissions {
	if id.Validate() != nil {
		return Permissions{}
	}
	r := id.Region
	// streamAdmin is creating, updating and reading a stream of its own.
	streamAdmin := func(stream string) []string {
		return []string{"$JS.API.STREAM.CREATE." + stream, "$JS.API.STREAM.UPDATE." + stream, "$JS.API.STREAM.INFO." + stream}
	}
	// durable is reading a stream through one durable consumer (pull), acknowledging its messages.
	durable := func(stream, consumer string) []string {
		return []string{
			"$JS.API.CONSUMER.CREATE." + stream + "." + consumer, "$JS.API.CONSUMER.CREATE." + stream + "." + consumer + ".>",
			"$JS.API.CONSUMER.DURABLE.CREATE." + stream + "." + consumer,
			"$JS.API.CONSUMER.INFO." + stream + "." + consumer, "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer,
			"$JS.ACK." + stream + "." + consumer + ".>",
		}
	}
	// Another region's stream information, through its JetStream domain (WatchSources).
	otherStreamInfo := "$JS.*.API.STREAM.INFO.*"
	var p Permissions
	switch id.Role {
	case RoleEdge:
		edge, consumer := id.Name, EdgeConsumerName(id.Name)
		if edge == "" {
			edge, consumer = "*", "*"
		}
		p.Publish = append([]string{HealthSubject(r, edge), purgeAckPrefix + r + "." + edge + ".*"},
			durable(PurgeStreamName(r), consumer)...)
		// Its region's heartbeats: peer fill finds the region's edges from them.
		p.Subscribe = []string{inboxes, HealthSubject(r, "*")}
	case RolePurge:
		p.Publish = append([]string{purgeStreamSubjects(r), otherStreamInfo}, streamAdmin(PurgeStreamName(r))...)
		p.Subscribe = []string{HealthWildcard, PurgeAckWildcard, inboxes}
	case RoleSteering:
		kv := viewerStreamName(r)
		p.Publish = []string{EventSubject("edge"),
			// Its own region's keys only: a region never writes another's copy of a viewer's state.
			"$KV." + ViewerBucket(r) + "." + r + ".>",
			// Reading any key of the bucket (every region's copies are sourced into it).
			"$JS.API.DIRECT.GET." + kv, "$JS.API.DIRECT.GET." + kv + ".>", "$JS.API.STREAM.MSG.GET." + kv,
			// Listing and watching the bucket: ephemeral ordered consumers.
			"$JS.API.CONSUMER.CREATE." + kv + ".>", "$JS.API.CONSUMER.CREATE." + kv, "$JS.API.CONSUMER.DELETE." + kv + ".*",
			"$JS.API.CONSUMER.INFO." + kv + ".*", "$JS.API.CONSUMER.MSG.NEXT." + kv + ".*",
			// $JS.API.INFO: creating a key-value bucket reads the account's JetStream limits;
			// other regions' stream information: WatchViewerSources.
			"$JS.API.INFO", otherStreamInfo,
		}
		p.Publish = append(p.Publish, streamAdmin(kv)...)
		p.Subscribe = []string{HealthWildcard, inboxes}
	case RoleReplicate:
		kv := "KV_" + TombstoneBucket(r)
		// $JS.API.INFO: creating a key-value bucket reads the account's JetStream limits.
		p.Publish = []string{purgePrefix + r + ".cmd.*", otherStreamInfo, "$JS.API.INFO", "$KV." + TombstoneBucket(r) + ".>",
			"$JS.API.DIRECT.GET." + kv, "$JS.API.DIRECT.GET." + kv + ".>", "$JS.API.STREAM.MSG.GET." + kv,
			// Listing the tombstones reads the bucket with ephemeral ordered consumers.
			"$JS.API.CONSUMER.CREATE." + kv + ".>", "$JS.API.CONSUMER.CREATE." + kv, "$JS.API.CONSUMER.DELETE." + kv + ".*",
			"$JS.API.CONSUMER.INFO." + kv + ".*", "$JS.API.CONSUMER.MSG.NEXT." + kv + ".*",
		}
		for _, s := range []string{OriginStreamName(r), PurgeStreamName(r), kv} {
			p.Publish = append(p.Publish, streamAdmin(s)...)
		}
		p.Publish = append(p.Publish, durable(OriginStreamName(r), ReplicateConsumerName(r))...)
		p.Subscribe = []string{inboxes}
	case RoleOrigin:
		p.Publish = []string{OriginEventSubject(r)}
		p.Subscribe = []string{inboxes}
	}
	return p
}

// RenderAuthorization writes the authorization block of a nats-server.conf that admits exactly
// ids, each with its role's permissions (the embedded server builds the same from
// natsserver.Config.Identities). Passwords are written as given: give bcrypt hashes
// (`nats server passwd`), or "$VAR" references that the server reads from its environment.
func RenderAuthorization(ids []Identity) (string, error) {
	var b strings.Builder
	b.WriteString("authorization {\n")
	var users []string
	for _, id := range ids {
		if err := id.Validate(); err != nil {
			return "", err
		}
		p := id.Permissions()
		entry := "    # " + id.label() + "\n    {"
		if id.NKey != "" {
			entry += "nkey: " + id.NKey
		} else {
			entry += "user: " + strconv.Quote(id.User) + ", password: " + confValue(id.Password)
		}
		entry += ", permissions: {\n      publish: {allow: " + confList(p.Publish) + "}\n      subscribe: {allow: " +
			confList(p.Subscribe) + "}\n    }}\n"
		users = append(users, entry) // nats-server takes nkey users in users too
	}
	if len(users) > 0 {
		b.WriteString("  users: [\n" + strings.Join(users, "") + "  ]\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// confValue writes a string for nats-server.conf: an environment reference ($NAME) as is, other
// values quoted.
func confValue(s string) string {
	if name, ok := strings.CutPrefix(s, "$"); ok && name != "" && !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) {
		return s
	}
	return strconv.Quote(s)
}

func confList(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
