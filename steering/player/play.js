// The Duet player page: plays ?src= with hls.js and shows where each segment came from.
// window.duetPlayer is the page's state for scripts and headless tests; its fields are documented
// where it is built below. No build step: plain ES2017, loaded after hls.min.js.
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var video = $('video');
  var params = new URLSearchParams(location.search);
  var given = params.get('src') || document.body.dataset.defaultSrc;
  var maxErrors = 50, maxRows = 12;
  var t0 = performance.now();
  // ?stall=N: reload the stream after N seconds without progress (0: never). hls.js can wait
  // for good without an error (a pathway switch while its first segments load, a request that
  // never answers): a viewer would reload the page, so the page does it, and says why.
  var stallLimit = parseFloat(params.get('stall'));
  if (!(stallLimit >= 0)) stallLimit = 10;

  var state = {
    src: '',             // the stream, resolved against the page
    errors: [],          // [{at, type, details, fatal, url}] newest last, at most maxErrors
    lastSegmentURL: '',  // URL of the last media segment loaded (after redirects)
    host: '',            // its host:port: the edge serving the stream
    pathway: '',         // content steering pathway of the level it belongs to ('.' = none)
    pathways: [],        // pathways the multivariant playlist offers
    pathwayPriority: [], // the steering server's latest order
    steeringURL: '',     // the steering manifest last loaded
    level: -1,           // index of the level playing
    segments: 0,         // media segments loaded
    played: 0,           // seconds of video played in all, across loops and seeks
    reloads: 0,          // times the page loaded src again (after a fatal error, or stuck)
    stuckReloads: 0,     // of which because nothing played for ?stall= seconds
    startupMs: -1,       // ms from the page's start to the first frame played (-1: not yet)
    stalls: 0,           // times playback stopped for more than 250 ms after it started
    stalledMs: 0,        // ms spent in those stalls, in all
    maxStallMs: 0,       // the longest stall, ms
    steeringLoads: 0,    // steering manifests loaded
    failed: false,       // true once the page gave up: nothing more will play
    hlsVersion: window.Hls ? window.Hls.version : '',
    cmcd: params.get('cmcd') !== '0', // hls.js sends CMCD (CTA-5004) with every request (?cmcd=0: off)
    sessionId: randomId(), // CMCD session id (sid): the page's row on the steering status page
    contentId: '',         // CMCD content id (cid): the stream's directory
    // Viewer state (steering's /v1/viewers API): where the viewer left off, in any region.
    viewer: viewerId(),    // ?viewer=, else this browser's id (localStorage), else a new random one
    title: '',             // the stream's directory without a signed URL's token: the title saved
    resume: null,          // what the page resumed from: {position, writtenIn, servedBy}, {none: true}, or {error}
    firstTime: -1,         // the play head when playback first moved (the resume point actually played)
    saved: null,           // the last save the API confirmed: {position, servedBy}
    saves: 0,              // saves confirmed
    saveErrors: 0,         // saves that failed
  };
  // Live values read from the element each time.
  Object.defineProperties(state, {
    currentTime: { enumerable: true, get: function () { return video.currentTime; } },
    playing: { enumerable: true, get: function () { return !video.paused && !video.ended && video.readyState > 2; } },
    buffered: { enumerable: true, get: bufferAhead },
    framesDecoded: { enumerable: true, get: function () { return quality().totalVideoFrames; } },
    framesDropped: { enumerable: true, get: function () { return quality().droppedVideoFrames; } },
  });
  window.duetPlayer = state;

  function randomId() {
    var b = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join('');
  }

  // viewerId is ?viewer= or the id this browser keeps, made once (32 hex digits).
  function viewerId() {
    var id = params.get('viewer');
    try {
      id = id || localStorage.getItem('duet.viewer');
      if (!id) { id = randomId(); localStorage.setItem('duet.viewer', id); }
    } catch (e) { id = id || randomId(); }
    return id;
  }

  function quality() {
    return video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : { totalVideoFrames: 0, droppedVideoFrames: 0 };
  }

  // Seconds buffered ahead of the play head.
  function bufferAhead() {
    var b = video.buffered, t = video.currentTime;
    for (var i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t < b.end(i)) return b.end(i) - t;
    }
    return 0;
  }

  function hostOf(u) {
    try { return new URL(u).host; } catch (e) { return ''; }
  }

  function addError(type, details, fatal, url) {
    var e = { at: video.currentTime, type: String(type || ''), details: String(details || ''), fatal: !!fatal, url: url || '' };
    state.errors.push(e);
    if (state.errors.length > maxErrors) state.errors.shift();
    var list = $('errors');
    if (list.firstElementChild && list.firstElementChild.className === 'none') list.textContent = '';
    var li = document.createElement('li');
    li.textContent = (e.fatal ? 'FATAL ' : '') + e.type + ': ' + e.details + (e.url ? ' (' + e.url + ')' : '');
    list.insertBefore(li, list.firstChild); // newest first
    while (list.children.length > 8) list.removeChild(list.lastChild);
  }

  // notice says on the page why the stream was reloaded (the last reason, with the time).
  function notice(text) {
    var n = $('notice');
    n.textContent = new Date().toTimeString().slice(0, 8) + ' ' + text;
    n.hidden = false;
  }

  function fmt(t) { return isFinite(t) ? t.toFixed(1) + ' s' : '–'; }

  function render() {
    var s = $('state');
    var label = video.error ? 'error' : video.ended ? 'ended' : video.paused ? 'paused' : video.readyState > 2 ? 'playing' : 'waiting';
    s.textContent = label;
    s.className = label;
    $('time').textContent = fmt(video.currentTime) + ' / ' + fmt(video.duration);
    $('buffer').textContent = fmt(bufferAhead());
    var q = quality();
    $('frames').textContent = q.totalVideoFrames + ' decoded, ' + q.droppedVideoFrames + ' dropped';
  }

  function levelText(hls, i) {
    var l = hls.levels && hls.levels[i];
    if (!l) return '–';
    return i + ': ' + l.width + 'x' + l.height + ' @ ' + Math.round(l.bitrate / 1000) + ' kbit/s';
  }

  // addRow lists a loaded segment, newest first, marking the rows where the edge changed.
  function addRow(frag, pathway, host) {
    var tbody = $('segments');
    var prev = tbody.firstElementChild;
    var tr = document.createElement('tr');
    if (prev && prev.dataset.host !== host) tr.className = 'changed';
    tr.dataset.host = host;
    var file = frag.url.split('?')[0].split('/').slice(-2).join('/');
    [new Date().toTimeString().slice(0, 8), frag.type, frag.type === 'main' ? String(frag.level) : 'a' + frag.level, pathway, host, file]
      .forEach(function (text) {
        var td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      });
    tbody.insertBefore(tr, prev);
    while (tbody.children.length > maxRows) tbody.removeChild(tbody.lastChild);
  }

  try {
    state.src = new URL(given, location.href).href;
    state.contentId = new URL(state.src).pathname.replace(/^\/r\//, '/').split('/').slice(1, -1).join('/').slice(0, 64);
  } catch (e) {
    addError('page', 'src is not a URL: ' + given, true);
    state.failed = true;
  }
  state.title = state.contentId.replace(/^_t\/[^\/]+\//, '');
  $('source').textContent = state.src || given;
  $('src').value = params.get('src') || '';
  video.muted = true; // browsers allow muted autoplay only
  video.loop = params.get('loop') !== '0';
  video.addEventListener('error', function () {
    if (video.error) addError('media', 'code ' + video.error.code + ' ' + (video.error.message || ''), true);
  });
  var lastTime = 0;
  video.addEventListener('timeupdate', function () {
    var d = video.currentTime - lastTime;
    if (d > 0 && d < 1.5) state.played += d; // a seek or a loop jumps further and is not played
    if (state.firstTime < 0 && video.currentTime > 0 && !video.seeking) state.firstTime = video.currentTime;
    lastTime = video.currentTime;
  });
  setInterval(render, 250);
  render();
  if (!state.src) return;

  // Progress: the play head moving. A stall is time without it after playback started, while
  // the video is neither paused by the viewer nor ended; a long one (or no start at all) makes
  // the page reload the stream.
  var lastPos = -1, lastProgress = performance.now(), stalledSince = 0, reload = null;
  setInterval(function () {
    var now = performance.now(), pos = video.currentTime;
    if (pos !== lastPos && !video.seeking) {
      if (lastPos >= 0 || pos > 0) {
        if (state.startupMs < 0 && pos > 0) state.startupMs = Math.round(now - t0);
        if (stalledSince) {
          var ms = now - stalledSince;
          if (ms > 250) { state.stalls++; state.stalledMs += Math.round(ms); }
          state.maxStallMs = Math.max(state.maxStallMs, Math.round(ms));
          stalledSince = 0;
        }
        lastProgress = now;
        attempts = 0;
      }
      lastPos = pos;
      return;
    }
    var started = state.startupMs >= 0;
    if (state.failed || video.ended || (started && video.paused && !stalledSince)) {
      lastProgress = now; // a viewer's pause is not a stall
      return;
    }
    if (started && !stalledSince) stalledSince = lastProgress;
    if (stallLimit > 0 && reload && now - lastProgress > stallLimit * 1000) {
      var why = (started ? 'nothing played' : 'playback did not start') + ' for ' + stallLimit + ' s';
      lastProgress = now;
      state.stuckReloads++;
      reload(why);
    }
  }, 100);

  if (!window.Hls) {
    addError('page', 'hls.js did not load', true);
    state.failed = true;
    return;
  }
  if (!window.Hls.isSupported()) {
    // Safari on iOS has no MediaSource but plays HLS itself; what it fetches is then invisible.
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = state.src;
      video.play().catch(function (e) { addError('autoplay', e.message, false); });
    } else {
      addError('page', 'this browser has neither MediaSource nor native HLS', true);
      state.failed = true;
    }
    return;
  }

  var Hls = window.Hls, E = Hls.Events;
  var maxReloads = 5; // in a row, without progress in between
  var attempts = 0;

  // start plays state.src from resumeAt seconds (-1: the beginning) with a new hls.js instance.
  function start(resumeAt) {
    // Content steering is on in the full hls.js build: it follows EXT-X-CONTENT-STEERING in the
    // multivariant playlist (which Duet's edges add) and moves between pathways as told.
    // A short buffer keeps the player fetching as it plays (and again on each loop), so the page
    // shows a failover within seconds instead of playing on from a 30 s buffer.
    // CMCD goes in the query (the CMCD parameter), which needs no CORS preflight; edges leave it
    // out of the cache key and aggregate it per edge for the status page.
    var cmcd = state.cmcd ? { cmcd: { sessionId: state.sessionId, contentId: state.contentId } } : {};
    var hls = new Hls(Object.assign({ enableWorker: true, startPosition: resumeAt, maxBufferLength: 6, maxMaxBufferLength: 10, backBufferLength: 4 }, cmcd));
    Object.defineProperty(state, 'hls', { value: hls, configurable: true }); // for the console; not enumerable, so JSON-safe
    hls.on(E.MANIFEST_PARSED, function () {
      state.pathways = hls.pathways.slice();
      video.play().catch(function (e) { addError('autoplay', e.message, false); });
    });
    hls.on(E.STEERING_MANIFEST_LOADED, function (_, data) {
      var m = data.steeringManifest || {};
      state.steeringURL = data.url;
      state.steeringLoads++;
      state.pathwayPriority = (m['PATHWAY-PRIORITY'] || []).slice();
      $('steering').textContent = state.pathwayPriority.join(' > ') + ' (TTL ' + m.TTL + ' s)';
    });
    hls.on(E.LEVEL_SWITCHED, function (_, data) {
      state.level = data.level;
      $('level').textContent = levelText(hls, data.level);
    });
    hls.on(E.FRAG_LOADED, function (_, data) {
      var frag = data.frag;
      if (frag.sn === 'initSegment') return;
      var nd = data.networkDetails || {};
      var url = nd.responseURL || nd.url || frag.url; // after redirects (XHR or fetch loader)
      var host = hostOf(url);
      var pathway = state.pathway;
      if (frag.type === 'main') {
        var l = hls.levels[frag.level];
        pathway = (l && l.pathwayId) || '.';
        state.pathway = pathway;
        state.lastSegmentURL = url;
        state.host = host;
        $('pathway').textContent = pathway === '.' ? '. (default: no steering)' : pathway;
        $('host').textContent = host;
        $('segment').textContent = url;
      }
      state.segments++;
      addRow(frag, pathway, host);
    });
    var mediaRecoveries = 0;
    hls.on(E.ERROR, function (_, data) {
      var url = data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || '';
      addError(data.type, data.details + (data.error && data.error.message ? ' – ' + data.error.message : ''), data.fatal, url);
      if (!data.fatal) return; // hls.js retries, and moves between steering pathways, by itself
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries++ < 2) {
        hls.recoverMediaError();
        return;
      }
      // Every pathway failed (an edge died, and steering's clones could not route around it).
      reload('fatal ' + data.details);
    });
    // reload does what a viewer would: load the stream again through src, which for /r/ asks
    // steering again and lands on an edge that is up, and carry on from the same position.
    var done = false;
    reload = function (why) {
      if (done) return;
      done = true;
      var at = video.currentTime > 0 ? video.currentTime : -1; // before destroy() detaches the video
      hls.destroy();
      if (attempts >= maxReloads) {
        state.failed = true;
        addError('page', 'gave up after ' + maxReloads + ' reloads in a row (' + why + ')', true);
        notice('Gave up: ' + why + ', ' + maxReloads + ' reloads in a row did not help.');
        return;
      }
      attempts++;
      state.reloads++;
      addError('page', 'reloading ' + state.src + ' at ' + fmt(Math.max(at, 0)) + ' because ' + why + ' (' + attempts + '/' + maxReloads + ')', false);
      notice('Reloaded the stream at ' + fmt(Math.max(at, 0)) + ' because ' + why + '.');
      setTimeout(function () { start(at); }, attempts > 1 ? 1000 * (attempts - 1) : 0);
    };
    hls.loadSource(state.src);
    hls.attachMedia(video);
  }

  // Viewer state: resume where the viewer left off (saved in any region: steering reads every
  // region's copy), then save the position every few seconds, on pause, after a seek and at the
  // end. ?resume=0: neither.
  var stateURL = state.title && params.get('resume') !== '0' ?
    'v1/viewers/' + encodeURIComponent(state.viewer) + '/titles/' + state.title.split('/').map(encodeURIComponent).join('/') : '';
  var lastSaved = -1, saveEvery = 5000;
  function apiJSON(r) {
    return r.json().then(function (b) {
      if (!r.ok) throw new Error((b && b.error) || 'HTTP ' + r.status);
      return b;
    });
  }
  function save() {
    var pos = video.currentTime;
    if (!stateURL || !(pos > 0) || !isFinite(pos) || state.firstTime < 0) return;
    var body = { position: Math.round(pos * 10) / 10 };
    if (lastSaved >= 0 && body.position < lastSaved - 0.5) body.seek = true; // a seek back (or a loop): the newest intent
    if (video.ended) body.finished = true;
    var l = state.hls && state.hls.levels && state.hls.levels[state.level];
    if (l && l.height) body.rendition = l.height + 'p';
    lastSaved = body.position;
    fetch(stateURL, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), keepalive: true })
      .then(apiJSON)
      .then(function (s) {
        state.saves++;
        state.saved = { position: body.position, servedBy: s.served_by };
        $('saved').textContent = fmt(body.position) + ' in region ' + s.served_by;
      })
      .catch(function (e) { state.saveErrors++; addError('state', 'save: ' + e.message, false); });
  }
  function resumeThen(play) {
    if (!stateURL) { play(-1); return; }
    var ctl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, 2000); // never hold the start for long
    fetch(stateURL, { cache: 'no-store', signal: ctl && ctl.signal })
      .then(function (r) { return r.status === 404 ? null : apiJSON(r); })
      .then(function (s) {
        clearTimeout(timer);
        if (!s || s.position == null || s.finished) {
          state.resume = { none: true };
          $('resume').textContent = s && s.finished ? 'finished last time: from the start' : 'nothing saved: from the start';
          play(-1);
          return;
        }
        state.resume = { position: s.position, writtenIn: s.position_written_in, servedBy: s.served_by };
        lastSaved = s.position;
        $('resume').textContent = 'at ' + fmt(s.position) + ', saved in region ' + s.position_written_in + ', read from region ' + s.served_by;
        play(s.position);
      })
      .catch(function (e) {
        clearTimeout(timer);
        state.resume = { error: e.message };
        $('resume').textContent = 'unavailable (' + e.message + '): from the start';
        play(-1);
      });
  }
  setInterval(function () { if (!video.paused) save(); }, saveEvery);
  video.addEventListener('pause', function () { if (!video.ended) save(); });
  video.addEventListener('seeked', save);
  video.addEventListener('ended', save);
  resumeThen(start);
})();
