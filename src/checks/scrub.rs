//! Hides the values of sensitive command-line arguments before anything else sees them:
//! `--password hunter2`, `--password=hunter2`, `DB_PASSWORD=x`, `-api_key x`, `--token x`.

const WORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"mysql_pwd",
    b"access_token",
    b"auth_token",
    b"api_key",
    b"apikey",
    b"secret",
    b"credentials",
    b"stripetoken",
    b"token",
];

pub const MASK: &[u8] = b"********";

fn sensitive(key: &[u8]) -> bool {
    WORDS.iter().any(|w| key.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w)))
}

/// Appends the scrubbed arguments to `out`, NUL-separated (no trailing NUL).
pub fn scrub_args<'a>(args: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let mut mask_next = false;
    for (i, arg) in args.enumerate() {
        if i > 0 {
            out.push(0);
        }
        if std::mem::take(&mut mask_next) {
            out.extend_from_slice(MASK);
            continue;
        }
        let bare = arg.strip_prefix(b"--").or_else(|| arg.strip_prefix(b"-")).unwrap_or(arg);
        match memchr::memchr(b'=', bare) {
            Some(eq) if sensitive(bare.get(..eq).unwrap_or(&[])) => {
                let keep = arg.len() - bare.len() + eq + 1;
                out.extend_from_slice(arg.get(..keep).unwrap_or(arg));
                out.extend_from_slice(MASK);
            }
            Some(_) => out.extend_from_slice(arg),
            None => {
                out.extend_from_slice(arg);
                // Only a flag (`-x`/`--x`) takes the next argument as its value.
                mask_next = bare.len() < arg.len() && sensitive(bare);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(args: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        scrub_args(args.iter().map(|a| a.as_bytes()), &mut out);
        out.split(|b| *b == 0).map(|s| String::from_utf8(s.to_vec()).unwrap()).collect()
    }

    #[test]
    fn hides_values_not_keys() {
        assert_eq!(scrub(&["app", "--password", "hunter2", "x"]), ["app", "--password", "********", "x"]);
        assert_eq!(scrub(&["app", "--password=hunter2"]), ["app", "--password=********"]);
        assert_eq!(scrub(&["env", "DB_PASSWORD=pw", "PATH=/bin"]), ["env", "DB_PASSWORD=********", "PATH=/bin"]);
        assert_eq!(scrub(&["cli", "-API_KEY", "abc"]), ["cli", "-API_KEY", "********"]);
        assert_eq!(
            scrub(&["cli", "--token", "abc", "--secret-file=/x"]),
            ["cli", "--token", "********", "--secret-file=********"]
        );
        assert_eq!(scrub(&["java", "-jar", "app.jar"]), ["java", "-jar", "app.jar"]);
        // A bare word is not a flag: `echo password` keeps the next argument.
        assert_eq!(scrub(&["echo", "password", "is", "x"]), ["echo", "password", "is", "x"]);
        assert_eq!(scrub(&["app", "--password"]), ["app", "--password"]);
    }
}
