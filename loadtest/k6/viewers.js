// HLS viewers for k6: each virtual user asks steering where to go (/v1/route), fetches the
// multivariant playlist, picks a rendition, fetches its media playlist (and EXT-X-MAP init
// segment), then the segments at real-time pace. On a failed request it retries the same URL
// on the next edge of the route (the next pathway), then asks steering again.
//
//   STEERING=http://127.0.0.1:8400 STREAM=/vod/sample/master.m3u8 VUS=50 DURATION=60s k6 run viewers.js
//
// Environment: STEERING (required), STREAM (default /vod/sample/master.m3u8), VUS (default 20),
// DURATION (default 30s), SPEED (playback speed, default 1 = real time), SEG_P99_MS (the
// segment latency threshold, default 500).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const STEERING = (__ENV.STEERING || '').replace(/\/$/, '');
const STREAM = __ENV.STREAM || '/vod/sample/master.m3u8';
const SPEED = parseFloat(__ENV.SPEED || '1');
const SEG_P99_MS = parseInt(__ENV.SEG_P99_MS || '500', 10);

if (!STEERING) {
  throw new Error('set STEERING to a steering URL, e.g. STEERING=http://127.0.0.1:8400');
}
if (!/^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(STEERING) && __ENV.ALLOW_REMOTE !== '1') {
  throw new Error(`STEERING ${STEERING} is not a loopback address; set ALLOW_REMOTE=1 only for a cluster you own`);
}

export const options = {
  scenarios: {
    viewers: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '20', 10),
      duration: __ENV.DURATION || '30s',
      gracefulStop: '5s',
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{kind:segment}': [`p(99)<${SEG_P99_MS}`],
    failed_segments: ['count<1'],
  },
};

const segmentLatency = new Trend('segment_latency', true);
const failedSegments = new Counter('failed_segments');
const pathwaySwitches = new Counter('pathway_switches');

function route(path) {
  const res = http.get(`${STEERING}/v1/route?path=${encodeURIComponent(path)}`, { tags: { kind: 'route' } });
  if (res.status !== 200) {
    return null;
  }
  const edges = (res.json('edges') || []).map((e) => e.url.replace(/\/$/, ''));
  return edges.length ? edges : null;
}

function resolve(base, uri) {
  if (/^https?:\/\//.test(uri)) {
    return uri.replace(/^https?:\/\/[^/]+/, '');
  }
  if (uri.startsWith('/')) {
    return uri;
  }
  return base.replace(/[^/]*$/, '') + uri;
}

// get fetches path from the first edge that answers, trying the route's edges in order.
function get(state, path, kind) {
  for (let i = 0; i < state.edges.length; i++) {
    const res = http.get(state.edges[i] + path, { tags: { kind }, timeout: '2s' });
    if (res.status >= 200 && res.status < 400) {
      if (i > 0) {
        pathwaySwitches.add(1);
        state.stale = true; // ask steering again before the next request
      }
      return res;
    }
  }
  state.stale = true;
  return null;
}

function ensureRoute(state, path) {
  if (state.stale || !state.edges) {
    const edges = route(path);
    if (edges) {
      state.edges = edges;
      state.stale = false;
    }
  }
  return !!state.edges;
}

export default function () {
  const state = { edges: null, stale: true };
  if (!ensureRoute(state, STREAM)) {
    sleep(1);
    return;
  }
  const master = get(state, STREAM, 'playlist');
  if (!check(master, { 'multivariant playlist': (r) => r !== null && r.body.startsWith('#EXTM3U') })) {
    sleep(1);
    return;
  }
  const variants = [];
  const lines = master.body.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('#EXT-X-STREAM-INF') && i + 1 < lines.length) {
      variants.push(resolve(STREAM, lines[i + 1].trim()));
    }
  }
  if (!variants.length) {
    return;
  }
  const mediaPath = variants[Math.floor(Math.random() * variants.length)];
  const media = get(state, mediaPath, 'playlist');
  if (!check(media, { 'media playlist': (r) => r !== null && r.body.startsWith('#EXTM3U') })) {
    return;
  }
  let duration = 0;
  for (const raw of media.body.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-MAP:')) {
      const m = /URI="([^"]+)"/.exec(line);
      if (m) {
        get(state, resolve(mediaPath, m[1]), 'init');
      }
    } else if (line.startsWith('#EXTINF:')) {
      duration = parseFloat(line.slice(8));
    } else if (line && !line.startsWith('#')) {
      const started = Date.now();
      ensureRoute(state, STREAM);
      const res = get(state, resolve(mediaPath, line), 'segment');
      const took = Date.now() - started;
      if (res === null) {
        failedSegments.add(1); // every pathway failed
      } else {
        segmentLatency.add(took);
      }
      // Real-time pace: the next segment is due one segment duration later.
      const wait = duration / SPEED - took / 1000;
      if (wait > 0) {
        sleep(wait);
      }
    }
  }
}
