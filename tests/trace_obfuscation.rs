//! Conformance with the original trace agent's obfuscation: every case of its own test tables
//! (`tests/data/trace-obfuscation/`, extracted from Datadog 7.21.0 = StackState Agent 2.17, see
//! the README there) run through our code, each failure printed with its case.
//!
//! Three levels: the span-level entry on a hand-built batch (every case, the empty resource
//! included), the whole `process` on a decoded v0.4 JSON body (every case with a non-empty query:
//! the normaliser replaces an empty resource with the name), and the lexer's first token. Then
//! the real agent end to end: spans sent to its intake reach a real TLS receiver obfuscated, and
//! `/status` counts them.

mod common;

use serde_json::Value;
use sts_agent::checks::obfuscate::sql::Tokenizer;
use sts_agent::checks::obfuscate::{self, redis, Obfuscator, Outcome};
use sts_agent::checks::traces::{process_with, RequestContext, TraceCounts};
use sts_agent::model::trace::{Batch, Span};
use sts_agent::parse::traces::{decode_v04, decode_v05, Encoding};

fn cases(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/trace-obfuscation/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v.as_array().unwrap_or_else(|| panic!("{path}: not an array")).clone()
}

fn s<'a>(c: &'a Value, k: &str) -> &'a str {
    c[k].as_str().unwrap_or_else(|| panic!("case without string {k}: {c}"))
}

/// A span's meta as the encoder writes it: the client's, then the agent's additions (which win).
fn meta_value(b: &Batch, body: &[u8], span: &Span, key: &str) -> Option<String> {
    let hit = |entries: &[(sts_agent::model::trace::Str, sts_agent::model::trace::Str)]| {
        entries.iter().rev().find(|(k, _)| b.text(body, *k) == key).map(|(_, v)| b.text(body, *v).to_string())
    };
    hit(b.span_extra(span)).or_else(|| hit(b.span_meta(span)))
}

/// One span built by hand (no normalisation): type, resource, the client's meta.
fn batch_with(typ: &str, resource: &str, meta: &serde_json::Map<String, Value>) -> Batch {
    let mut b = Batch::default();
    let first_meta = b.meta.len() as u32;
    for (k, v) in meta {
        let k = b.push_side(k);
        let v = b.push_side(v.as_str().unwrap());
        b.push_meta((k, v));
    }
    let span = Span {
        typ: b.push_side(typ),
        resource: b.push_side(resource),
        trace_id: 1,
        span_id: 1,
        meta: (first_meta, b.meta.len() as u32 - first_meta),
        ..Span::default()
    };
    b.push_span(span);
    b.push_trace((0, 1));
    b
}

fn empty_meta() -> serde_json::Map<String, Value> {
    serde_json::Map::new()
}

/// Checks one SQL case at the span level; the failure's text, if any.
fn check_sql_span(c: &Value) -> Result<(), String> {
    let query = s(c, "query");
    let expected = s(c, "expected");
    let meta_in = c["meta_in"].as_object().cloned().unwrap_or_else(empty_meta);
    let mut ob = Obfuscator::default();
    ob.sql.literal_escapes = c["initial_literal_escapes"].as_bool().unwrap_or(false);
    let mut b = batch_with(s(c, "span_type"), query, &meta_in);
    let keys = ob.begin_batch(&mut b);
    let outcome = obfuscate::obfuscate_span(&mut ob, &mut b, &[], 0, &keys);
    b.spans[0].extra = (0, b.extra.len() as u32);
    let span = b.spans[0];
    let got = b.text(&[], span.resource);
    if got != expected {
        return Err(format!("resource {got:?}, want {expected:?} (outcome {outcome:?})"));
    }
    let want_outcome = match (query.is_empty(), expected == obfuscate::NON_PARSABLE) {
        (true, _) => Outcome::SqlEmpty,
        (false, true) => Outcome::SqlError,
        (false, false) => Outcome::Sql,
    };
    if outcome != want_outcome {
        return Err(format!("outcome {outcome:?}, want {want_outcome:?}"));
    }
    if let Some(want) = c["expected_meta"].as_object() {
        for (k, v) in want {
            let got = meta_value(&b, &[], &span, k);
            if got.as_deref() != v.as_str() {
                return Err(format!("meta {k} = {got:?}, want {v}"));
            }
        }
    }
    if let Some(after) = c["expected_literal_escapes_after"].as_bool() {
        if ob.sql.literal_escapes != after {
            return Err(format!("literal escapes {} after, want {after}", ob.sql.literal_escapes));
        }
    }
    if let Some(want) = c["expected_error"].as_str() {
        let mut fresh = obfuscate::SqlObfuscator::default();
        fresh.literal_escapes = ob_initial(c);
        match fresh.obfuscate(query) {
            Err(e) if e.to_string() == want => {}
            Err(e) => return Err(format!("error {:?}, want {want:?}", e.to_string())),
            Ok(out) => return Err(format!("obfuscated to {:?}, want error {want:?}", String::from_utf8_lossy(out))),
        }
    }
    Ok(())
}

fn ob_initial(c: &Value) -> bool {
    c["initial_literal_escapes"].as_bool().unwrap_or(false)
}

/// Checks one SQL case through decoding and the whole `process`.
fn check_sql_process(c: &Value) -> Result<(), String> {
    let query = s(c, "query");
    let mut span = serde_json::json!({
        "trace_id": 7, "span_id": 9, "parent_id": 0, "service": "svc", "name": "db.query",
        "resource": query, "type": s(c, "span_type"), "start": 1_700_000_000_000_000_000i64, "duration": 1000,
    });
    if let Some(m) = c["meta_in"].as_object() {
        span["meta"] = Value::Object(m.clone());
    }
    let body = serde_json::to_vec(&serde_json::json!([[span]])).unwrap();
    let mut b = Batch::default();
    decode_v04(&body, Encoding::Json, &mut b).map_err(|e| format!("decode: {e:?}"))?;
    let mut ob = Obfuscator::default();
    ob.sql.literal_escapes = ob_initial(c);
    let ctx = RequestContext {
        now_ns: 1_700_000_000_000_000_000,
        host: "h",
        container_id: None,
        client: None,
        ..Default::default()
    };
    let counts = process_with(&mut b, &body, &ctx, &mut ob);
    let span = b.spans[0];
    let got = b.text(&body, span.resource);
    let expected = s(c, "expected");
    if got != expected {
        return Err(format!("through process: resource {got:?}, want {expected:?}"));
    }
    let error = expected == obfuscate::NON_PARSABLE;
    if (counts.sql_obfuscated, counts.sql_errors) != (u64::from(!error), u64::from(error)) {
        return Err(format!("through process: counts {counts:?}"));
    }
    // sql.query: the client's when it set one (non-empty on success); else the result, or the raw
    // query on error.
    let client = c["meta_in"]["sql.query"].as_str();
    let want = match (client, error) {
        (Some(v), true) => v,
        (Some(v), false) if !v.is_empty() => v,
        (_, true) => query,
        (_, false) => expected,
    };
    let got = meta_value(&b, &body, &span, "sql.query");
    if got.as_deref() != Some(want) {
        return Err(format!("through process: meta sql.query = {got:?}, want {want:?}"));
    }
    // The STS interpretation still ran after obfuscation, on the same span's additions.
    if meta_value(&b, &body, &span, "span.serviceURN").as_deref() != Some("urn:service:/svc") {
        return Err("through process: span.serviceURN missing".into());
    }
    Ok(())
}

fn report(what: &str, total: usize, failures: &[String]) {
    for f in failures {
        eprintln!("FAIL {f}");
    }
    eprintln!("{what}: {}/{total} pass", total - failures.len());
    assert!(failures.is_empty(), "{what}: {} of {total} cases fail (listed above)", failures.len());
}

#[test]
fn every_sql_case_of_the_original() {
    let all = cases("sql_cases.json");
    assert_eq!(all.len(), 108, "the vector file has 108 SQL cases");
    let mut failures = Vec::new();
    for (i, c) in all.iter().enumerate() {
        if let Err(e) = check_sql_span(c) {
            failures.push(format!("sql case {i} ({}, {:?}): {e}", s(c, "test"), s(c, "query")));
        }
    }
    report("SQL cases, span level", all.len(), &failures);
}

#[test]
fn every_sql_case_through_process() {
    let all = cases("sql_cases.json");
    let mut failures = Vec::new();
    let mut run = 0;
    for (i, c) in all.iter().enumerate() {
        if s(c, "query").is_empty() {
            continue; // the normaliser gives an empty resource the span's name
        }
        run += 1;
        if let Err(e) = check_sql_process(c) {
            failures.push(format!("sql case {i} ({}, {:?}): {e}", s(c, "test"), s(c, "query")));
        }
    }
    assert_eq!(run, 107);
    report("SQL cases through process", run, &failures);
}

#[test]
fn every_redis_case_of_the_original() {
    let all = cases("redis_cases.json");
    assert_eq!(all.len(), 20, "the vector file has 20 Redis cases");
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let (query, expected) = (s(c, "query"), s(c, "expected"));
        redis::quantize(query, &mut out);
        if out != expected.as_bytes() {
            failures.push(format!("redis case {i} {query:?}: {:?}, want {expected:?}", String::from_utf8_lossy(&out)));
            continue;
        }
        let mut b = batch_with(s(c, "span_type"), query, &empty_meta());
        let mut ob = Obfuscator::default();
        let keys = ob.begin_batch(&mut b);
        let outcome = obfuscate::obfuscate_span(&mut ob, &mut b, &[], 0, &keys);
        let got = b.text(&[], b.spans[0].resource);
        if outcome != Outcome::Redis || got != expected || !b.extra.is_empty() {
            failures.push(format!("redis case {i} {query:?} as a span: {got:?} ({outcome:?}), want {expected:?}"));
        }
    }
    report("Redis cases", all.len(), &failures);
}

#[test]
fn every_tokenizer_case_of_the_original() {
    let all = cases("sql_tokenizer_cases.json");
    assert_eq!(all.len(), 44, "the vector file has 44 tokenizer cases");
    let mut failures = Vec::new();
    let mut scratch = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let input = s(c, "input");
        let literal = c["literal_escapes"].as_bool().unwrap();
        let mut tok = Tokenizer::new(input, literal, &mut scratch);
        let (kind, text) = tok.scan();
        let kind = format!("{kind:?}");
        let text = String::from_utf8_lossy(tok.text(text)).into_owned();
        let (want_kind, want_text) = (s(c, "expected_kind"), s(c, "expected_token_text"));
        if kind != want_kind || text != want_text {
            failures.push(format!(
                "tokenizer case {i} {input:?} (literal escapes {literal}): {kind} {text:?}, want {want_kind} {want_text:?}"
            ));
        }
    }
    report("tokenizer cases", all.len(), &failures);
}

/// Spans of other types are left alone, and the sticky mode carries over from one query to the
/// next within one obfuscator (as the agent keeps one for its life).
#[test]
fn other_types_untouched_and_the_mode_sticks_across_spans() {
    for typ in ["web", "http", "memcached", "mongodb", "", "SQL"] {
        let mut b = batch_with(typ, "SELECT 1", &empty_meta());
        let mut ob = Obfuscator::default();
        let keys = ob.begin_batch(&mut b);
        let outcome = obfuscate::obfuscate_span(&mut ob, &mut b, &[], 0, &keys);
        assert_eq!((outcome, b.text(&[], b.spans[0].resource)), (Outcome::Untouched, "SELECT 1"), "type {typ:?}");
    }
    let mut ob = Obfuscator::default();
    for (q, want, mode_after) in [
        (
            "SELECT * FROM foo WHERE name = 'backslash\\' AND id ='1234'",
            "SELECT * FROM foo WHERE name = ? AND id = ?",
            true,
        ),
        ("SELECT 'a\\b'", "SELECT ?", true),
        ("SELECT 'x\\' AND y = 'z'", "SELECT ? AND y = ?", true),
    ] {
        let mut b = batch_with("cassandra", q, &empty_meta());
        let keys = ob.begin_batch(&mut b);
        obfuscate::obfuscate_span(&mut ob, &mut b, &[], 0, &keys);
        assert_eq!(b.text(&[], b.spans[0].resource), want, "{q}");
        assert_eq!(ob.sql.literal_escapes, mode_after, "{q}");
    }
}

/// A v0.5 body: the string table `strings`, then one trace of one span per `(type, resource)`
/// pair of table indices (ids 1.., service and name the empty string 0).
fn v05_body(strings: &[&str], spans: &[(u8, u16)]) -> Vec<u8> {
    let mut b = vec![0x92, 0xdd];
    b.extend_from_slice(&(strings.len() as u32).to_be_bytes());
    for s in strings {
        b.push(0xdb);
        b.extend_from_slice(&(s.len() as u32).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    b.extend_from_slice(&[0x91, 0xdd]);
    b.extend_from_slice(&(spans.len() as u32).to_be_bytes());
    for (i, &(typ, resource)) in spans.iter().enumerate() {
        // service, name, resource, trace id, span id, parent id, start, duration, error, meta,
        // metrics, type.
        b.extend_from_slice(&[0x9c, 0, 0, 0xcd]);
        b.extend_from_slice(&resource.to_be_bytes());
        b.extend_from_slice(&[1, 0xce]);
        b.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0x80, 0x80, typ]);
    }
    b
}

fn ctx() -> RequestContext<'static> {
    RequestContext {
        now_ns: 1_700_000_000_000_000_000,
        host: "h",
        container_id: None,
        client: None,
        ..Default::default()
    }
}

/// The request limit the agent sets (`app::traces::request_limit`: 8 bytes per body byte and 4 MiB).
fn limit_for(body: &[u8]) -> usize {
    (body.len() * 8 + (4 << 20)).min(24 << 20)
}

/// A 100 KB SQL query of literals (`SELECT a FROM t WHERE x IN ( ? )` once obfuscated).
fn long_query() -> String {
    let mut sql = String::from("SELECT a FROM t WHERE x IN (");
    while sql.len() < 100_000 {
        sql.push_str("12345, 'abc', ");
    }
    sql.push_str("0)");
    sql
}

/// A v0.5 body decoded (within the agent's limit for it) and processed by a fresh obfuscator.
fn processed_v05(body: &[u8]) -> (Batch, Obfuscator, TraceCounts) {
    let mut b = Batch { limit: limit_for(body), ..Batch::default() };
    decode_v05(body, &mut b).unwrap();
    let mut ob = Obfuscator::default();
    let counts = process_with(&mut b, body, &ctx(), &mut ob);
    (b, ob, counts)
}

/// Thousands of v0.5 spans of type `sql`, `cassandra` and `redis` naming one 100 KB table string
/// each: every string is lexed once per batch, not once per span (before, a 186 KB body like
/// this blocked the agent for 2-3 s in a release build), and every span gets the same result.
#[test]
fn spans_naming_one_long_table_string_lex_it_once() {
    let sql = long_query();
    let mut redis = String::from("GET k\n");
    while redis.len() < 100_000 {
        redis.push_str("        \n");
    }
    let strings = ["", "sql", "cassandra", "redis", &sql, &redis];
    let spans: Vec<(u8, u16)> = (0..3000).flat_map(|_| [(1, 4), (2, 4), (3, 5)]).collect();
    let body = v05_body(&strings, &spans);
    assert!(body.len() < 400_000, "{}", body.len());
    let mut b = Batch { limit: limit_for(&body), ..Batch::default() };
    decode_v05(&body, &mut b).unwrap();
    let mut ob = Obfuscator::default();
    let t = std::time::Instant::now();
    let counts = process_with(&mut b, &body, &ctx(), &mut ob);
    let took = t.elapsed();
    assert!(!counts.over_limit, "{counts:?}");
    assert_eq!((counts.spans, counts.sql_obfuscated, counts.redis_quantized), (9000, 6000, 3000));
    // SQL and CQL are one kind: the query is lexed once (twice at most, with the retry).
    let lexed = ob.lexed_bytes();
    assert!(lexed <= 2 * sql.len() as u64 + redis.len() as u64, "lexed {lexed} bytes");
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    let mut fresh = obfuscate::SqlObfuscator::default();
    let want_sql = String::from_utf8(fresh.obfuscate(&sql).unwrap().to_vec()).unwrap();
    assert_eq!(want_sql, "SELECT a FROM t WHERE x IN ( ? )");
    for (i, span) in b.spans.iter().enumerate() {
        let want = if i % 3 == 2 { "GET" } else { want_sql.as_str() };
        assert_eq!(b.text(&body, span.resource), want, "span {i}");
        let query = meta_value(&b, &body, span, "sql.query");
        assert_eq!(query.as_deref(), (i % 3 != 2).then_some(want), "span {i}");
    }
}

/// One long query held twice in a v0.5 table: spans naming either copy take the first copy's
/// result, and comparing the copies counts against the batch's limit as lexing does. Named in two
/// runs, the copies are compared once (the memo then points at the second); named alternately,
/// thousands of times, the comparisons pass the limit and the request is refused (before they
/// counted, each span compared the whole query: 100 KB x 6,000 spans).
#[test]
fn one_long_query_held_twice_is_compared_within_the_limit() {
    let sql = long_query();
    let strings = ["", "sql", &sql, &sql];
    let runs: Vec<(u8, u16)> = (0..3000).map(|i| (1, if i < 1500 { 2 } else { 3 })).collect();
    let body = v05_body(&strings, &runs);
    let (b, ob, counts) = processed_v05(&body);
    assert!(!counts.over_limit, "{counts:?}");
    assert_eq!((counts.spans, counts.sql_obfuscated), (3000, 3000));
    assert!(ob.lexed_bytes() <= 2 * sql.len() as u64, "lexed once (twice at most, with the retry)");
    let want = "SELECT a FROM t WHERE x IN ( ? )";
    assert!(b.spans.iter().all(|s| b.text(&body, s.resource) == want));

    let alternating: Vec<(u8, u16)> = (0..6000).map(|i| (1, 2 + (i % 2) as u16)).collect();
    let body = v05_body(&strings, &alternating);
    let t = std::time::Instant::now();
    let (b, ob, counts) = processed_v05(&body);
    let took = t.elapsed();
    assert!(counts.over_limit, "6,000 comparisons of 100 KB pass the limit: {counts:?}");
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    assert!(ob.lexed_bytes() <= 2 * sql.len() as u64 + b.limit as u64);
}

/// A remembered result is exactly what lexing again would give: spans alternating between
/// queries that parse only in one backslash mode switch the sticky mode each time, and spans of
/// a query that does not parse keep the raw query in `sql.query`, as without the memo.
#[test]
fn remembered_results_equal_lexing_again() {
    let strings = [
        "",
        "sql",
        "SELECT * FROM t WHERE p = 'C:\\' AND q = 'x'",
        "SELECT 'a\\'b'",
        "SELECT * FROM t WHERE a = 08",
        "SELECT 1",
        "redis",
    ];
    let spans: Vec<(u8, u16)> =
        (0..50).flat_map(|_| [(6, 5), (1, 2), (1, 3), (1, 4), (1, 5), (1, 2), (1, 2)]).collect();
    let body = v05_body(&strings, &spans);
    let mut b = Batch::default();
    decode_v05(&body, &mut b).unwrap();
    let mut ob = Obfuscator::default();
    let counts = process_with(&mut b, &body, &ctx(), &mut ob);
    assert_eq!((counts.spans, counts.sql_errors, counts.redis_quantized), (350, 50, 50));
    // Each span on its own, with one obfuscator carrying the mode from span to span.
    let mut reference = obfuscate::SqlObfuscator::default();
    let mut switches = 0;
    for (i, (&(typ, resource), span)) in spans.iter().zip(&b.spans).enumerate() {
        let query = strings[resource as usize];
        let (want, want_query) = if typ == 6 {
            ("SELECT".to_string(), None)
        } else {
            let before = reference.literal_escapes;
            let r = match reference.obfuscate(query) {
                Ok(out) => {
                    let out = String::from_utf8(out.to_vec()).unwrap();
                    (out.clone(), Some(out))
                }
                Err(_) => (obfuscate::NON_PARSABLE.to_string(), Some(query.to_string())),
            };
            switches += usize::from(before != reference.literal_escapes);
            r
        };
        assert_eq!(b.text(&body, span.resource), want, "span {i}");
        assert_eq!(meta_value(&b, &body, span, "sql.query"), want_query, "span {i}");
    }
    assert_eq!(ob.sql.literal_escapes, reference.literal_escapes);
    assert!(switches >= 99, "the mode switched {switches} times");
}

/// More long table strings than the memo holds, named in turn by many spans: what is lexed again
/// counts against the request's limit, so the request is refused with its lexing bounded by it.
#[test]
fn lexing_beyond_the_memo_is_bounded_by_the_request_limit() {
    let queries: Vec<String> =
        (0..1000).map(|i| format!("SELECT {i} FROM t WHERE x = '{}'", "y".repeat(2000))).collect();
    let mut strings = vec!["", "sql"];
    strings.extend(queries.iter().map(String::as_str));
    let spans: Vec<(u8, u16)> = (0..40_000).map(|i| (1, 2 + (i % 1000) as u16)).collect();
    let body = v05_body(&strings, &spans);
    let limit = limit_for(&body);
    let mut b = Batch { limit, ..Batch::default() };
    decode_v05(&body, &mut b).unwrap();
    let mut ob = Obfuscator::default();
    let t = std::time::Instant::now();
    let counts = process_with(&mut b, &body, &ctx(), &mut ob);
    let took = t.elapsed();
    assert!(counts.over_limit, "40,000 spans × 2 KB lexed is past the limit of {limit}");
    assert!(ob.lexed_bytes() <= limit as u64, "lexed {} bytes, limit {limit}", ob.lexed_bytes());
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    // The same strings named in order, each by 40 spans in a row, are lexed once each.
    let spans: Vec<(u8, u16)> = (0..40_000).map(|i| (1, 2 + (i / 40) as u16)).collect();
    let body = v05_body(&strings, &spans);
    let mut b = Batch { limit: limit_for(&body), ..Batch::default() };
    decode_v05(&body, &mut b).unwrap();
    let mut ob = Obfuscator::default();
    let counts = process_with(&mut b, &body, &ctx(), &mut ob);
    assert!(!counts.over_limit && counts.sql_obfuscated == 40_000, "{counts:?}");
    let table: u64 = queries.iter().map(|q| q.len() as u64).sum();
    assert!(ob.lexed_bytes() <= table, "lexed {} bytes, the table holds {table}", ob.lexed_bytes());
}

/// The agent binary: a v0.4 JSON request with SQL (literals; the client's own `sql.query`; one
/// that does not parse), CQL, Redis and web spans reaches the TLS receiver obfuscated (decoded
/// by the independent prost decoder), and `/status` counts the obfuscations.
#[test]
fn the_agent_forwards_obfuscated_spans_and_counts_them() {
    use common::{read_response, spawn_agent, trace_proto, wait_with_timeout, Receiver};
    use std::io::Write;
    use std::time::{Duration, Instant};

    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let child = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "obfuscation-test-key-0123456789"),
            ("STS_HOSTNAME", "obf-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_APM_RECEIVER_PORT", &port_s),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
        ],
    );
    struct Stop(Option<std::process::Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut agent = Stop(Some(child));
    let start = Instant::now();
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port));
    while connect().is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "the trace intake never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let span = |id: u64, typ: &str, resource: &str, meta: Value| {
        serde_json::json!({"trace_id": 77, "span_id": id, "parent_id": if id == 1 { 0 } else { 1 },
            "service": "svc", "name": "op", "resource": resource, "type": typ,
            "start": 1_700_000_000_000_000_000i64, "duration": 10, "meta": meta,
            "metrics": {"_sampling_priority_v1": 1}})
    };
    let body = serde_json::to_vec(&serde_json::json!([[
        span(1, "web", "GET /cart?id=42", serde_json::json!({})),
        span(
            2,
            "sql",
            "SELECT * FROM users WHERE id = 42 AND name = 'bob'",
            serde_json::json!({"db.instance": "orders"})
        ),
        span(3, "sql", "UPDATE t SET a = 1", serde_json::json!({"sql.query": "client's own"})),
        span(4, "sql", "SELECT * FROM t WHERE name = 'unterminated", serde_json::json!({})),
        span(5, "cassandra", "SELECT * FROM ks.tbl WHERE k = %s AND c IN (%s,%s)", serde_json::json!({})),
        span(6, "redis", "MULTI\nSET k v\nEXEC", serde_json::json!({})),
    ]]))
    .unwrap();
    let mut s = connect().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let (status, reply) = read_response(&mut s);
    assert_eq!(status, 200, "{reply}");
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, reply) = read_response(&mut s);
    assert_eq!(status, 200, "{reply}");
    let st: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(st["trace_intake"]["obfuscated"], serde_json::json!({"sql": 3, "sql_errors": 1, "redis": 1}), "{reply}");

    // SIGTERM flushes what is pending.
    let child = agent.0.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spans: Vec<trace_proto::Span> = rx
        .requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
        .flat_map(|r| trace_proto::decode(&r.body).traces)
        .flat_map(|t| t.spans)
        .collect();
    let by_id = |id: u64| spans.iter().find(|s| s.span_id == id).unwrap_or_else(|| panic!("span {id} not forwarded"));
    let check = |id: u64, resource: &str, sql_query: Option<&str>| {
        let s = by_id(id);
        assert_eq!(s.resource, resource, "span {id}");
        assert_eq!(s.meta.get("sql.query").map(String::as_str), sql_query, "span {id}: {:?}", s.meta);
    };
    check(1, "GET /cart?id=42", None);
    check(2, "SELECT * FROM users WHERE id = ? AND name = ?", Some("SELECT * FROM users WHERE id = ? AND name = ?"));
    check(3, "UPDATE t SET a = ?", Some("client's own"));
    check(4, "Non-parsable SQL query", Some("SELECT * FROM t WHERE name = 'unterminated"));
    check(
        5,
        "SELECT * FROM ks.tbl WHERE k = ? AND c IN ( ? )",
        Some("SELECT * FROM ks.tbl WHERE k = ? AND c IN ( ? )"),
    );
    check(6, "MULTI SET EXEC ...", None);
    // The STS interpretation still ran on the obfuscated spans.
    assert_eq!(by_id(2).meta["span.serviceURN"], "urn:service:/svc:orders");
}
