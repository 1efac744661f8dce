#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 20), corpus seeded from the captured fixtures.
# Needs a nightly toolchain and cargo-fuzz (.ci/run installs both).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
fix=../tests/fixtures/proc/debian12-6.18
declare -A seeds=(
  [proc_stat]=stat [meminfo]=meminfo [loadavg]=loadavg [uptime]=uptime [file_nr]=sys/fs/file-nr
  [sockstat]=net/sockstat
  [net_dev]=net/dev [diskstats]=diskstats [snmp]=net/snmp [mountinfo]=self/mountinfo
  [pid_stat]=pid/evil/stat [pid_statm]=pid/self/statm [pid_status]=pid/evil/status [pid_io]=pid/self/io
  [cmdline]=pid/evil/cmdline [cgroup]=pid/1/cgroup [keyval]=cpuinfo
)
mkdir -p corpus/http_response corpus/url corpus/snmp corpus/passwd corpus/dogstatsd corpus/smaps
# The agent's own smaps (the scan's input), as the running process has it, after the two bytes
# that pick the chunked reader's buffer (272 bytes) and read (6 bytes) sizes.
{ printf '\x10\x05'; head -c 16384 /proc/self/smaps; } > corpus/smaps/self
printf 'page.views:1|c|@0.5|#env:prod,b\nlat:1:2:3|ms|c:abc|T1700000000\n_e{6,3}:Deploy|v42|p:low|t:error|#a\n_sc|db|2|#x|m:down\r\n' > corpus/dogstatsd/seed
# The aggregator (the input format is in fuzz_targets/dogstatsd_aggregate.rs): every metric type
# and an event over 15 s flushes, overflowing sums, a stall past the counter's 300 s of zeros, a
# jump back and one forward; a one-context cap with no sample storage; a start at the epoch.
mkdir -p corpus/dogstatsd_aggregate
python3 - <<'PY'
import struct
def dgram(d, op=3):
    d = d.encode() if isinstance(d, str) else d
    return (bytes([op, len(d)]) if op % 8 != 7 else bytes([op]) + struct.pack('<H', len(d))) + d
adv = lambda s: bytes([1, s])
jump = lambda s: bytes([2]) + struct.pack('<h', s // 7)
FLUSH = b'\x00'
mixed = (bytes([7, 64, 1]) + dgram('page.views:1|c|@0.5|#env:prod,b\nlat:10:30|ms|@0.25\ns:x|s\ns:y|s\ns:x|s\ng:1|g|#b,a,host:web1')
         + dgram('h:1e308|h\nh:1e308|h|@0.5\nc:1e308|c|@0.1\nc:1e308|c\n_e{6,3}:Deploy|v42|#a\nd:1|d\n_sc|db|2', 0x13)
         + adv(12) + dgram('page.views:2|c|#b,env:prod\ng:2|g|#a,b,host:web1\nlat:5|h|@0.00000000001', 0x27) + adv(3) + FLUSH
         + b''.join(adv(15) + FLUSH for _ in range(25)) + jump(-700) + dgram('page.views:1|c|#env:prod,b') + FLUSH
         + jump(4000) + dgram('x:1|c|#' + ','.join(str(i % 7) for i in range(300)), 7) + adv(20) + FLUSH)
open('corpus/dogstatsd_aggregate/mixed', 'wb').write(mixed)
tiny = bytes([0, 0, 9]) + dgram('h:1:2:3|h\ns:a|s\nother:1|g\nh:4|h') + adv(10) + FLUSH + adv(250) + adv(250) + FLUSH
open('corpus/dogstatsd_aggregate/tiny-limits', 'wb').write(tiny)
epoch = bytes([3, 8, 0]) + dgram('a:1|c\nb:2|g', 0x1b) + adv(9) + FLUSH + dgram('a:1|c') + adv(11) + FLUSH + jump(-100) + FLUSH
open('corpus/dogstatsd_aggregate/epoch', 'wb').write(epoch)
# A histogram of 100 samples and a set of 70 members in one bucket (storage past the 64 slots a
# flush keeps), then small buckets of the same contexts.
grow = (bytes([0x1b, 128, 1]) + dgram('h:' + ':'.join(str(i) for i in range(100)) + '|h', 7)
        + dgram(''.join('s:%d|s\n' % i for i in range(70)), 7) + adv(15) + FLUSH
        + dgram('h:1|h\ns:a|s') + adv(10) + FLUSH + dgram('h:2:3|h') + adv(10) + FLUSH)
open('corpus/dogstatsd_aggregate/grow-shrink', 'wb').write(grow)
# A context key past 2 KiB (refused), and a raw form past 1 KiB (not remembered: sorted each time).
long = (bytes([7, 64, 1]) + dgram('k' * 2040 + ':1|g|#a:bc', 7) + dgram('k' * 2040 + ':1|g|#a:b', 7)
        + dgram('many:1|c|#' + ','.join(str(i % 10) for i in range(1000)), 7) + adv(1)
        + dgram('many:1|c|#' + ','.join(str(i % 10) for i in range(1000)), 7) + adv(10) + FLUSH)
open('corpus/dogstatsd_aggregate/long-keys', 'wb').write(long)
PY
printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n' > corpus/passwd/seed
printf 'HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}' > corpus/http_response/seed-cl
printf 'HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboom\r\n0\r\n\r\n' > corpus/http_response/seed-chunked
printf 'https://stackstate.example.com:7077/stsAgent' > corpus/url/seed
cp "$fix/net/netstat" corpus/snmp/seed-netstat
mkdir -p corpus/sockstat && cp "$fix/net/sockstat6" corpus/sockstat/seed6
mkdir -p corpus/traces_msgpack corpus/traces_json corpus/http_request
cp ../tests/fixtures/traces/*.msgpack corpus/traces_msgpack/
# Bodies that decode and then amplify (issue 14): empty span maps, kept spans, v0.5 table strings,
# a long table string named by every span, meta entries.
printf '\x91\xdc\x01\x00%s' "$(head -c 256 /dev/zero | tr '\0' '\200')" > corpus/traces_msgpack/amplify-empty-maps
printf '\x91\x94%s' "$(for i in 1 2 3 4; do printf '\x82\xa8trace_id\x01\xa7span_id\x01'; done)" > corpus/traces_msgpack/amplify-kept-spans
printf '\x92\xdc\x01\x00%s\x90' "$(head -c 256 /dev/zero | tr '\0' '\240')" > corpus/traces_msgpack/amplify-v05-table
printf '\x92\x92\xa0\xd9\x40%s\x91\x93' "$(head -c 64 /dev/zero | tr '\0' r)" > corpus/traces_msgpack/amplify-v05-long-string
for i in 1 2 3; do printf '\x9c\x00\x00\x01\x01\x01\x00\x00\x00\x00\x80\x80\x00' >> corpus/traces_msgpack/amplify-v05-long-string; done
printf '\x91\x91\x83\xa8trace_id\x01\xa7span_id\x01\xa4meta\xde\x00\x40%s' "$(head -c 128 /dev/zero | tr '\0' '\240')" > corpus/traces_msgpack/amplify-meta
# One v0.5 span naming a 1,000-byte table string in db.instance, span.hostname, span.pid and
# span.starttime (copied six times by the STS interpretation).
printf '\x92\x97\xa1s\xda\x03\xe8%s\xabdb.instance\xadspan.hostname\xa8span.pid\xaespan.starttime\xa9span.kind\x91\x91\x9c\x00\x00\x00\x01\x01\x00\x00\x00\x00\x85\x02\x01\x03\x01\x04\x01\x05\x01\x06\x00\x80\x00' "$(head -c 1000 /dev/zero | tr '\0' h)" > corpus/traces_msgpack/amplify-v05-sts-keys
printf '\x91\x91\x83\xa8trace_id\xff\xa7span_id\xd3\x80\x00\x00\x00\x00\x00\x00\x00\xa7service\xa3a\xffb' > corpus/traces_msgpack/repair-id-utf8
printf '[[%s{}]]' "$(head -c 300 /dev/zero | tr '\0' x | sed 's/x/{},/g')" > corpus/traces_json/amplify-empty-spans
printf '[[{"service":"s","name":"n","resource":"r","trace_id":1,"span_id":2,"parent_id":0,"start":1700000000000000000,"duration":5,"error":0,"meta":{"span.hostname":"h","span.pid":"1","span.kind":"server"},"metrics":{"m":1.5},"type":"web"}]]' > corpus/traces_json/seed
# Strings that are not UTF-8, with and without escapes (repaired: one U+FFFD per invalid byte).
printf '[[{"service":"a\xffb\xe2\x82","name":"n\\u00e9\xc3","meta":{"k\xfe":"v\\n\xf0\x9f\x98"},"trace_id":1,"span_id":2}]]' > corpus/traces_json/repair-utf8
# OpenTelemetry spans (one per line: trace, library, status, then key-index/value attributes split at
# 0x1f): an S3 call, a Lambda entry with a 4xx, an SQS URL of three parts, an HTTP call with a 5xx.
mkdir -p corpus/otel_interpret
printf '\x00\x01\x00\x00s3\x1f\x09My-Bucket\n\x00\x00\x60\x01arn:aws:lambda:r:1:function:F\x1f\x021\n\x01\x01\x00\x00sqs\x1f\x05eu\x1f\x07https://sqs\x1f\x08q\n\x01\x02\xff\x0chttp://x\x1f\x0dGET' > corpus/otel_interpret/seed
printf 'PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nX-Datadog-Trace-Count: 1\r\nContent-Length: 1\r\n\r\n\x90' > corpus/http_request/seed-length
printf '\x0bPOST /v0.5/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\n\r\n' > corpus/http_request/seed-chunked
# OpenTelemetry: exports captured from the real SDKs and the /open-telemetry request of tests/otlp.rs.
mkdir -p corpus/otlp_protobuf corpus/otlp_json corpus/gzip
cp ../tests/fixtures/otlp/*.pb corpus/otlp_protobuf/
cp ../tests/fixtures/otlp/*.json corpus/otlp_json/
for f in ../tests/fixtures/otlp/*; do gzip -c "$f" > "corpus/gzip/$(basename "$f").gz"; done
mkdir -p corpus/cgroup_stats corpus/metadata_json corpus/inet_diag
mkdir -p corpus/dns
# The captured answer of src/parse/dns.rs's tests (`dig +noedns www.github.com A`, id 0x1234): a CNAME
# to github.com, then its A record, with compression pointers; and the text files the target also reads.
printf '\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00\x03www\x06github\x03com\x00\x00\x01\x00\x01\xc0\x0c\x00\x05\x00\x01\x00\x00\x0e\x10\x00\x02\xc0\x10\xc0\x10\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x8c\x52\x79\x03' > corpus/dns/www-github-a
printf 'nameserver 10.0.0.2\nnameserver fd00::53\nsearch ec2.internal example\noptions timeout:2 attempts:3 ndots:1\n' > corpus/dns/resolv-conf
printf '127.0.0.1 localhost\n10.0.0.4 receiver.example receiver # comment\n' > corpus/dns/hosts
mkdir -p corpus/scrub
printf ' 0123456789abcdef0123456789abcdefGET /i/?api_key=0123456789abcdef0123456789abcdef&x=1 {"apikey":"v"} sts-api-key: 0123456789ab' > corpus/scrub/seed
cp ../tests/fixtures/netlink/debian12-6.18/tcp*.bin corpus/inet_diag/
mkdir -p corpus/rtnl_link
cp ../tests/fixtures/netlink/debian12-6.18/rtnl-link-*.bin corpus/rtnl_link/
mkdir -p corpus/packet corpus/http_head
# Cooked captures (from the IP header): IPv4 10.0.0.5:8080 -> 10.0.0.9:51234 with TCP timestamps and an
# HTTP response; IPv6 with hop-by-hop, destination options and a first fragment before TCP and a request.
printf '\x45\x00\x00\x47\x1c\x46\x40\x00\x40\x06\x00\x00\x0a\x00\x00\x05\x0a\x00\x00\x09\x1f\x90\xc8\x22\x01\x02\x03\x04\x0a\x0b\x0c\x0d\x80\x18\x01\xf5\x00\x00\x00\x00\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02HTTP/1.1 200 OK\r\n\r\n' > corpus/packet/v4-response
printf '\x60\x0a\xbc\xde\x00\x46\x00\x40\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x3c\x00\x01\x04\x00\x00\x00\x00\x2c\x01\x01\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x01\xca\xfe\xba\xbe\x00\x50\x9c\x40\xde\xad\xbe\xef\x00\x00\x00\x01\x50\x18\xff\xff\x00\x00\x00\x00GET / HTTP/1.1\r\n\r\n' > corpus/packet/v6-extensions
# classify's input: 4 bytes of wire length (little-endian), then the captured payload.
printf '\xff\x00\x00\x00GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /c HTTP/1.1\r\n\r\n' > corpus/http_head/pipelined
printf '\xff\x00\x00\x00HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 304 Not Modified\r\n\r\n' > corpus/http_head/responses
printf '\x4e\x00\x00\x00\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00\x1f\x5c\x36\x0e\x3a\x12\x0b\x6f\x00\xff\xff\xff\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x4d\x21\x2e\x63\x54\x1d\x76\x30\x5a\x4e\x01\x2f\x00caching_sha2_password\x00' > corpus/http_head/mysql8-greeting
printf '[{"Id":"3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f","Names":["/web"],"Image":"nginx:1.25","State":"running","Status":"Up (healthy)","Labels":{}}]' > corpus/metadata_json/list
printf '{"State":{"StartedAt":"2023-11-14T22:15:00.000000001Z","Health":{"Status":"healthy"}}}' > corpus/metadata_json/inspect
printf '2023-11-15T00:13:20+02:00' > corpus/metadata_json/time
cg=../tests/fixtures/cgroup
cp "$cg/debian12-v1/memory/memory.stat" corpus/cgroup_stats/memory.stat
cp "$cg/debian12-v1/cpu/cpu.stat" corpus/cgroup_stats/cpu.stat
find "$cg/al2023-v2" -name io.stat -exec cp {} corpus/cgroup_stats/io.stat \;
find "$cg/al2023-v2" -name cpu.max -exec cp {} corpus/cgroup_stats/cpu.max \;
# The matcher: a request head, a response head and a pipelined pair, as IPv4 packets split at 0xfe.
mkdir -p corpus/http_flows
python3 - <<'PY'
import struct
def seg(src, dst, sport, dport, seq, payload):
    tcp = struct.pack('>HHIIBBHHH', sport, dport, seq, 0, 5 << 4, 0x18, 0xffff, 0, 0)
    ip = struct.pack('>BBHHHBBH4s4s', 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
    return ip + tcp + payload
c, s = [10, 0, 0, 2], [10, 0, 0, 1]
pkts = [seg(c, s, 40000, 8080, 1, b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
        seg(s, c, 8080, 40000, 1, b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
        seg(c, s, 40000, 8080, 30, b'GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n'),
        seg(s, c, 8080, 40000, 41, b'HTTP/1.1 404 N\r\nContent-Length: 0\r\n\r\nHTTP/1.1 503 B\r\n\r\n')]
open('corpus/http_flows/seed', 'wb').write(b'\xfe'.join(pkts))
PY
mkdir -p corpus/docker_events
printf '%x\r\n%s\n\r\n0\r\n\r\n' 172 '{"status":"die","id":"3f5a","Type":"container","Action":"die","Actor":{"ID":"3f5a","Attributes":{"exitCode":"137","image":"busybox","name":"oom-1"}},"time":1,"timeNano":1}' > corpus/docker_events/seed
# SQL and Redis queries of the original's test tables (first byte: the backslash mode switch).
mkdir -p corpus/sql_obfuscate
python3 - <<'PY'
import json
for f in ('sql_cases', 'redis_cases'):
    for i, c in enumerate(json.load(open(f'../tests/data/trace-obfuscation/{f}.json'))):
        open(f'corpus/sql_obfuscate/{f}-{i}', 'wb').write(b'\x00' + c['query'].encode())
PY
# The receiver's /features replies: the four known names, an unknown key with nested values, and a
# known key whose value is not a boolean.
mkdir -p corpus/features
printf '{"upgrade-to-multi-metrics":true,"incremental-topology":true,"health-states":false,"x":[1,{"y":null}]}' > corpus/features/seed
printf '{"health-states":"yes","expose-kubernetes-status":true,"upgrade-to-multi-metrics":[1]}' > corpus/features/not-booleans
# The client's TLS stream (fuzz_targets/tls_records.rs: byte 0 the suite, (b & 0x3f) % 6, and the
# mode, bit 6 raw and bit 7 a key update; byte 1 the read size): data sealed by rustls's server
# (TLS 1.3 ChaCha20 with a key update, TLS 1.2 ChaCha20), raw wire bytes (TLS 1.2 AES-256-GCM: a
# record header claiming 2^14 + 2049 bytes; TLS 1.2 AES-128-GCM: an alert record that fails
# authentication).
mkdir -p corpus/tls_records
printf '\x82\x00HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n' > corpus/tls_records/tls13-key-update
printf '\x05\x03HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' > corpus/tls_records/tls12-chacha
printf '\x44\x00\x17\x03\x03\x48\x01' > corpus/tls_records/raw-oversized
printf '\x43\x00\x15\x03\x03\x00\x1a0123456789abcdef0123456789' > corpus/tls_records/raw-alert
for t in "${!seeds[@]}"; do
  mkdir -p "corpus/$t"
  cp "$fix/${seeds[$t]}" "corpus/$t/seed"
done
# FUZZ_SEED_ONLY=1: only lay out the seed corpora (fuzz/replay replays them, e.g. on aarch64).
[ "${FUZZ_SEED_ONLY:-}" = 1 ] && exit 0
# -a: debug assertions, and with them overflow checks: an overflow is a crash while fuzzing here,
# not only when the aarch64 replay (a debug build) meets the input later.
cargo +nightly fuzz build -O -a
for t in $(cargo +nightly fuzz list); do
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run -O -a "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
  # cargo fuzz exits non-zero on a crash; set -e stops the run there.
done
echo "fuzzing: every target ran ${secs}s without a crash"
