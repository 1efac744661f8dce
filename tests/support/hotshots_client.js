// Sends DogStatsD samples with the real `hot-shots` client (npm), for tests/dogstatsd.rs; the
// same JSON as dogstatsd_client.py ({"udp_port": P} or {"socket": path}, "buffered": bool,
// "phases": [...]), over UDP or the Unix datagram socket (`protocol: 'uds'`, which needs the
// optional native module `unix-dgram` next to hot-shots).
// Each phase is sent inside one 10 s bucket (seconds 1-5); prints {"buckets": [...]}.
// hot-shots samples client-side (`Math.random() < sampleRate` keeps a sample); every sample with a
// rate must arrive here, so Math.random is 0: the wire format, `|@rate` included, is the client's.
'use strict';
const path = process.env.HOT_SHOTS_DIR;
const StatsD = require(path);
Math.random = () => 0;

const cfg = JSON.parse(process.argv[2]);
const target = cfg.socket ? { protocol: 'uds', path: cfg.socket } : { host: '127.0.0.1', port: cfg.udp_port };
const c = new StatsD({
  ...target,
  maxBufferSize: cfg.buffered ? 1400 : 0,
  bufferFlushInterval: 50,
  includeDatadogTelemetry: false,
  includeDataDogTags: false,
  errorHandler: (e) => { console.error(e); process.exit(1); },
});

function send(s) {
  const rate = s.rate === null || s.rate === undefined ? undefined : s.rate;
  const tags = s.tags || [];
  switch (s.kind) {
    case 'gauge': return c.gauge(s.name, s.value, rate, tags);
    case 'increment': return c.increment(s.name, s.value, rate, tags);
    case 'decrement': return c.decrement(s.name, s.value, rate, tags);
    case 'set': return c.set(s.name, s.value, rate, tags);
    case 'histogram': return c.histogram(s.name, s.value, rate, tags);
    case 'timing': return c.timing(s.name, s.value, rate, tags);
    case 'distribution': return c.distribution(s.name, s.value, rate, tags);
    case 'event': {
      const o = {};
      for (const k of ['alert_type', 'aggregation_key', 'source_type_name', 'date_happened', 'priority', 'hostname']) {
        if (s[k] !== undefined && s[k] !== null) o[k] = s[k];
      }
      return c.event(s.title, s.text, o, tags);
    }
    case 'service_check': {
      const o = {};
      if (s.message) o.message = s.message;
      return c.check(s.name, s.status, o, tags);
    }
    default: throw new Error('unknown kind ' + s.kind);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const buckets = [];
  for (const phase of cfg.phases) {
    let t;
    for (;;) {
      t = Date.now() / 1000;
      const start = Math.floor(t) - (Math.floor(t) % 10);
      if (t % 10 >= 1 && t % 10 < 5 && (buckets.length === 0 || start > buckets[buckets.length - 1])) break;
      await sleep(50);
    }
    const start = Math.floor(t) - (Math.floor(t) % 10);
    for (const s of phase) send(s);
    await new Promise((r) => c.flush ? c.flush(r) : r());
    await sleep(200);
    if (Date.now() / 1000 - start >= 9) { console.error('a phase overran its bucket'); process.exit(1); }
    buckets.push(start);
  }
  c.close(() => {
    console.log(JSON.stringify({ buckets }));
  });
})();
