//! Integer formatting into a caller's stack buffer, for paths and names built on hot paths.

/// Writes `v` in decimal at the start of `out` and returns the number of bytes written
/// (`out` needs up to 20 bytes; digits that do not fit are dropped rather than panicking).
pub fn decimal(v: u64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let (mut v, mut len) = (v, 0);
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = len.min(out.len());
    for (i, slot) in out.iter_mut().take(n).enumerate() {
        *slot = digits[len - 1 - i];
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        for v in [0u64, 7, 10, 4_000_000_000, u64::MAX] {
            let n = super::decimal(v, &mut b);
            assert_eq!(&b[..n], v.to_string().as_bytes());
        }
        assert_eq!(super::decimal(12345, &mut [0u8; 2]), 2);
    }
}
