// Package manifest writes HLS and DASH content steering documents and puts
// the steering hooks into playlists and MPDs.
//
// Two sides:
//
//   - The steering server's answer: [HLS] writes an HLS Steering Manifest and
//     [DASH] a DASH Content Steering response (DCSM), from an ordered list of
//     pathways; [ParseHLSQuery] and [ParseDASHQuery] read and check the
//     query parameters a player adds to its steering requests.
//   - The edge's rewrite of origin content: [InjectHLS] adds
//     EXT-X-CONTENT-STEERING and PATHWAY-ID attributes to a multivariant
//     playlist, and [InjectDASH] adds ContentSteering and
//     BaseURL@serviceLocation elements to an MPD, so packaged content needs
//     no change.
//
// # Specifications relied on
//
// HLS: "HTTP Live Streaming 2nd Edition", draft-pantos-hls-rfc8216bis
// (§4.4.6.2, §4.4.6.3, §4.4.6.6 and §7), which defers the manifest format to
// Apple's "HLS Content Steering" specification (draft-pantos-content-steering,
// §4 Steering Manifest, §5 Pathway Cloning, §6 query parameters):
//
//   - §4.4.6.6 EXT-X-CONTENT-STEERING: SERVER-URI (quoted-string, REQUIRED),
//     PATHWAY-ID (quoted-string, OPTIONAL, the initial pathway; it MUST be
//     the PATHWAY-ID of one or more Variant Streams). The tag MUST NOT
//     appear more than once in a Multivariant Playlist.
//   - §4.4.6.2 EXT-X-STREAM-INF PATHWAY-ID (quoted-string); a Variant Stream
//     without one is in the default pathway ".". §4.4.6.3: the attributes of
//     EXT-X-STREAM-INF apply to EXT-X-I-FRAME-STREAM-INF too (except
//     FRAME-RATE, AUDIO, SUBTITLES, CLOSED-CAPTIONS), so PATHWAY-ID goes on
//     I-frame streams as well. EXT-X-MEDIA has no PATHWAY-ID: renditions
//     belong to a pathway through the GROUP-IDs its variants reference.
//   - Pathway IDs contain only [a-z], [A-Z], [0-9], '.', '-' and '_'.
//   - The Steering Manifest is a JSON object: VERSION (REQUIRED, 1), TTL
//     (REQUIRED, seconds until the client reloads; 300 recommended),
//     RELOAD-URI (OPTIONAL, may be relative to the manifest's URI),
//     PATHWAY-PRIORITY (REQUIRED, at least one pathway, no duplicates;
//     clients ignore IDs they do not know) and PATHWAY-CLONES (OPTIONAL:
//     objects with BASE-ID, ID — which must not match another pathway — and
//     URI-REPLACEMENT with HOST and PARAMS, plus PER-VARIANT-URIS and
//     PER-RENDITION-URIS for HLS). Media type
//     application/vnd.apple.steering-list.
//   - §7.4: the client adds _HLS_pathway="<CURRENT-PATHWAY-ID>" and
//     _HLS_throughput=<bits per second> to each steering request (hls.js
//     sends the pathway unquoted; both forms are read).
//
// DASH: ETSI TS 103 998 V1.1.1, "DASH-IF Content Steering for DASH"
// (which superseded the DASH-IF community review draft):
//
//   - The response uses the HLS field names — VERSION, TTL, RELOAD-URI,
//     PATHWAY-PRIORITY, PATHWAY-CLONES with URI-REPLACEMENT HOST and PARAMS
//     (no per-variant URIs) — matching BaseURL@serviceLocation values. The
//     draft called the priority list SERVICE-LOCATION-PRIORITY; some players
//     (video.js) still read that name, so [DASH] writes both, with the same
//     list. dash.js reads PATHWAY-PRIORITY (its DashConstants).
//   - The client adds _DASH_pathway="<id>,<id>" (a quoted, comma-separated
//     list of the service locations it measured) and
//     _DASH_throughput=<bps>,<bps> (one value per listed location, empty
//     when unknown). dash.js orders the list by throughput, fastest first.
//   - The MPD carries <ContentSteering defaultServiceLocation="..."
//     queryBeforeStart="...">SERVER-URL</ContentSteering> as a child of MPD;
//     defaultServiceLocation is a whitespace-separated list.
//
// Cross-checked against the clients that read these documents: hls.js
// (src/controller/content-steering-controller.ts) and dash.js
// (src/dash/controllers/ContentSteeringController.js).
//
// # Failed pathways
//
// A pathway whose edges are all unhealthy is moved to the end of the
// priority list, not dropped. The list must name at least one pathway; a DASH
// client whose MPD shares no service location with the list stops playback
// (ETSI TS 103 998 clause 7); clients penalise a pathway that fails them on
// their own; and instances of steering may briefly disagree about health. At
// the end, a failed pathway is tried only after every healthy one.
//
// # What players really do
//
// Read from hls.js 1.7 (src/controller/content-steering-controller.ts, the
// build bundled in steering/player/assets) and Shaka Player
// (lib/util/content_steering_manager.js); what a steering service must
// therefore send:
//
//   - hls.js starts on the playlist's EXT-X-CONTENT-STEERING PATHWAY-ID (or
//     the first variant's pathway) and sends it as _HLS_pathway, unquoted.
//     Shaka sends no _HLS_pathway or _DASH_pathway on its first request (it
//     knows no priority yet), then the first pathway of the last priority it
//     could use. So the first request of a session may name no pathway: take
//     the player to be on the playlist's own.
//   - hls.js applies PATHWAY-PRIORITY as soon as a manifest loads: the first
//     pathway that is not penalised and has variants becomes current at once,
//     even while the first segments load. A switch at that moment can leave
//     hls.js stalled for good, without an error (no frame, no fatal event):
//     the first answer of a session must keep the player's pathway first.
//   - When a segment or playlist fails on every variant of a pathway (hls.js
//     first tries the pathway's other levels; a refused connection is not
//     retried), hls.js penalises the pathway ID for 300 s
//     (PATHWAY_PENALTY_DURATION_MS) and moves to the next pathway of the last
//     PATHWAY-PRIORITY it received, with no steering request. The next
//     pathway must already exist as a clone: give every edge a pathway of its
//     own, and list the other edges of the player's region right after its
//     own, so a dead edge's viewers move within the region, not to the next
//     region for five minutes. Shaka bans a failed location's host for 60 s.
//   - hls.js makes the clones of PATHWAY-CLONES once: a clone whose ID is
//     already a pathway (of the playlist, or an earlier clone) is ignored,
//     whatever its HOST. A pathway ID thus names one host for the life of the
//     session; an edge that comes back elsewhere needs a new ID. Shaka keeps
//     only the last answer's clones and resolves BASE-ID among the playlist's
//     or MPD's own pathways, not among clones: BASE-ID must be a pathway the
//     playlist or MPD itself carries.
//   - URI-REPLACEMENT HOST replaces the host name only: hls.js assigns it to
//     URL.host (a host without a port keeps the URL's port) and Shaka to the
//     URI's domain. Pathways must differ by name or address, not by port.
//   - A failed steering request (connection refused, timeout, 5xx) is retried
//     by hls.js after TTL at the same URI, forever, with nothing shown to the
//     viewer; 410 turns steering off for the session; 429 stops reloading.
//     Shaka retries after the last TTL too. RELOAD-URI is the only way to
//     move a player's reloads elsewhere, and it must be chosen before the
//     failure: point it at a steering service that the loss of the player's
//     own region leaves alive, and let every steering instance agree on which
//     region that is (answers from two instances that disagree send the
//     player's reloads back and forth, half of the time to the region whose
//     loss then takes them). Both players resolve a relative RELOAD-URI
//     against the manifest's URI and keep the query parameters it carries.
//   - hls.js asks for steering when it starts loading (startLoad), alongside
//     the first segments, so the first answer lands while they load: how
//     late depends on the network, which is why the rule above cannot be
//     met by answering fast.
package manifest
