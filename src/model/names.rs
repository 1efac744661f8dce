//! A per-sample byte arena for names (interfaces, disks, mount points). Cleared, not dropped,
//! every cycle, so after warm-up storing names allocates nothing.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

#[derive(Debug, Default, Clone)]
pub struct Names {
    bytes: Vec<u8>,
}

impl Names {
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    pub fn push(&mut self, name: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        Span { start, len: name.len() as u32 }
    }

    /// Appends through `fill` (e.g. an unescaper) and returns the span it wrote.
    pub fn push_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = self.bytes.len();
        fill(&mut self.bytes);
        Span { start: start as u32, len: (self.bytes.len() - start) as u32 }
    }

    pub fn get(&self, s: Span) -> &[u8] {
        let start = s.start as usize;
        self.bytes.get(start..start + s.len as usize).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_survive_later_pushes() {
        let mut n = super::Names::default();
        let a = n.push(b"eth0");
        let b = n.push_with(|v| v.extend_from_slice(b"/dev/vda"));
        assert_eq!(n.get(a), b"eth0");
        assert_eq!(n.get(b), b"/dev/vda");
        n.clear();
        assert_eq!(n.get(a), b"");
    }
}
