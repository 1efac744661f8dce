//! DogStatsD datagrams (spec/dogstatsd.md §2): messages split on `\n`, each a metric
//! `name:value[:value…]|type[|@rate][|#tags][|c:id][|T<ts>]`, an event `_e{t,x}:title|text|…` or a
//! service check `_sc|name|status|…`. Views borrow the datagram; nothing is copied or allocated.
//! A malformed message is an error for that message only: [`messages`] yields the others.

/// Why a message was refused (one `/status` counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A metric line that does not parse (pipes, name, type, value or rate).
    Metric,
    /// A metric value that is a decimal number too large for a float (`1e999`).
    NonFinite,
    Event,
    ServiceCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    /// `h` and `ms` (a timer is a histogram: `enrichMetricType`).
    Histogram,
    Set,
    Distribution,
}

/// `s` split on `sep`, as `slice::split` does, found with `memchr` (a line is scanned once per
/// separator kind, a word at a time).
#[derive(Debug, Clone)]
pub struct Pieces<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

pub fn pieces(s: &[u8], sep: u8) -> Pieces<'_> {
    Pieces { rest: Some(s), sep }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let r = self.rest?;
        match memchr::memchr(self.sep, r) {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

/// One metric message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a [u8],
    pub kind: MetricType,
    /// The first value (`NaN` for a set, whose member is [`Metric::raw_value`]).
    pub value: f64,
    /// The values after the first, `:`-separated, already checked (protocol v1.1 packing);
    /// empty for a single value and for sets.
    pub more: &'a [u8],
    /// Everything after the name's `:` (a set's member).
    pub raw_value: &'a [u8],
    /// The sample rate as sent, `None` without `@`. Not range-checked here (see the aggregator).
    pub rate: Option<f64>,
    /// The text after `#`, comma-separated (may be empty).
    pub tags: &'a [u8],
}

impl<'a> Metric<'a> {
    /// Every value, the first one first.
    pub fn values(&self) -> impl Iterator<Item = f64> + 'a {
        let first = self.value;
        let more = self.more;
        // `more` was checked by the parser; empty (one value, the usual case) it yields nothing.
        let rest = Fields { rest: (!more.is_empty()).then_some(more), sep: b':' };
        std::iter::once(first).chain(rest.filter_map(number))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Normal,
    Low,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertType {
    Error,
    Warning,
    Info,
    Success,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Error => "error",
            AlertType::Warning => "warning",
            AlertType::Info => "info",
            AlertType::Success => "success",
        }
    }
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// One event message. `title` and `text` are raw: the two bytes `\n` in them mean a newline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    pub title: &'a [u8],
    pub text: &'a [u8],
    /// `d:`; `None` (or a bad value) means "when it arrived".
    pub timestamp: Option<i64>,
    pub host: Option<&'a [u8]>,
    pub aggregation_key: Option<&'a [u8]>,
    pub priority: Priority,
    pub source_type: Option<&'a [u8]>,
    pub alert_type: AlertType,
    pub tags: &'a [u8],
}

/// One service check message (parsed to be counted; never sent, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCheck<'a> {
    pub name: &'a [u8],
    pub status: u8,
    pub tags: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message<'a> {
    Metric(Metric<'a>),
    Event(Event<'a>),
    ServiceCheck(ServiceCheck<'a>),
}

/// The messages of a datagram: split on `\n`, one trailing `\r` stripped, empty lines skipped.
/// `truncated` (the kernel cut the datagram, `MSG_TRUNC`): the last line is partial and is
/// left out (the caller counts it).
pub fn lines(datagram: &[u8], truncated: bool) -> impl Iterator<Item = &[u8]> {
    let whole = if truncated {
        match memchr::memrchr(b'\n', datagram) {
            Some(i) => &datagram[..i],
            None => &[][..],
        }
    } else {
        datagram
    };
    pieces(whole, b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.is_empty())
}

/// Every message of a datagram, parsed (see [`lines`]).
pub fn messages(datagram: &[u8], truncated: bool) -> impl Iterator<Item = Result<Message<'_>, Reject>> {
    lines(datagram, truncated).map(message)
}

/// One message (a line without its `\n`).
pub fn message(line: &[u8]) -> Result<Message<'_>, Reject> {
    if line.starts_with(b"_e{") {
        event(line).map(Message::Event).ok_or(Reject::Event)
    } else if line.starts_with(b"_sc") {
        service_check(line).map(Message::ServiceCheck).ok_or(Reject::ServiceCheck)
    } else {
        metric(line).map(Message::Metric)
    }
}

/// At most this many `|`-separated fields are looked at in one metric line (more fail the pipe
/// rule anyway; `c:` and `T` fields are the only ones not counted, and a line of 64 KiB of
/// `|` must not be walked field by field for nothing).
const MAX_FIELDS: usize = 8;

/// The first `b` in `s`, a word at a time, inline. Within a line the separators are a few bytes
/// apart, where `memchr`'s call and set-up cost more than the search (profiled: half of the
/// parse); `memchr` stays for lines in a datagram, which are long.
fn find(b: u8, s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(b);
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ pattern;
        // A zero byte of `x` is a match; the lowest flagged byte is always a true one (a false
        // flag can only sit above a true zero, where the borrow came from).
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    // i <= s.len(): it only advances past whole words.
    s.get(i..).unwrap_or(&[]).iter().position(|&c| c == b).map(|p| i + p)
}

/// `s` split on `sep` with [`find`] (short pieces).
#[derive(Debug, Clone)]
struct Fields<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let r = self.rest?;
        match find(self.sep, r) {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                self.rest = None;
                Some(r)
            }
        }
    }
}

fn fields(s: &[u8], sep: u8) -> Fields<'_> {
    Fields { rest: Some(s), sep }
}

pub fn metric(line: &[u8]) -> Result<Metric<'_>, Reject> {
    let mut parts = fields(line, b'|');
    let head = parts.next().unwrap_or_default();
    let kind = match parts.next() {
        Some(b"g") => MetricType::Gauge,
        Some(b"c") => MetricType::Counter,
        Some(b"h") | Some(b"ms") => MetricType::Histogram,
        Some(b"s") => MetricType::Set,
        Some(b"d") => MetricType::Distribution,
        _ => return Err(Reject::Metric),
    };
    let (mut rate, mut tags, mut counted) = (None, &b""[..], 0);
    for (i, f) in parts.enumerate() {
        if i >= MAX_FIELDS {
            return Err(Reject::Metric);
        }
        // Protocol v1.2 container id and v1.3 timestamp: known, ignored, not counted (Ours, §2.3).
        if f.starts_with(b"c:") || f.first() == Some(&b'T') {
            continue;
        }
        counted += 1;
        match f.first() {
            Some(b'@') => rate = Some(number(&f[1..]).ok_or(Reject::Metric)?),
            Some(b'#') => tags = &f[1..],
            _ => {}
        }
    }
    // 1 to 3 pipes: type plus at most two optional fields.
    if counted > 2 {
        return Err(Reject::Metric);
    }
    let colon = find(b':', head).ok_or(Reject::Metric)?;
    let (name, raw_value) = (&head[..colon], &head[colon + 1..]);
    if name.is_empty() || raw_value.is_empty() {
        return Err(Reject::Metric);
    }
    if kind == MetricType::Set {
        return Ok(Metric { name, kind, value: f64::NAN, more: b"", raw_value, rate, tags });
    }
    let (first, more) = match find(b':', raw_value) {
        Some(i) => (&raw_value[..i], &raw_value[i + 1..]),
        None => (raw_value, &b""[..]),
    };
    let value = checked(first)?;
    if !more.is_empty() || first.len() != raw_value.len() {
        for v in fields(more, b':') {
            checked(v)?;
        }
    }
    Ok(Metric { name, kind, value, more, raw_value, rate, tags })
}

fn checked(v: &[u8]) -> Result<f64, Reject> {
    match decimal(v) {
        Decimal::Not => Err(Reject::Metric),
        Decimal::Value(x) if x.is_finite() => Ok(x),
        Decimal::Value(_) => Err(Reject::NonFinite),
    }
}

/// A decimal number (sign, digits, fraction, exponent); `None` for anything else, including
/// `inf`, `nan` and hex, which Rust's and Go's float parsers would accept.
pub fn number(v: &[u8]) -> Option<f64> {
    match decimal(v) {
        Decimal::Value(x) => Some(x),
        Decimal::Not => None,
    }
}

enum Decimal {
    Not,
    Value(f64),
}

/// Exact powers of ten as `f64` (10^22 is the largest that is exact).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Checks the decimal grammar and converts in one pass. The common value (`42`, `-0.25`: at most
/// 2^53 as an integer of digits, at most 22 fraction digits, no exponent) is `digits / 10^frac`,
/// both exact, so the one division rounds correctly (Clinger's fast path) and equals what the
/// standard parser gives; anything else goes to the standard parser (profiled: it was a fifth of
/// the cost of a metric).
fn decimal(v: &[u8]) -> Decimal {
    let mut i = 0;
    let negative = v.first() == Some(&b'-');
    if matches!(v.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    // `mantissa` holds the digits while fewer than 20 were read (no u64 overflow).
    let (mut mantissa, mut read) = (0u64, 0usize);
    let int_start = i;
    while let Some(d) = v.get(i).filter(|b| b.is_ascii_digit()) {
        if read < 19 {
            mantissa = mantissa * 10 + u64::from(d - b'0');
        }
        read += 1;
        i += 1;
    }
    let mut digits = i - int_start;
    let mut frac = 0;
    if v.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while let Some(d) = v.get(i).filter(|b| b.is_ascii_digit()) {
            if read < 19 {
                mantissa = mantissa * 10 + u64::from(d - b'0');
            }
            read += 1;
            i += 1;
        }
        frac = i - f;
        digits += frac;
    }
    if digits == 0 {
        return Decimal::Not;
    }
    let mut exponent = false;
    if matches!(v.get(i), Some(b'e' | b'E')) {
        exponent = true;
        i += 1;
        if matches!(v.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = i;
        while v.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == e {
            return Decimal::Not;
        }
    }
    if i != v.len() {
        return Decimal::Not;
    }
    if !exponent && read < 19 && mantissa <= 1 << 53 && frac < POW10.len() {
        let x = mantissa as f64 / POW10[frac];
        return Decimal::Value(if negative { -x } else { x });
    }
    // ASCII only, checked above; the grammar is a subset of what `f64::from_str` takes.
    match std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
        Some(x) => Decimal::Value(x),
        None => Decimal::Not,
    }
}

fn int(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `_e{<title_len>,<text_len>}:<title>|<text>[|d:…][|h:…][|k:…][|p:…][|s:…][|t:…][|#tags]`.
/// Lengths are bytes; negative ones, ones that overrun the line and cuts not followed by `|`
/// are refused (Ours, §2.5).
pub fn event(line: &[u8]) -> Option<Event<'_>> {
    let colon = memchr::memchr(b':', line)?;
    if colon < 7 {
        return None;
    }
    // Between `_e{` and the header's last byte (meant to be `}`).
    let lens = &line[3..colon - 1];
    let comma = memchr::memchr(b',', lens)?;
    let title_len = usize::try_from(int(&lens[..comma])?).ok()?;
    let text_len = usize::try_from(int(&lens[comma + 1..])?).ok()?;
    if title_len == 0 || text_len == 0 {
        return None;
    }
    let rest = &line[colon + 1..];
    if rest.len() < title_len.checked_add(text_len)?.checked_add(1)? || rest[title_len] != b'|' {
        return None;
    }
    let title = &rest[..title_len];
    let text = &rest[title_len + 1..title_len + 1 + text_len];
    let tail = &rest[title_len + 1 + text_len..];
    let mut e = Event {
        title,
        text,
        timestamp: None,
        host: None,
        aggregation_key: None,
        priority: Priority::Normal,
        source_type: None,
        alert_type: AlertType::Info,
        tags: b"",
    };
    if tail.is_empty() {
        return Some(e);
    }
    let tail = tail.strip_prefix(b"|")?;
    for f in tail.split(|&b| b == b'|') {
        match f {
            [b'd', b':', v @ ..] => e.timestamp = int(v).or(e.timestamp),
            [b'h', b':', v @ ..] => e.host = Some(v),
            [b'k', b':', v @ ..] => e.aggregation_key = Some(v),
            [b's', b':', v @ ..] => e.source_type = Some(v),
            [b'p', b':', v @ ..] => match v {
                b"normal" => e.priority = Priority::Normal,
                b"low" => e.priority = Priority::Low,
                // A bad value is ignored; the event stays (§2.5).
                _ => {}
            },
            [b't', b':', v @ ..] => match v {
                b"error" => e.alert_type = AlertType::Error,
                b"warning" => e.alert_type = AlertType::Warning,
                b"info" => e.alert_type = AlertType::Info,
                b"success" => e.alert_type = AlertType::Success,
                _ => {}
            },
            [b'#', v @ ..] => e.tags = v,
            _ => {}
        }
    }
    Some(e)
}

/// `_sc|<name>|<status>[|d:…][|h:…][|#tags][|m:…]`.
pub fn service_check(line: &[u8]) -> Option<ServiceCheck<'_>> {
    let mut f = line.strip_prefix(b"_sc|")?.split(|&b| b == b'|');
    let name = f.next().filter(|n| !n.is_empty())?;
    let status = match f.next()? {
        [s @ b'0'..=b'3'] => s - b'0',
        _ => return None,
    };
    let mut tags = &b""[..];
    for x in f {
        if let Some(t) = x.strip_prefix(b"#") {
            tags = t;
        }
    }
    Some(ServiceCheck { name, status, tags })
}

/// The tags of a `#` field: comma-separated, empty ones dropped (Ours, §2.4).
pub fn tags(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    pieces(field, b',').filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(line: &str) -> Metric<'_> {
        match message(line.as_bytes()) {
            Ok(Message::Metric(m)) => m,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn err(line: &str) -> Reject {
        message(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn metric_fields() {
        let x = m("page.views:1|c|@0.5|#env:prod,b");
        assert_eq!((x.name, x.kind, x.value, x.rate), (&b"page.views"[..], MetricType::Counter, 1.0, Some(0.5)));
        assert_eq!(tags(x.tags).collect::<Vec<_>>(), [&b"env:prod"[..], b"b"]);
        let x = m("lat:-2.5e1|ms|#a:b:c");
        assert_eq!((x.kind, x.value, x.rate), (MetricType::Histogram, -25.0, None));
        assert_eq!(x.tags, b"a:b:c");
        // Optional fields in any order; unknown ones ignored.
        let x = m("g:+5|g|#t|@1");
        assert_eq!((x.value, x.rate, x.tags), (5.0, Some(1.0), &b"t"[..]));
        assert_eq!(m("g:5|g|zzz").tags, b"");
        assert_eq!(m("s:1.0|s").raw_value, b"1.0");
        assert_eq!(m("s:abc|s").kind, MetricType::Set);
        assert_eq!(m("d:3|d").kind, MetricType::Distribution);
        // Rates are not range-checked here.
        assert_eq!(m("c:1|c|@0").rate, Some(0.0));
        assert_eq!(m("c:1|c|@5").rate, Some(5.0));
    }

    #[test]
    fn multi_values_and_newer_fields() {
        let x = m("h:1:2:3.5|h");
        assert_eq!(x.values().collect::<Vec<_>>(), [1.0, 2.0, 3.5]);
        assert_eq!(m("g:7|g").values().collect::<Vec<_>>(), [7.0]);
        // `c:` and `T` do not count toward the pipe limit.
        let x = m("m:1|c|@0.5|#a|c:abc|T1700000000");
        assert_eq!((x.rate, x.tags), (Some(0.5), &b"a"[..]));
        assert_eq!(err("h:1:x|h"), Reject::Metric);
        assert_eq!(err("h:1:|h"), Reject::Metric);
    }

    #[test]
    fn metric_rejects() {
        for bad in [
            "x",
            "x:1",
            "x:1|",
            "x:1|q",
            ":1|g",
            "x:|g",
            "x|g",
            "x:1|g|@a",
            "x:1|g|@",
            "x:1|g|a|b|c",
            "x:nan|g",
            "x:inf|g",
            "x:Infinity|g",
            "x:0x10|g",
            "x:1e|g",
            "x:.|g",
            "x:-|g",
            "x:1 |g",
        ] {
            assert_eq!(err(bad), Reject::Metric, "{bad}");
        }
        assert_eq!(err("x:1e999|g"), Reject::NonFinite);
        let pipes = "|".repeat(65536);
        assert_eq!(err(&pipes), Reject::Metric);
        assert_eq!(err(&format!("x:1|g{pipes}")), Reject::Metric);
        // Four counted optional fields: rejected even if each is valid.
        assert_eq!(err("m:1|c|@0.5|#a|x"), Reject::Metric);
    }

    #[test]
    fn numbers_equal_the_standard_parser() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut fixed: Vec<String> = [
            "0",
            "-0",
            "+7",
            "0.1",
            "0.3",
            "-2.5",
            "123456789.123456789",
            "9007199254740992",
            "9007199254740993",
            "1.7976931348623157",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "12345678901234567890",
            "1e3",
            "2.5E-3",
            "007",
            ".5",
            "5.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let (r, k) = (next(), next());
            fixed.push(match k % 4 {
                0 => format!("{}", r % 1_000_000),
                1 => format!("{}.{}", r % 100_000, next() % 1_000_000),
                2 => format!("-{}", f64::from_bits(r >> 2)),
                _ => format!("{}", (r >> 11) as f64 / (1u64 << (k % 53)) as f64),
            });
        }
        for v in &fixed {
            let std: f64 = v.parse().unwrap();
            let ours = number(v.as_bytes()).unwrap_or_else(|| panic!("{v}"));
            assert_eq!(ours.to_bits(), std.to_bits(), "{v}");
        }
    }

    #[test]
    fn find_matches_position() {
        let hay: Vec<u8> = (0..64u8).map(|i| if i % 7 == 3 { b'|' } else { 0x80 | i }).collect();
        // Neighbours of the needles (`|` ^ 1 = `}`, `:` ^ 1 = `;`): the bytes a word-at-a-time
        // search could flag falsely (b ^ 1 borrows into the next byte's high bit).
        let near: Vec<u8> = b"a|}|}}:;;:;|;}:x}|:;".iter().copied().cycle().take(64).collect();
        for hay in [&hay, &near] {
            for start in 0..hay.len() {
                for end in start..hay.len() {
                    let s = &hay[start..end];
                    for b in [b'|', b':', b'}', b';', 0x80 | 5, 0x7c ^ 0x80] {
                        assert_eq!(find(b, s), s.iter().position(|&c| c == b), "{start}..{end} {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn framing() {
        let d = b"a:1|g\r\n\n\nb:2|c\nbad\nc:3|h";
        let got: Vec<_> = messages(d, false).collect();
        assert_eq!(got.len(), 4);
        assert!(got[2].is_err() && got[3].is_ok());
        // A truncated datagram loses its partial last line only.
        let got: Vec<_> = lines(b"a:1|g\nb:2|c\nc:3", true).collect();
        assert_eq!(got, [&b"a:1|g"[..], b"b:2|c"]);
        assert_eq!(lines(b"c:3|g", true).count(), 0);
        assert_eq!(lines(b"a:1|g\r", false).collect::<Vec<_>>(), [&b"a:1|g"[..]]);
    }

    #[test]
    fn tags_drop_empties() {
        assert_eq!(tags(b"a,,b,").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        assert_eq!(tags(b"").count(), 0);
    }

    #[test]
    fn events() {
        let Ok(Message::Event(e)) = message(
            b"_e{6,14}:Deploy|v42 rolled out|d:1700000003|p:low|t:error|h:web|k:agg|s:jenkins|#env:prod,team:a",
        ) else {
            panic!()
        };
        assert_eq!((e.title, e.text), (&b"Deploy"[..], &b"v42 rolled out"[..]));
        assert_eq!(e.timestamp, Some(1_700_000_003));
        assert_eq!((e.priority, e.alert_type), (Priority::Low, AlertType::Error));
        assert_eq!(
            (e.host, e.aggregation_key, e.source_type),
            (Some(&b"web"[..]), Some(&b"agg"[..]), Some(&b"jenkins"[..]))
        );
        assert_eq!(e.tags, b"env:prod,team:a");
        // Title and text are cut by length, so they may hold `|`.
        let Ok(Message::Event(e)) = message(b"_e{3,3}:a|b|c|d") else { panic!() };
        assert_eq!((e.title, e.text), (&b"a|b"[..], &b"c|d"[..]));
        // Defaults; a bad optional value is ignored.
        let Ok(Message::Event(e)) = message(b"_e{1,1}:t|x|p:urgent|t:meh|d:soon") else { panic!() };
        assert_eq!((e.priority, e.alert_type, e.timestamp), (Priority::Normal, AlertType::Info, None));
        for bad in [
            "_e{",
            "_e{1,1}",
            "_e{0,1}:|x",
            "_e{1,0}:t|",
            "_e{-1,5}:abcdefg",
            "_e{5,5}:ab|c",
            "_e{2,1}:abc",
            "_e{1,1}:tx|",
        ] {
            assert_eq!(err(bad), Reject::Event, "{bad}");
        }
        assert_eq!(err("_e{99999999999999999999,1}:t|x"), Reject::Event);
    }

    #[test]
    fn service_checks() {
        let Ok(Message::ServiceCheck(s)) = message(b"_sc|db.up|2|d:1|h:x|#a,b|m:down") else { panic!() };
        assert_eq!((s.name, s.status, s.tags), (&b"db.up"[..], 2, &b"a,b"[..]));
        for bad in ["_sc", "_sc|", "_sc|x", "_sc||1", "_sc|x|4", "_sc|x|01"] {
            assert_eq!(err(bad), Reject::ServiceCheck, "{bad}");
        }
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"_e{}sc|:#@,.-+0123456789\n\r\xff\x00gchmsd";
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 40) as usize;
            let mut s = seed;
            for _ in 0..n {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                buf.push(alphabet[(s >> 33) as usize % alphabet.len()]);
            }
            for r in messages(&buf, seed & 1 == 1) {
                if let Ok(Message::Metric(m)) = r {
                    assert!(m.values().all(f64::is_finite) || m.kind == MetricType::Set);
                }
            }
        }
    }
}
