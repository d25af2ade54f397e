//! Pass 1's state: per blob and channel, the top-k images by the channel's spatial max (one
//! entry per image; ties go to the lower image index, so any order of scanning, any split
//! into shards and any resume give the same lists), and a deterministic sample of the
//! maxima for quantiles.

use super::store::{Bytes, Reader};
use crate::error::Result;

/// How many images (at most) give each channel's quantile sample.
pub const QUANTILE_SAMPLES: u64 = 1000;

/// One kept image of a channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Index of the image in the dataset listing.
    pub image: u32,
    /// The channel's spatial max in that image.
    pub act: f32,
    /// Where the max is, as an index in the channel's plane (first on ties, row-major).
    pub pos: u32,
}

impl Entry {
    /// Ranking order: larger activation first, then lower image index.
    fn before(&self, other: &Entry) -> bool {
        match other.act.total_cmp(&self.act) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => self.image < other.image,
        }
    }
}

/// One blob's lists.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobTop {
    pub name: String,
    /// Per channel, best first, at most `k`.
    pub top: Vec<Vec<Entry>>,
    /// Per channel, the maxima of the sampled images (sorted once the scan is complete).
    pub samples: Vec<Vec<f32>>,
}

impl BlobTop {
    pub fn new(name: &str, channels: usize) -> BlobTop {
        BlobTop {
            name: name.into(),
            top: vec![Vec::new(); channels],
            samples: vec![Vec::new(); channels],
        }
    }

    /// Offers an image's entry for channel `c`.
    pub fn offer(&mut self, c: usize, e: Entry, k: usize) {
        let list = &mut self.top[c];
        if list.len() >= k && list.last().is_none_or(|last| !e.before(last)) {
            return;
        }
        let at = list.iter().position(|x| e.before(x)).unwrap_or(list.len());
        list.insert(at, e);
        list.truncate(k);
    }

    /// Where `value` ranks among the sampled maxima of channel `c`: the fraction below it
    /// (ties count half); `None` without samples.
    pub fn rank(&self, c: usize, value: f32) -> Option<f32> {
        let s = self.samples.get(c)?;
        if s.is_empty() {
            return None;
        }
        let below = s.partition_point(|&x| x < value);
        let upto = s.partition_point(|&x| x <= value);
        Some((below + upto) as f32 / (2 * s.len()) as f32)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Bytes::default();
        b.u32(self.top.len() as u32);
        for (list, samples) in self.top.iter().zip(&self.samples) {
            b.u32(list.len() as u32);
            for e in list {
                b.u32(e.image).f32(e.act).u32(e.pos);
            }
            b.u32(samples.len() as u32);
            for &s in samples {
                b.f32(s);
            }
        }
        b.0
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<BlobTop> {
        let what = format!("top/{name}");
        let mut r = Reader::new(bytes, &what);
        let channels = r.u32()? as usize;
        let mut t = BlobTop::new(name, 0);
        for _ in 0..channels {
            let n = r.u32()? as usize;
            let list = (0..n)
                .map(|_| {
                    Ok(Entry {
                        image: r.u32()?,
                        act: r.f32()?,
                        pos: r.u32()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let m = r.u32()? as usize;
            let samples = (0..m).map(|_| r.f32()).collect::<Result<Vec<_>>>()?;
            t.top.push(list);
            t.samples.push(samples);
        }
        Ok(t)
    }

    /// Checks a decoded record against what it must fit: `channels` lists (when known),
    /// each entry naming one of the dataset's `images`.
    pub fn check(&self, channels: Option<usize>, images: u64) -> std::result::Result<(), String> {
        if let Some(c) = channels.filter(|&c| c != self.top.len()) {
            return Err(format!(
                "top/{}: {} channel lists, the blob has {c}",
                self.name,
                self.top.len()
            ));
        }
        match self
            .top
            .iter()
            .flatten()
            .find(|e| u64::from(e.image) >= images)
        {
            Some(e) => Err(format!(
                "top/{}: an entry names image {}, the dataset has {images}",
                self.name, e.image
            )),
            None => Ok(()),
        }
    }

    /// Folds another shard's lists into these (the shards hold disjoint images).
    pub fn merge(&mut self, other: &BlobTop, k: usize) {
        for (c, list) in other.top.iter().enumerate() {
            for &e in list {
                self.offer(c, e, k);
            }
            self.samples[c].extend_from_slice(&other.samples[c]);
        }
    }

    /// Sorts the samples (the canonical, complete form).
    pub fn finish(&mut self) {
        for s in &mut self.samples {
            s.sort_by(f32::total_cmp);
        }
    }
}

/// Whether image `index` of `n` gives quantile samples.
pub fn is_sample(index: u64, n: u64) -> bool {
    let stride = n.div_ceil(QUANTILE_SAMPLES).max(1);
    index.is_multiple_of(stride)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(image: u32, act: f32) -> Entry {
        Entry { image, act, pos: 0 }
    }

    #[test]
    fn keeps_the_best_k_with_ties_to_the_lower_image_in_any_order() {
        let entries = [
            e(5, 1.0),
            e(2, 3.0),
            e(9, 1.0),
            e(1, 1.0),
            e(7, 0.5),
            e(3, 3.0),
        ];
        let mut a = BlobTop::new("b", 1);
        for x in entries {
            a.offer(0, x, 3);
        }
        let mut b = BlobTop::new("b", 1);
        for x in entries.iter().rev() {
            b.offer(0, *x, 3);
        }
        assert_eq!(a.top[0], vec![e(2, 3.0), e(3, 3.0), e(1, 1.0)]);
        assert_eq!(a, b);
        // merged halves equal the whole
        let (mut h1, mut h2) = (BlobTop::new("b", 1), BlobTop::new("b", 1));
        for x in &entries[..3] {
            h1.offer(0, *x, 3);
        }
        for x in &entries[3..] {
            h2.offer(0, *x, 3);
        }
        h1.merge(&h2, 3);
        assert_eq!(h1.top, a.top);
    }

    #[test]
    fn ranks_and_round_trip() {
        let mut t = BlobTop::new("conv1", 2);
        t.samples[0] = vec![3.0, 1.0, 2.0, 4.0];
        t.offer(1, e(4, 2.5), 4);
        t.finish();
        assert_eq!(t.rank(0, 0.0), Some(0.0));
        assert_eq!(t.rank(0, 2.5), Some(0.5));
        assert_eq!(t.rank(0, 9.0), Some(1.0));
        assert_eq!(t.rank(1, 1.0), None);
        let back = BlobTop::decode("conv1", &t.encode()).unwrap();
        assert_eq!(back, t);
        let bytes = t.encode();
        assert!(BlobTop::decode("conv1", &bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn samples_are_a_fixed_subset() {
        assert!((0..500).all(|i| is_sample(i, 500)));
        let n = 50_000;
        let count = (0..n).filter(|&i| is_sample(i, n)).count() as u64;
        assert!(
            (QUANTILE_SAMPLES / 2..=QUANTILE_SAMPLES).contains(&count),
            "{count}"
        );
    }
}
