//! The unsynced part of one file: a logical size and non-overlapping extents of written bytes
//! that the backing file does not have yet.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// The file's size as the writer sees it.
    pub size: u64,
    /// Offset -> bytes; extents never overlap.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The backing file's size when the overlay began; bytes past `min(size, base_size)` that
    /// no extent covers read as zeros.
    pub base_size: u64,
    /// Set when a truncation below `base_size` is pending.
    pub truncated_to: Option<u64>,
}

impl Overlay {
    pub fn new(base_size: u64) -> Overlay {
        Overlay { size: base_size, extents: BTreeMap::new(), base_size, truncated_to: None }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.extents.values().map(|v| v.len() as u64).sum()
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.cut(offset, end);
        self.extents.insert(offset, data.to_vec());
        self.size = self.size.max(end);
    }

    /// Removes every byte in `[from, to)` from the extents, splitting those that straddle.
    fn cut(&mut self, from: u64, to: u64) {
        let starts: Vec<u64> = self.extents.range(..to).map(|(s, _)| *s).collect();
        for s in starts {
            let Some(v) = self.extents.get(&s) else { continue };
            let e = s + v.len() as u64;
            if e <= from {
                continue;
            }
            let Some(v) = self.extents.remove(&s) else { continue };
            if s < from {
                self.extents.insert(s, v[..(from - s) as usize].to_vec());
            }
            if e > to {
                self.extents.insert(to, v[(to - s) as usize..].to_vec());
            }
        }
    }

    pub fn truncate(&mut self, size: u64) {
        self.cut(size, u64::MAX);
        if size < self.base_size {
            self.truncated_to = Some(self.truncated_to.map_or(size, |t| t.min(size)));
        }
        self.size = size;
    }

    /// Fills `buf` (the file's bytes at `offset`, read from the backing file where it has
    /// them) with what the overlay knows; returns how many bytes the read yields.
    pub fn read(&self, offset: u64, buf: &mut [u8], backing_len: u64) -> usize {
        if offset >= self.size {
            return 0;
        }
        let n = buf.len().min((self.size - offset) as usize);
        let end = offset + n as u64;
        // Bytes the backing file does not hold (past its end, or cut off by a pending
        // truncation) are zeros until an extent says otherwise.
        let valid = backing_len.min(self.truncated_to.unwrap_or(u64::MAX));
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if offset + i as u64 >= valid {
                *b = 0;
            }
        }
        let first = self.extents.range(..offset).next_back().map(|(s, _)| *s).unwrap_or(offset);
        for (s, v) in self.extents.range(first..end) {
            let e = s + v.len() as u64;
            if e <= offset {
                continue;
            }
            let from = offset.max(*s);
            let to = end.min(e);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
        }
        n
    }

    /// The extents, in order, for writing back on fsync.
    pub fn extents(&self) -> impl Iterator<Item = (&u64, &Vec<u8>)> {
        self.extents.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model: the file as a plain byte vector.
    fn apply(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(data);
    }

    #[test]
    fn reads_match_a_plain_buffer_under_random_writes_and_truncates() {
        let base: Vec<u8> = (0..100u8).collect();
        let mut model = base.clone();
        let mut o = Overlay::new(base.len() as u64);
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for step in 0..2000 {
            if step % 97 == 0 {
                let size = next(160);
                model.resize(size as usize, 0);
                o.truncate(size);
            } else {
                let off = next(150);
                let len = 1 + next(20) as usize;
                let data: Vec<u8> = (0..len).map(|i| (step as u8).wrapping_add(i as u8)).collect();
                apply(&mut model, off, &data);
                o.write(off, &data);
            }
            assert_eq!(o.size, model.len() as u64);
            let off = next(170);
            let mut buf = vec![0u8; 40];
            let got = base.get(off as usize..).unwrap_or(&[]);
            buf[..got.len().min(40)].copy_from_slice(&got[..got.len().min(40)]);
            let n = o.read(off, &mut buf, base.len() as u64);
            let want = model.get(off as usize..).map(|s| &s[..s.len().min(40)]).unwrap_or(&[]);
            assert_eq!(&buf[..n], want, "step {step}, offset {off}");
        }
    }
}
