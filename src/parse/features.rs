//! The receiver's `GET /features` reply (spec/protocol.md E4/E7, §4.4): a JSON object mapping a
//! feature name to a boolean, e.g. `{"upgrade-to-multi-metrics":true,"health-states":false}`.
//! Only the names the original agents understand are kept; other keys are skipped. A known key
//! whose value is not a boolean counts as `false` and the others are kept (as the process agent
//! reads it).

use super::ParseError;

const FILE: &str = "/features";
/// Nesting the skipper follows inside an unknown value before it gives up.
const MAX_DEPTH: u32 = 32;

/// The features a receiver advertises (`false` for every one it does not name).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `upgrade-to-multi-metrics`: the eleven container metrics go to `/intake` as raw metrics
    /// (and stay 0 inside `Container`).
    pub multi_metrics: bool,
    /// `incremental-topology`: `CollectorCommands` every run and a full `CollectorProc` once a minute.
    pub incremental_topology: bool,
    /// `health-states`: the process agent's own topology and health stream on `/intake`.
    pub health_states: bool,
    /// `expose-kubernetes-status`: understood, nothing on ECS depends on it.
    pub expose_kubernetes_status: bool,
}

impl Features {
    /// `(name, advertised)` for every feature the agent knows, in the spec's order.
    pub fn by_name(&self) -> [(&'static str, bool); 4] {
        [
            ("upgrade-to-multi-metrics", self.multi_metrics),
            ("incremental-topology", self.incremental_topology),
            ("health-states", self.health_states),
            ("expose-kubernetes-status", self.expose_kubernetes_status),
        ]
    }

    /// Sets the feature called `name`; `false` for a name the agent does not know.
    pub fn set(&mut self, name: &[u8], on: bool) -> bool {
        let slot = match name {
            b"upgrade-to-multi-metrics" => &mut self.multi_metrics,
            b"incremental-topology" => &mut self.incremental_topology,
            b"health-states" => &mut self.health_states,
            b"expose-kubernetes-status" => &mut self.expose_kubernetes_status,
            _ => return false,
        };
        *slot = on;
        true
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

fn err(what: &'static str) -> ParseError {
    ParseError::new(FILE, what)
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.b.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, ParseError> {
        self.ws();
        self.b.get(self.pos).copied().ok_or(err("unexpected end of reply"))
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ParseError> {
        if self.peek()? != c {
            return Err(err(what));
        }
        self.pos += 1;
        Ok(())
    }

    /// A string; its raw bytes between the quotes (escapes left as they are: no known name has one).
    fn string(&mut self) -> Result<&'a [u8], ParseError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        loop {
            match self.b.get(self.pos) {
                None => return Err(err("unterminated string")),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    let s = self.b.get(start..self.pos).ok_or(err("unterminated string"))?;
                    self.pos += 1;
                    return Ok(s);
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ParseError> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(err("not a JSON value"))
        }
    }

    fn boolean(&mut self) -> Result<Option<bool>, ParseError> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| Some(true)),
            b'f' => self.literal(b"false").map(|_| Some(false)),
            _ => Ok(None),
        }
    }

    /// Skips one value of any type.
    fn skip(&mut self, depth: u32) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(err("nested too deeply"));
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'{' | b'[' => {
                let close = if self.peek()? == b'{' { b'}' } else { b']' };
                self.pos += 1;
                if self.peek()? == close {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if close == b'}' {
                        self.string()?;
                        self.expect(b':', "expected ':'")?;
                    }
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        c if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(err("expected ',' or the end of a container")),
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                while self.b.get(self.pos).is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(err("not a number"));
                }
                Ok(())
            }
            _ => Err(err("not a JSON value")),
        }
    }
}

/// Parses a `/features` reply body.
pub fn parse(body: &[u8]) -> Result<Features, ParseError> {
    let mut r = Reader { b: body, pos: 0 };
    let mut f = Features::default();
    r.expect(b'{', "the reply is not a JSON object")?;
    if r.peek()? == b'}' {
        r.pos += 1;
    } else {
        loop {
            let key = r.string()?;
            r.expect(b':', "expected ':'")?;
            let mut probe = Features::default();
            if probe.set(key, false) {
                match r.boolean()? {
                    Some(on) => {
                        f.set(key, on);
                    }
                    None => {
                        r.skip(0)?;
                        f.set(key, false);
                    }
                }
            } else {
                r.skip(0)?;
            }
            match r.peek()? {
                b',' => r.pos += 1,
                b'}' => {
                    r.pos += 1;
                    break;
                }
                _ => return Err(err("expected ',' or '}'")),
            }
        }
    }
    r.ws();
    if r.pos != body.len() {
        return Err(err("bytes after the JSON object"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_features_unknown_keys_and_errors() {
        let f = parse(
            br#" {"upgrade-to-multi-metrics": true, "incremental-topology":false,
            "health-states":true, "future":{"a":[1,2.5e3,"x\"y",null]}, "n": -3} "#,
        )
        .unwrap();
        assert_eq!(
            f,
            Features {
                multi_metrics: true,
                incremental_topology: false,
                health_states: true,
                expose_kubernetes_status: false
            }
        );
        assert_eq!(parse(b"{}").unwrap(), Features::default());
        assert!(parse(br#"{"expose-kubernetes-status":true}"#).unwrap().expose_kubernetes_status);
        // A known key with another type of value is false; the others stay.
        let f =
            parse(br#"{"health-states":"yes","incremental-topology":true,"upgrade-to-multi-metrics":[1]}"#).unwrap();
        assert_eq!(f, Features { incremental_topology: true, ..Default::default() });
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"{",
            br#"{"health-states":tru}"#,
            br#"{"a":1"#,
            br#"{"a":1}x"#,
            br#"{"a" 1}"#,
            b"<html>Not Found</html>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = [b"{\"a\":".as_slice(), &[b'['; 100], &[b']'; 100], b"}"].concat();
        assert!(parse(&deep).is_err());
    }

    /// The reference: serde_json's reading of the same bytes, on mutations of a real reply.
    #[test]
    fn agrees_with_serde_json_on_mutated_replies() {
        let seed = br#"{"upgrade-to-multi-metrics":true,"incremental-topology":true,"health-states":false,"x":[1,{"y":null}]}"#;
        let mut rng = 0x9e37_79b9_u64;
        for _ in 0..5000 {
            let mut b = seed.to_vec();
            for _ in 0..(rng % 3 + 1) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % b.len();
                b[i] = b"{}[]\":,tfx1 "[(rng >> 32) as usize % 12];
            }
            let ours = parse(&b);
            let theirs = serde_json::from_slice::<serde_json::Value>(&b);
            match (&ours, &theirs) {
                (Ok(f), Ok(v)) => {
                    for (name, on) in f.by_name() {
                        assert_eq!(
                            v.get(name).and_then(|x| x.as_bool()).unwrap_or(false),
                            on,
                            "{:?}",
                            String::from_utf8_lossy(&b)
                        );
                    }
                }
                (Ok(_), Err(_)) => panic!("accepted what serde_json refuses: {:?}", String::from_utf8_lossy(&b)),
                (Err(_), Ok(_)) => panic!("refused what serde_json accepts: {:?}", String::from_utf8_lossy(&b)),
                (Err(_), Err(_)) => {}
            }
        }
    }
}
