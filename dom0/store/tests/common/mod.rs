//! A disk that records writes and loses power: the crash tests' fake.
#![allow(dead_code)]

use kestrel_store::Disk;

/// A write not yet flushed.
#[derive(Clone)]
pub struct Pending {
    pub lba: u64,
    pub data: Vec<u8>,
}

/// Writes go to a volatile cache until `flush`; after `cut_after`
/// writes the power is gone: that write is the last one issued, and
/// every later read, write or flush fails.
pub struct CrashDisk {
    pub durable: Vec<u8>,
    pub cache: Vec<Pending>,
    pub bs: usize,
    pub writes: u64,
    pub flushes: u64,
    pub cut_after: Option<u64>,
    pub dead: bool,
}

impl CrashDisk {
    pub fn new(image: Vec<u8>, bs: usize, cut_after: Option<u64>) -> Self {
        CrashDisk {
            durable: image,
            cache: Vec::new(),
            bs,
            writes: 0,
            flushes: 0,
            cut_after,
            dead: false,
        }
    }

    fn apply(image: &mut [u8], bs: usize, w: &Pending, bytes: usize) {
        let at = w.lba as usize * bs;
        image[at..at + bytes].copy_from_slice(&w.data[..bytes]);
    }

    /// What the medium holds after the power cut, under one model of
    /// what the drive's cache did with the unflushed writes: `keep(i)`
    /// says whether unflushed write `i` reached the medium; the last one
    /// issued is torn after `tear` bytes when `tear` is given.
    pub fn after_cut(&self, keep: impl Fn(usize) -> bool, tear: Option<usize>) -> Vec<u8> {
        let mut img = self.durable.clone();
        let n = self.cache.len();
        for (i, w) in self.cache.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            let bytes = match tear {
                Some(t) if i + 1 == n => t.min(w.data.len()),
                _ => w.data.len(),
            };
            Self::apply(&mut img, self.bs, w, bytes);
        }
        img
    }

    /// Every model the tests try: nothing unflushed kept, all kept, all
    /// kept with the last torn (mid-sector and at a sector boundary),
    /// only the last kept, each one lost alone, and a few pseudo-random
    /// subsets.
    pub fn outcomes(&self) -> Vec<(String, Vec<u8>)> {
        let n = self.cache.len();
        let mut v = vec![
            (
                "drop all unflushed".to_string(),
                self.after_cut(|_| false, None),
            ),
            ("keep all".to_string(), self.after_cut(|_| true, None)),
        ];
        if let Some(last) = self.cache.last() {
            let len = last.data.len();
            v.push((
                "keep all, last torn mid-sector".into(),
                self.after_cut(|_| true, Some(len / 2 + 7)),
            ));
            v.push((
                "keep all, last torn at a sector".into(),
                self.after_cut(|_| true, Some(self.bs)),
            ));
            v.push((
                "keep only the last".into(),
                self.after_cut(|i| i + 1 == n, None),
            ));
        }
        // The drive may reorder: each unflushed write lost alone.
        for lost in 0..n.saturating_sub(1) {
            v.push((
                format!("all but unflushed write {lost}"),
                self.after_cut(|i| i != lost, None),
            ));
        }
        for seed in 1..4u64 {
            let keep =
                move |i: usize| (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 61)) & 1 == 1;
            v.push((
                format!("subset {seed}"),
                self.after_cut(keep, Some(self.bs / 2)),
            ));
        }
        v
    }

    fn view(&self) -> Vec<u8> {
        self.after_cut(|_| true, None)
    }
}

impl Disk for CrashDisk {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn blocks(&self) -> u64 {
        (self.durable.len() / self.bs) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        if self.dead {
            return Err("power cut".into());
        }
        let at = lba as usize * self.bs;
        let end = at + buf.len();
        if end > self.durable.len() {
            return Err("out of range".into());
        }
        // The cache overlays the medium (a drive answers reads from it).
        let view = self.view();
        buf.copy_from_slice(&view[at..end]);
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), String> {
        if self.dead {
            return Err("power cut".into());
        }
        if (lba as usize * self.bs + buf.len()) > self.durable.len() {
            return Err("out of range".into());
        }
        self.cache.push(Pending {
            lba,
            data: buf.to_vec(),
        });
        self.writes += 1;
        if Some(self.writes) == self.cut_after {
            self.dead = true;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), String> {
        if self.dead {
            return Err("power cut".into());
        }
        let cache = std::mem::take(&mut self.cache);
        for w in &cache {
            Self::apply(&mut self.durable, self.bs, w, w.data.len());
        }
        self.flushes += 1;
        Ok(())
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
