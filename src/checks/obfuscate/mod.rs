//! Span obfuscation, the first step after normalisation (spec/traces-parity.md §0, §1, §2),
//! keyed on the span `type` the client sent: `sql` and `cassandra` resources are obfuscated
//! (literals become `?`) and meta `sql.query` gets the result unless the client set it; a query
//! that does not parse becomes `Non-parsable SQL query` (meta `sql.query` then keeps the raw
//! query, unless the client set the key). `redis` resources are quantized to their commands.
//! Nothing else is touched (the original's other obfuscators are off by default).
//!
//! [`Obfuscator`] lives as long as the agent (the SQL backslash mode is sticky, as in the
//! original) and owns the buffers; a span's new resource is copied into the batch's side buffer.

pub mod letters;
pub mod redis;
pub mod sql;

use crate::model::trace::{Batch, Str};
pub use sql::{SqlError, SqlObfuscator};

/// The resource of an SQL span that did not obfuscate.
pub const NON_PARSABLE: &str = "Non-parsable SQL query";
pub const SQL_QUERY: &str = "sql.query";

/// The obfuscator's state across requests.
#[derive(Debug, Default)]
pub struct Obfuscator {
    pub sql: SqlObfuscator,
    redis_out: Vec<u8>,
}

/// What was done to a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a span type that is obfuscated.
    Untouched,
    /// SQL obfuscated.
    Sql,
    /// SQL that did not parse: resource `Non-parsable SQL query`.
    SqlError,
    /// SQL span with an empty resource (left as is).
    SqlEmpty,
    /// Redis resource quantized.
    Redis,
}

/// The strings obfuscation adds, stored once per batch in its side buffer.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    sql_query: Str,
    non_parsable: Str,
}

impl Keys {
    pub fn new(b: &mut Batch) -> Keys {
        Keys { sql_query: b.push_side(SQL_QUERY), non_parsable: b.push_side(NON_PARSABLE) }
    }
}

/// Obfuscates span `i` of `b` in place. A new resource is copied into the side buffer only when
/// it differs from the old one, and only within the batch's limit (else the span keeps its
/// resource and the batch is over its limit).
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
    let query = b.text(body, s.resource);
    let (out, outcome) = if is_sql {
        match ob.sql.obfuscate(query) {
            Ok(out) => (out, Outcome::Sql),
            Err(_) => {
                // The raw query, unless the client set the key (even empty).
                if b.meta(body, &s, SQL_QUERY).is_none() {
                    b.push_extra((keys.sql_query, s.resource));
                }
                b.spans[i].resource = keys.non_parsable;
                return Outcome::SqlError;
            }
        }
    } else {
        redis::quantize(query, &mut ob.redis_out);
        (&ob.redis_out[..], Outcome::Redis)
    };
    let resource = if out == query.as_bytes() {
        s.resource
    } else {
        if !b.fits(out.len()) {
            return outcome;
        }
        let begin = b.side_begin();
        b.side.extend_from_slice(out);
        b.side_end(begin)
    };
    b.spans[i].resource = resource;
    if outcome == Outcome::Sql && b.meta(body, &s, SQL_QUERY).is_none_or(|v| v.is_empty()) {
        b.push_extra((keys.sql_query, resource));
    }
    outcome
}
