//! A minimal leveled logger to stderr: one line per event, UTC timestamp, no allocation in the
//! steady state (a line is formatted into a per-thread buffer that is reused).
//! The API key never reaches it: `config::ApiKey` has no way to print its value, and every line
//! is scrubbed before it is written: `api_key=<value>` (and `api-key: <value>`, `"apikey":"<value>"`)
//! loses its value, and a registered secret ([`register_secret`], the forwarder registers the API
//! key) is replaced wherever it appears, for text the agent does not control (a receiver's reply
//! body that echoes the request URL).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// What stands in for a removed secret.
pub const REDACTED: &str = "***";

/// Parameter names whose value is a key (compared ASCII case-insensitively; `sts-api-key`,
/// `DD-API-KEY` and `X-Api-Key` contain one).
const KEY_NAMES: [&str; 3] = ["api_key", "api-key", "apikey"];

/// A secret's prefix this long at the very end of a text is removed too (a reply excerpt cut at
/// its length limit in the middle of the key).
const MIN_PARTIAL: usize = 6;

/// Registered secrets, in every form they can take in a line; bounded (tests register many).
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_SECRETS: usize = 32;

thread_local! {
    /// The formatted line and its scrubbed copy, reused line after line.
    static LINE: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

/// The forms `key` can take in text: as given, percent-encoded (as it is in a URL query) and
/// escaped as `{:?}` prints it. Empty for an empty key.
pub fn secret_forms(key: &str) -> Vec<String> {
    let mut forms: Vec<String> = Vec::new();
    if key.is_empty() {
        return forms;
    }
    for f in [key.to_string(), crate::url::percent_encode(key), key.escape_debug().to_string()] {
        if !forms.contains(&f) {
            forms.push(f);
        }
    }
    forms
}

/// Every later log line has `key` (in each of its [`secret_forms`]) replaced by `***`.
pub fn register_secret(key: &str) {
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    for f in secret_forms(key) {
        if !secrets.contains(&f) && secrets.len() < MAX_SECRETS {
            secrets.push(f);
        }
    }
}

/// `text` with every value of a key parameter and every occurrence of a secret replaced by `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    scrub_into(text, secrets, &mut out);
    out
}

/// [`scrub`] into a caller's buffer (cleared first). Pure; never panics. Key values are masked
/// first (on the text as given), then every secret anywhere in the result, so no secret
/// survives in the text kept around a masked value.
pub fn scrub_into(text: &str, secrets: &[String], out: &mut String) {
    out.clear();
    let b = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if let Some((value_start, value_end)) = key_value_at(b, i) {
            out.push_str(text.get(copied..value_start).unwrap_or(""));
            out.push_str(REDACTED);
            i = value_end;
            copied = i;
            continue;
        }
        i = next_boundary(text, i);
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    // Secrets, in place: each match becomes the mask and the scan goes on after it.
    let mut i = 0;
    while i < out.len() {
        let rest = out.as_bytes().get(i..).unwrap_or(&[]);
        if let Some(s) = secrets.iter().find(|s| !s.is_empty() && rest.starts_with(s.as_bytes())) {
            out.replace_range(i..i + s.len(), REDACTED);
            i += REDACTED.len();
            continue;
        }
        i = next_boundary(out, i);
    }
    // A secret cut short at the end (an excerpt truncated inside the key).
    for s in secrets {
        let longest = (MIN_PARTIAL..s.len()).rev().find(|&n| s.is_char_boundary(n) && out.ends_with(&s[..n]));
        if let Some(n) = longest {
            out.truncate(out.len() - n);
            out.push_str(REDACTED);
            break;
        }
    }
}

/// The next character boundary of `s` after `i`.
fn next_boundary(s: &str, mut i: usize) -> usize {
    i += 1;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// At `i`, a key parameter name followed by `=`/`:`/`%3D` (quotes, backslashes, spaces and
/// tabs allowed before and after it) and a non-empty value: where the value starts and ends.
fn key_value_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let name =
        KEY_NAMES.iter().find(|n| b.get(i..i + n.len()).is_some_and(|w| w.eq_ignore_ascii_case(n.as_bytes())))?;
    let mut j = i + name.len();
    let quote = |c: u8| matches!(c, b'"' | b'\'' | b'\\');
    // `api_key = v`, `{"api_key" : "v"}`: quotes, spaces and tabs before the separator too.
    while b.get(j).copied().is_some_and(|c| quote(c) || c == b' ' || c == b'\t') {
        j += 1;
    }
    match b.get(j) {
        Some(b'=' | b':') => j += 1,
        Some(b'%') if b.get(j + 1..j + 3).is_some_and(|h| h.eq_ignore_ascii_case(b"3d")) => j += 3,
        _ => return None,
    }
    while b.get(j).copied().is_some_and(|c| quote(c) || c == b' ' || c == b'\t') {
        j += 1;
    }
    let start = j;
    while b.get(j).copied().is_some_and(|c| {
        !(c.is_ascii_whitespace() || c.is_ascii_control() || quote(c) || b"&,;#<>()[]{}|".contains(&c))
    }) {
        j += 1;
    }
    (j > start).then_some((start, j))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn parse(s: &str) -> Option<Option<Level>> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" | "none" | "critical" => None,
            "error" | "err" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

static MAX: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// `None` turns logging off.
pub fn set_max_level(level: Option<Level>) {
    MAX.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX.load(Ordering::Relaxed)
}

pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (y, mo, d, h, mi, s) = civil(now.as_secs());
    let emit = |line: &mut String, clean: &mut String| {
        line.clear();
        let _ = write!(line, "{args}");
        {
            let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
            scrub_into(line, &secrets, clean);
        }
        let mut err = std::io::stderr().lock();
        // A failed write to stderr has nowhere else to go.
        let _ = writeln!(
            err,
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z {:5} {clean}",
            now.subsec_millis(),
            level.label()
        );
    };
    let reused = LINE.try_with(|bufs| match bufs.try_borrow_mut() {
        Ok(mut b) => {
            let (line, clean) = &mut *b;
            emit(line, clean);
            true
        }
        Err(_) => false,
    });
    // A line logged while formatting another (or during thread teardown): fresh buffers.
    if reused != Ok(true) {
        emit(&mut String::new(), &mut String::new());
    }
}

/// Epoch seconds to UTC calendar fields (Howard Hinnant's days-from-civil, inverted).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)+) => {
        if $crate::log::enabled($lvl) {
            $crate::log::write($lvl, format_args!($($arg)+));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Error, $($arg)+) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Warn, $($arg)+) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Info, $($arg)+) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Debug, $($arg)+) }; }

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(k: &str) -> Vec<String> {
        secret_forms(k)
    }

    #[test]
    fn scrub_removes_key_values_and_secrets() {
        let key = "0123456789abcdef0123456789abcdef";
        let s = forms(key);
        for (text, want) in [
            (
                "GET /stsAgent/intake/?api_key=0123456789abcdef0123456789abcdef&x=1 HTTP/1.1",
                "GET /stsAgent/intake/?api_key=***&x=1 HTTP/1.1",
            ),
            ("echo: https://h/p?API_KEY=other-secret#f", "echo: https://h/p?API_KEY=***#f"),
            ("sts-api-key: hunter2\r\nHost: x", "sts-api-key: ***\r\nHost: x"),
            (r#"{"apikey":"hunter2","a":1}"#, r#"{"apikey":"***","a":1}"#),
            (r#"\"api_key\": \"hunter2\""#, r#"\"api_key\": \"***\""#),
            ("next=%2Fx%3Fapi_key%3Dhunter2", "next=%2Fx%3Fapi_key%3D***"),
            ("the key 0123456789abcdef0123456789abcdef again", "the key *** again"),
            ("cut short: 0123456789ab", "cut short: ***"),
            // Prose and our own messages stay as they are.
            ("check STS_API_KEY) and the api key", "check STS_API_KEY) and the api key"),
            ("api_key=&x=1", "api_key=&x=1"),
            // A value after a space is removed too (as in a header line): safe side.
            ("api_key= something", "api_key= ***"),
            // Spaces or tabs before the separator as well.
            ("api_key = other-key", "api_key = ***"),
            ("api_key\t:\tother-key", "api_key\t:\t***"),
            (r#"{"api_key" : "other-key"}"#, r#"{"api_key" : "***"}"#),
            ("X-Api-Key  :  other-key\r\n", "X-Api-Key  :  ***\r\n"),
            ("the api_key is fine", "the api_key is fine"),
            ("HTTP 503 \"Service Unavailable\"", "HTTP 503 \"Service Unavailable\""),
            ("ünïcödé api_key=ü€ done", "ünïcödé api_key=*** done"),
            ("", ""),
        ] {
            assert_eq!(scrub(text, &s), want, "{text}");
        }
        // The percent-encoded and the `{:?}` forms of a key with special characters.
        let odd = "k y\"z/long";
        let s = forms(odd);
        assert_eq!(scrub("q=k%20y%22z%2Flong!", &s), "q=***!");
        assert_eq!(scrub(&format!("{:?}", format!("body {odd} end")), &s), r#""body *** end""#);
        assert_eq!(scrub("short keys too: k y\"z/long", &s), "short keys too: ***");
    }

    /// The fuzz target's property (`fuzz/fuzz_targets/scrub.rs`) over random texts built from
    /// pieces of secrets, key names, delimiters and multibyte characters.
    #[test]
    fn scrub_property_on_random_texts() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pieces = ["api_key", "API-KEY", "apikey", "=", ":", "%3D", "\"", "\\", " ", "&", "é", "€", "a", "9", "?"];
        for _ in 0..3000 {
            let secret: String = (0..1 + rand(12)).map(|_| pieces[rand(pieces.len())]).collect();
            let forms = secret_forms(&secret);
            let mut text = String::new();
            for _ in 0..rand(30) {
                match rand(4) {
                    0 => text.push_str(&secret),
                    1 => text.push_str(
                        &secret[..(0..=secret.len())
                            .rev()
                            .find(|&n| secret.is_char_boundary(n) && n <= rand(secret.len() + 1))
                            .unwrap_or(0)],
                    ),
                    _ => text.push_str(pieces[rand(pieces.len())]),
                }
            }
            let out = scrub(&text, &forms);
            assert!(!out.contains(&secret), "{secret:?} in {text:?} -> {out:?}");
        }
    }

    #[test]
    fn scrub_never_panics_and_leaves_no_secret() {
        // Every cut of a text full of near-matches and multibyte characters.
        let key = "sécret-κey-123456";
        let s = forms(key);
        let text = format!("api_k€y=x api_key=é&{key}\"apikey\":\"{key}\" api-key:%3D{key} sécret-κe");
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let Some(t) = text.get(a..b) else { continue };
                let out = scrub(t, &s);
                assert!(!out.contains(key), "{t:?} -> {out:?}");
            }
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(super::civil(1_795_132_799), (2026, 11, 19, 23, 59, 59));
    }
}
