//! `/proc/sys/fs/file-nr`: allocated file handles, allocated-but-unused, and the maximum.

use super::cursor::{fields, u64_dec, ParseError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileNr {
    pub allocated: u64,
    pub unused: u64,
    pub max: u64,
}

pub fn parse(buf: &[u8]) -> Result<FileNr, ParseError> {
    let mut f = fields(buf.strip_suffix(b"\n").unwrap_or(buf));
    let mut next =
        || f.next().and_then(u64_dec).ok_or(ParseError::new("/proc/sys/fs/file-nr", "expected three numbers"));
    Ok(FileNr { allocated: next()?, unused: next()?, max: next()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let captured = include_bytes!("../../tests/fixtures/proc/debian12-6.18/sys/fs/file-nr");
        let f = parse(captured).unwrap();
        assert!(f.allocated > 0 && f.max > f.allocated);
        assert_eq!(parse(b"305\t0\t2466177\n").unwrap(), FileNr { allocated: 305, unused: 0, max: 2466177 });
        // Some kernels print max as a huge number (fs.file-max = LONG_MAX).
        assert_eq!(parse(b"1 0 9223372036854775807").unwrap().max, i64::MAX as u64);
        assert!(parse(b"1 0").is_err());
    }
}
