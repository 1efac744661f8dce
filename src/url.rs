//! The small URL subset the agent needs: `http(s)://host[:port][/base/path]`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/stsAgent` or empty.
    pub base_path: String,
}

impl Url {
    /// Parses an absolute http or https URL; the error says what is wrong in a few words.
    pub fn parse(s: &str) -> Result<Url, &'static str> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err("scheme must be http:// or https://");
        };
        if rest.contains(['?', '#']) {
            return Err("a query or fragment is not allowed");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported");
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or("unterminated IPv6 literal")?;
            let host = &v6[..end];
            match &v6[end + 1..] {
                "" => (host, default_port),
                p => (host, parse_port(p.strip_prefix(':').ok_or("junk after IPv6 literal")?)?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, parse_port(p)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err("host is empty");
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)) {
            return Err("host has characters a host name cannot have");
        }
        if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("path has whitespace or control characters");
        }
        Ok(Url { scheme, host: host.to_ascii_lowercase(), port, base_path: path.trim_end_matches('/').to_string() })
    }

    /// `host` or `host:port` as the HTTP `Host` header wants it.
    pub fn host_header(&self) -> String {
        let default = matches!((self.scheme, self.port), (Scheme::Http, 80) | (Scheme::Https, 443));
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A URL as given, safe to print back in an error: userinfo (`user:password@`) becomes `***@`
/// and a query or fragment becomes `?***` (either may hold a password or an `api_key=`). Pure
/// string surgery, so it works on values `Url::parse` refuses — which is why it assumes nothing
/// about where the host ends: a password may hold `/`, `?` or `#`, and a query may hold `://`.
/// The text before the first `://` is a scheme only if it looks like one (RFC 3986
/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`); everything after the scheme up to the last `@`
/// of the whole value is masked (an `@` in a path or query costs the host in the echo, never a
/// password); from the first `?` or `#` after that, the rest is masked.
pub fn redact(s: &str) -> String {
    let scheme_len = match s.find("://") {
        Some(i) if is_scheme(&s[..i]) => i + 3,
        _ => 0,
    };
    let (scheme, rest) = s.split_at(scheme_len);
    let mut out = String::with_capacity(s.len() + 6);
    out.push_str(scheme);
    let after = match rest.rfind('@') {
        Some(at) => {
            out.push_str("***");
            &rest[at..]
        }
        None => rest,
    };
    match after.find(['?', '#']) {
        Some(q) => {
            out.push_str(&after[..=q]);
            out.push_str("***");
        }
        None => out.push_str(after),
    }
    out
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic()) && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

/// `s` with every byte but the unreserved ones (RFC 3986 `ALPHA DIGIT - . _ ~`) as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let hex = b"0123456789ABCDEF";
            out.push('%');
            out.push(hex[usize::from(b >> 4)] as char);
            out.push(hex[usize::from(b & 15)] as char);
        }
    }
    out
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be a number from 1 to 65535"),
        Ok(v) => Ok(v),
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        // Piece by piece, not through `host_header`: the status report prints URLs and must
        // not allocate.
        f.write_str(scheme)?;
        f.write_str("://")?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if !matches!((self.scheme, self.port), (Scheme::Http, 80) | (Scheme::Https, 443)) {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let u = Url::parse("https://sts.example.com:7077/stsAgent/").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.base_path.as_str()),
            (Scheme::Https, "sts.example.com", 7077, "/stsAgent")
        );
        assert_eq!(u.to_string(), "https://sts.example.com:7077/stsAgent");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.base_path.as_str(), u.host_header()), (80, "", "localhost".to_string()));
        let u = Url::parse("https://[::1]:8443/receiver/stsAgent").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.host_header(), "[::1]:8443");
    }

    #[test]
    fn redact_hides_userinfo_query_and_fragment() {
        for (given, shown) in [
            ("https://user:secret@host:badport/", "https://***@host:badport/"),
            ("https://h:1/p?api_key=abc&x=1", "https://h:1/p?***"),
            ("https://u:p@h/p#frag", "https://***@h/p#***"),
            ("user:secret@host:7077", "***@host:7077"),
            ("https://a@b@host/x@y", "https://***@y"),
            ("https://h/a?b@c", "https://***@c"),
            // A password may hold `/`, `?` or `#`; the mask runs to the last `@`.
            ("https://admin:s3cr/et@stackstate.example:7077/stsAgent", "https://***@stackstate.example:7077/stsAgent"),
            ("https://admin:s3cr?et@stackstate.example:7077/stsAgent", "https://***@stackstate.example:7077/stsAgent"),
            ("https://admin:s3cr#et@stackstate.example:7077/p?k=v", "https://***@stackstate.example:7077/p?***"),
            // A `://` inside a query is no scheme.
            (
                "admin:hunter2@stackstate.example:7077/stsAgent?token=t0k3n&next=http://x",
                "***@stackstate.example:7077/stsAgent?***",
            ),
            ("a?://b", "a?***"),
            ("a b://u:p@h", "***@h"),
            ("h2+x.y-z://u:p@h", "h2+x.y-z://***@h"),
            ("://u:p@h", "***@h"),
            ("ftp://x", "ftp://x"),
            ("", ""),
            ("@", "***@"),
            ("?", "?***"),
        ] {
            assert_eq!(redact(given), shown, "{given}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "ftp://x",
            "localhost:7077",
            "https://",
            "https://h:0",
            "https://h:99999",
            "https://u:p@h/",
            "https://h/?a=b",
            "https://h h/",
            "https://[::1",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
