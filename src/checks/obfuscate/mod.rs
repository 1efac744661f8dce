//! Span obfuscation, the first step after normalisation (spec/traces-parity.md §0, §1, §2),
//! keyed on the span `type` the client sent: `sql` and `cassandra` resources are obfuscated
//! (literals become `?`) and meta `sql.query` gets the result unless the client set it; a query
//! that does not parse becomes `Non-parsable SQL query` (meta `sql.query` then keeps the raw
//! query, unless the client set the key). `redis` resources are quantized to their commands.
//! Nothing else is touched (the original's other obfuscators are off by default).
//!
//! [`Obfuscator`] lives as long as the agent (the SQL backslash mode is sticky, as in the
//! original) and owns the buffers; a span's new resource is copied into the batch's side buffer.
//!
//! A batch's lexing is bounded. In v0.5 every span names its resource by an index into one string
//! table, so thousands of spans of a small body can name one long query: what a query gave is
//! remembered for the batch (a fixed table of slots, see [`Memo`], keyed by the query's bytes), and
//! spans with the same query (named again, or sent again: an application runs the same queries
//! over and over, and a v0.4 body repeats each span's) take the result without lexing. What is still lexed counts against the batch's limit (a batch
//! may lex as many bytes as it may cost), and so does what the obfuscator's buffers will hold for
//! a query; past either, the batch is over its limit and the request refused.

pub mod letters;
pub mod redis;
pub mod sql;

use crate::model::trace::{Batch, Str};
pub use sql::{SqlError, SqlObfuscator};

/// The resource of an SQL span that did not obfuscate.
pub const NON_PARSABLE: &str = "Non-parsable SQL query";
pub const SQL_QUERY: &str = "sql.query";
/// Slots of the memo: strings one batch obfuscates and may name again (a few KiB).
const MEMO_SLOTS: usize = 256;

/// The obfuscator's state across requests.
#[derive(Debug, Default)]
pub struct Obfuscator {
    pub sql: SqlObfuscator,
    redis_out: Vec<u8>,
    /// Bytes handed to the Redis quantizer so far.
    redis_lexed: u64,
    /// What strings of the current batch gave (allocated at the first string remembered).
    memo: Vec<Memo>,
    /// The current batch's number (a memo slot of another batch is empty; 0 is none).
    batch: u32,
    /// Bytes lexed for the current batch.
    batch_lexed: u64,
}

/// What one string of a batch gave, for one kind of span and SQL backslash mode.
#[derive(Debug, Clone, Copy, Default)]
struct Memo {
    batch: u32,
    /// The string obfuscated (in this batch) and a hash of its bytes.
    source: Str,
    hash: u64,
    /// [`kind`]: SQL or Redis, and the backslash mode before.
    kind: u8,
    resource: Str,
    outcome: Outcome,
    /// For SQL, the backslash mode after (a query that parsed only in the other mode switched it).
    literal_escapes: bool,
}

/// What a span's obfuscation depends on besides its resource: SQL or Redis, and for SQL the
/// backslash mode (the same query may give another result, and another mode, in the other one).
fn kind(is_sql: bool, literal_escapes: bool) -> u8 {
    u8::from(is_sql) | u8::from(is_sql && literal_escapes) << 1
}

fn slot(hash: u64, kind: u8) -> usize {
    let h = (hash ^ u64::from(kind)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize % MEMO_SLOTS
}

/// A hash of a query's length and of its first and last 64 bytes (all of it up to 128), eight at
/// a time: a few ns, whatever its length (v0.5 spans may name one 100 KB string thousands of
/// times). Not a defence against collisions, and not needed as one: a slot is taken only when the
/// bytes are equal too (the same string, or a comparison, which counts against the batch's limit
/// as lexing does: [`Obfuscator::recall`]), so a collision costs a comparison and a lexing, never
/// a wrong result.
fn content_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0x243F_6A88_85A3_08D3 ^ bytes.len() as u64;
    let (head, tail) = if bytes.len() <= 128 { (bytes, &[][..]) } else { (&bytes[..64], &bytes[bytes.len() - 64..]) };
    for part in [head, tail] {
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            h = (h ^ u64::from_le_bytes(w.try_into().unwrap_or_default())).wrapping_mul(K).rotate_left(29);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K).rotate_left(29);
    }
    h ^ h >> 32
}

/// What was done to a span.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a span type that is obfuscated.
    #[default]
    Untouched,
    /// SQL obfuscated.
    Sql,
    /// SQL that did not parse: resource `Non-parsable SQL query`.
    SqlError,
    /// SQL span with an empty resource (left as is).
    SqlEmpty,
    /// Redis resource quantized.
    Redis,
    /// Not done: the batch would pass its limit (it is then over it, and the request refused).
    OverLimit,
}

/// The strings obfuscation adds, stored once per batch in its side buffer.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    sql_query: Str,
    non_parsable: Str,
}

impl Obfuscator {
    /// Starts a batch: what earlier batches gave is forgotten (their strings are other bytes),
    /// and the keys obfuscation adds are stored in the batch. Call before its first span.
    pub fn begin_batch(&mut self, b: &mut Batch) -> Keys {
        self.batch = self.batch.wrapping_add(1);
        if self.batch == 0 {
            self.memo.iter_mut().for_each(|m| m.batch = 0);
            self.batch = 1;
        }
        self.batch_lexed = 0;
        Keys { sql_query: b.push_side(SQL_QUERY), non_parsable: b.push_side(NON_PARSABLE) }
    }

    /// Bytes handed to the SQL lexer and the Redis quantizer since the obfuscator was made.
    pub fn lexed_bytes(&self) -> u64 {
        self.sql.lexed_bytes() + self.redis_lexed
    }

    /// Bytes the buffers and the memo hold (capacities).
    pub fn held_bytes(&self) -> usize {
        self.sql.held_bytes() + self.redis_out.capacity() + self.memo.capacity() * std::mem::size_of::<Memo>()
    }

    /// Gives back what a large query made the buffers hold, keeping `keep` bytes of each (as
    /// [`Batch::shrink`] does for the batch, after each request).
    pub fn shrink(&mut self, keep: usize) {
        self.sql.shrink(keep);
        if self.redis_out.capacity() > keep {
            self.redis_out.clear();
            self.redis_out.shrink_to(keep);
        }
    }

    /// What this batch's `source` gave before, by its bytes (the same string, or an equal one).
    /// Comparing equal bytes at another place costs as lexing them would, so it counts against
    /// the batch's limit as lexing does (past it, no recall: the lexing that follows is refused),
    /// and a hit points the slot at the new place, where the spans naming it next take it with
    /// no comparison (a v0.5 table may hold one long query twice, each named thousands of times).
    fn recall(&mut self, b: &Batch, body: &[u8], source: Str, hash: u64, kind: u8) -> Option<Memo> {
        let i = slot(hash, kind);
        let m = *self.memo.get(i)?;
        if m.batch != self.batch || m.kind != kind || m.hash != hash {
            return None;
        }
        if m.source != source {
            let len = source.len() as u64;
            if self.batch_lexed.saturating_add(len) > b.limit as u64 {
                return None;
            }
            self.batch_lexed += len;
            if b.raw_bytes(body, m.source) != b.raw_bytes(body, source) {
                return None;
            }
            self.memo[i].source = source;
        }
        Some(m)
    }

    fn remember(&mut self, source: Str, hash: u64, kind: u8, resource: Str, outcome: Outcome) {
        if self.memo.is_empty() {
            self.memo = vec![Memo::default(); MEMO_SLOTS];
        }
        let literal_escapes = self.sql.literal_escapes;
        self.memo[slot(hash, kind)] =
            Memo { batch: self.batch, source, hash, kind, resource, outcome, literal_escapes };
    }
}

/// Obfuscates span `i` of `b` in place. A new resource is copied into the side buffer only when
/// it differs from the old one, and only within the batch's limit (else the span keeps its
/// resource and the batch is over its limit). `keys` come from [`Obfuscator::begin_batch`] for
/// this batch.
pub fn obfuscate_span(ob: &mut Obfuscator, b: &mut Batch, body: &[u8], i: usize, keys: &Keys) -> Outcome {
    let s = b.spans[i];
    let typ = b.text(body, s.typ);
    let is_sql = matches!(typ, "sql" | "cassandra");
    if !is_sql && typ != "redis" {
        return Outcome::Untouched;
    }
    if is_sql && s.resource.is_empty() {
        return Outcome::SqlEmpty;
    }
    let kind = kind(is_sql, ob.sql.literal_escapes);
    let hash = content_hash(b.raw_bytes(body, s.resource));
    let (resource, outcome) = match ob.recall(b, body, s.resource, hash, kind) {
        Some(m) => {
            if is_sql {
                ob.sql.literal_escapes = m.literal_escapes;
            }
            (m.resource, m.outcome)
        }
        None => {
            let (resource, outcome) = obfuscate_resource(ob, b, body, s.resource, is_sql, keys);
            if outcome == Outcome::OverLimit {
                return outcome;
            }
            ob.remember(s.resource, hash, kind, resource, outcome);
            (resource, outcome)
        }
    };
    b.spans[i].resource = resource;
    match outcome {
        // The obfuscated query, unless the client set a non-empty one.
        Outcome::Sql if b.meta(body, &s, SQL_QUERY).is_none_or(|v| v.is_empty()) => {
            b.push_extra((keys.sql_query, resource))
        }
        // The raw query, unless the client set the key (even empty).
        Outcome::SqlError if b.meta(body, &s, SQL_QUERY).is_none() => b.push_extra((keys.sql_query, s.resource)),
        _ => {}
    }
    outcome
}

/// Lexes `source` (an SQL query, or a Redis command when not `is_sql`): the new resource (in the
/// side buffer, or `source` itself when unchanged) and the outcome. `OverLimit` when the lexing
/// or the buffers it needs, or the copy, would take the batch past its limit.
fn obfuscate_resource(
    ob: &mut Obfuscator,
    b: &mut Batch,
    body: &[u8],
    source: Str,
    is_sql: bool,
    keys: &Keys,
) -> (Str, Outcome) {
    let len = source.len();
    // SQL may be lexed twice (the retry in the other backslash mode).
    let (lexing, buffers) = if is_sql { (2 * len, sql::buffer_bytes(len)) } else { (len, redis::buffer_bytes(len)) };
    if ob.batch_lexed.saturating_add(lexing as u64) > b.limit as u64 || b.cost().saturating_add(buffers) > b.limit {
        b.exceeded = true;
        return (source, Outcome::OverLimit);
    }
    let lexed_before = ob.lexed_bytes();
    let query = b.text(body, source);
    let (out, outcome) = if is_sql {
        match ob.sql.obfuscate(query) {
            Ok(out) => (out, Outcome::Sql),
            Err(_) => {
                ob.batch_lexed += ob.lexed_bytes() - lexed_before;
                return (keys.non_parsable, Outcome::SqlError);
            }
        }
    } else {
        redis::quantize(query, &mut ob.redis_out);
        ob.redis_lexed += len as u64;
        (&ob.redis_out[..], Outcome::Redis)
    };
    let resource = if out == query.as_bytes() {
        source
    } else if !b.fits(out.len()) {
        return (source, Outcome::OverLimit);
    } else {
        let begin = b.side_begin();
        b.side.extend_from_slice(out);
        b.side_end(begin)
    };
    ob.batch_lexed += ob.lexed_bytes() - lexed_before;
    (resource, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::traces::{process_with, RequestContext};
    use crate::parse::traces::{decode_v04, Encoding};

    /// A v0.4 body of one trace whose spans (at most 15) are of type `sql` with these resources.
    fn sql_spans(queries: &[&str]) -> Vec<u8> {
        let mut b = vec![0x91, 0x90 | queries.len() as u8];
        for (i, q) in queries.iter().enumerate() {
            b.extend_from_slice(&[0x84, 0xa8]);
            b.extend_from_slice(b"trace_id\x01\xa7span_id");
            b.push(i as u8 + 1);
            b.extend_from_slice(b"\xa4type\xa3sql\xa8resource\xdb");
            b.extend_from_slice(&(q.len() as u32).to_be_bytes());
            b.extend_from_slice(q.as_bytes());
        }
        b
    }

    fn processed(body: &[u8], ob: &mut Obfuscator) -> Batch {
        let mut b = Batch::default();
        decode_v04(body, Encoding::Msgpack, &mut b).unwrap();
        process_with(&mut b, body, &RequestContext { now_ns: 1, host: "h", ..Default::default() }, ob);
        b
    }

    /// (resource, sql.query) of each span.
    fn results(b: &Batch, body: &[u8]) -> Vec<(String, String)> {
        let extra = |s: &crate::model::trace::Span| {
            b.span_extra(s).iter().find(|(k, _)| b.is(body, *k, SQL_QUERY)).map(|(_, v)| b.text(body, *v).to_string())
        };
        b.spans.iter().map(|s| (b.text(body, s.resource).to_string(), extra(s).unwrap_or_default())).collect()
    }

    #[test]
    fn equal_queries_of_a_batch_are_lexed_once_and_give_what_each_gives_alone() {
        let q1 = "SELECT * FROM users WHERE id = 42 AND name = 'x'";
        let q2 = "UPDATE t SET a = 1.5 WHERE b IN (1, 2, 3)";
        let bad = "SELECT 'unterminated";
        // Long ones with the same length, first and last 64 bytes (one hash): told apart by bytes.
        let cols = "c, ".repeat(30);
        let (alpha, omega) = (
            format!("SELECT {cols}alpha, {cols}z FROM t WHERE id = 1"),
            format!("SELECT {cols}omega, {cols}z FROM t WHERE id = 1"),
        );
        assert_eq!(content_hash(alpha.as_bytes()), content_hash(omega.as_bytes()));
        let queries =
            [q1, q2, q1, bad, q1, q2, bad, "SELECT * FROM users WHERE id = 43 AND name = 'x'", &alpha, &omega, &alpha];
        let body = sql_spans(&queries);
        let mut ob = Obfuscator::default();
        let b = processed(&body, &mut ob);
        let lexed: usize = [q1, q2, bad, queries[7], &alpha, &omega, &alpha].iter().map(|q| q.len()).sum();
        assert_eq!(ob.lexed_bytes(), lexed as u64, "each query lexed once, but one of two with one hash");
        let together = results(&b, &body);
        for (i, q) in queries.iter().enumerate() {
            let alone = sql_spans(&[q]);
            let b = processed(&alone, &mut Obfuscator::default());
            assert_eq!(together[i], results(&b, &alone)[0], "span {i}: {q}");
        }
        assert_eq!(together[0].0, "SELECT * FROM users WHERE id = ? AND name = ?");
        assert_eq!(together[3].0, NON_PARSABLE);
        assert_eq!(together[3].1, bad, "the raw query in sql.query");
        // The next batch remembers nothing of this one (its strings are other bytes).
        let before = ob.lexed_bytes();
        processed(&sql_spans(&[q1]), &mut ob);
        assert_eq!(ob.lexed_bytes(), before + q1.len() as u64);
    }

    #[test]
    fn a_hash_collision_costs_a_lexing_not_a_wrong_result() {
        let body = sql_spans(&["SELECT 1", "SELECT 2", "SELECT 1"]);
        let mut b = Batch::default();
        decode_v04(&body, Encoding::Msgpack, &mut b).unwrap();
        let mut ob = Obfuscator::default();
        ob.begin_batch(&mut b);
        let (one, two, one_again) = (b.spans[0].resource, b.spans[1].resource, b.spans[2].resource);
        let sql = kind(true, false);
        ob.remember(one, 7, sql, Str::EMPTY, Outcome::Sql);
        assert!(ob.recall(&b, &body, two, 7, sql).is_none(), "same hash, other bytes");
        assert!(ob.recall(&b, &body, one_again, 7, sql).is_some(), "same bytes elsewhere in the body");
        // A query remembered in one backslash mode is not taken in the other (it may give another
        // result there), even from the slot the other would look in.
        let other = kind(true, true);
        ob.remember(one, 9, other, Str::EMPTY, Outcome::Sql);
        assert!(ob.recall(&b, &body, one, 9, other).is_some());
        ob.memo[slot(9, sql)] = ob.memo[slot(9, other)];
        assert!(ob.recall(&b, &body, one, 9, sql).is_none(), "the other backslash mode");
        assert_ne!(content_hash(b"SELECT 1"), content_hash(b"SELECT 2"));
        assert_ne!(content_hash(b"abcdefgh"), content_hash(b"abcdefgh\0"), "the length is in the hash");
        // Past 128 bytes, the middle is left out of the hash (not out of the comparison).
        let (x, y) =
            (format!("SELECT '{}'", "a".repeat(200)), format!("SELECT '{}b{}'", "a".repeat(99), "a".repeat(100)));
        assert_eq!(content_hash(x.as_bytes()), content_hash(y.as_bytes()));
        assert_ne!(content_hash(x.as_bytes()), content_hash(format!("{x} ").as_bytes()));
    }
}
