//! Redis resource quantization (spec/traces-parity.md §2): the resource becomes the commands it
//! holds, upper-cased, at most three (`SET GET`, `MULTI SET EXEC ...`), with the second word of
//! compound commands (`CLIENT SETNAME`); arguments are dropped. Always on, as in the original.
//! (The original's opt-in obfuscation of `redis.raw_command` is not done: it is off by default.)

/// The most commands kept (`maxRedisNbCommands`).
const MAX_COMMANDS: usize = 3;
/// What clients append to a command they cut.
const TRUNCATION_MARK: &str = "...";
/// Commands of two words.
const COMPOUND: [&str; 6] = ["CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "SCRIPT"];

/// What [`quantize`] may write, at most, for a query of `len` bytes: its words, each character's
/// upper case at most 3/2 of its bytes (`ɐ`, 2 bytes, becomes `Ɐ`, 3), the spaces and ` ...`.
pub const fn buffer_bytes(len: usize) -> usize {
    2 * len + 8
}

/// Writes the quantized form of `query` into `out` (cleared first).
///
/// Lines are split on `\n` only and words on the space character only (tabs and `\r` stay in a
/// word), as the original does.
pub fn quantize(query: &str, out: &mut Vec<u8>) {
    out.clear();
    let mut truncated = false;
    let mut commands = 0;
    for line in query.split('\n') {
        if commands == MAX_COMMANDS {
            break;
        }
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        if first.ends_with(TRUNCATION_MARK) {
            truncated = true;
            continue;
        }
        let begin = out.len();
        out.push(b' ');
        upper(first, out);
        if COMPOUND.iter().any(|c| c.as_bytes() == &out[begin + 1..]) {
            if let Some(second) = words.next() {
                if second.ends_with(TRUNCATION_MARK) {
                    out.truncate(begin);
                    truncated = true;
                    continue;
                }
                out.push(b' ');
                upper(second, out);
            }
        }
        commands += 1;
        truncated = false;
    }
    if commands == MAX_COMMANDS || truncated {
        out.extend_from_slice(b" ...");
    }
    // Every command was written after a space.
    if out.first() == Some(&b' ') {
        out.remove(0);
    }
}

/// Go's `strings.ToUpper`: ASCII letters, and other characters by their single-character upper
/// case (a character whose upper case is several, like `ß`, stays as it is).
fn upper(word: &str, out: &mut Vec<u8>) {
    if word.is_ascii() {
        out.extend(word.bytes().map(|b| b.to_ascii_uppercase()));
        return;
    }
    for c in word.chars() {
        let mut up = c.to_uppercase();
        let u = match (up.next(), up.next()) {
            (Some(u), None) => u,
            _ => c,
        };
        out.extend_from_slice(u.encode_utf8(&mut [0; 4]).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        let mut out = Vec::new();
        quantize(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(q("get my_key"), "GET");
        assert_eq!(q("client setname foo"), "CLIENT SETNAME");
        assert_eq!(q("SET a b\nGET a"), "SET GET");
        assert_eq!(q("MULTI\nSET k v\nEXEC"), "MULTI SET EXEC ...");
        assert_eq!(q("GET k\nDE..."), "GET ...");
        assert_eq!(q("SE..."), "...");
        assert_eq!(q("CONFIG GE..."), "...");
        assert_eq!(q(""), "");
        assert_eq!(q("  \n \n"), "");
        assert_eq!(q("get\tx y"), "GET\tX");
        assert_eq!(q("straße x"), "STRAßE");
    }
}
