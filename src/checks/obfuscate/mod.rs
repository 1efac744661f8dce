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
//! table, so thousands of spans of a small body can name one long query: what a string gave is
//! remembered for the batch (a fixed table of slots, see [`Memo`]), and spans naming it again
//! take the result without lexing. What is still lexed counts against the batch's limit (a batch
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
    /// [`Str::key`] of the string obfuscated.
    source: u64,
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

fn slot(source: u64, kind: u8) -> usize {
    let h = (source ^ u64::from(kind)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize % MEMO_SLOTS
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

    fn recall(&self, source: Str, kind: u8) -> Option<Memo> {
        let m = *self.memo.get(slot(source.key(), kind))?;
        (m.batch == self.batch && m.source == source.key() && m.kind == kind).then_some(m)
    }

    fn remember(&mut self, source: Str, kind: u8, resource: Str, outcome: Outcome) {
        if self.memo.is_empty() {
            self.memo = vec![Memo::default(); MEMO_SLOTS];
        }
        let literal_escapes = self.sql.literal_escapes;
        self.memo[slot(source.key(), kind)] =
            Memo { batch: self.batch, source: source.key(), kind, resource, outcome, literal_escapes };
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
    let (resource, outcome) = match ob.recall(s.resource, kind) {
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
            ob.remember(s.resource, kind, resource, outcome);
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
