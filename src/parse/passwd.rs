//! `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.

use super::cursor::{lines, u64_dec};

/// `(name, uid)` for each well-formed line; comments and malformed lines are skipped.
pub fn users(buf: &[u8]) -> impl Iterator<Item = (&[u8], u32)> {
    lines(buf).filter_map(|line| {
        if line.starts_with(b"#") {
            return None;
        }
        let mut f = line.split(|b| *b == b':');
        let name = f.next().filter(|n| !n.is_empty())?;
        let _pw = f.next()?;
        let uid = u64_dec(f.next()?).and_then(|u| u32::try_from(u).ok())?;
        Some((name, uid))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn users() {
        let p = b"root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nnobody:x:65534:65534::/:/sbin/nologin\n:x:1:1\n";
        let v: Vec<_> = super::users(p).collect();
        assert_eq!(v, vec![(&b"root"[..], 0), (&b"nobody"[..], 65534)]);
    }
}
