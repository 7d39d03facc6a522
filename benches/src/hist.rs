//! A fixed-bucket log-linear latency histogram.
//!
//! Values (nanoseconds) below 128 get a bucket each; above, every power of two
//! is split into 64 linear sub-buckets, so a bucket is at most 1/64 (1.6 %)
//! of its value wide. 3,776 buckets cover the whole `u64` range, which is
//! small enough for one shared histogram per process and cheap to ship
//! between worker processes as sparse `[index, count]` pairs.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Linear sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Bucket count: values < 2·SUB map to themselves, then 58 octaves of SUB buckets.
const BUCKETS: usize = ((64 - SUB_BITS) as usize) * SUB as usize + SUB as usize;

/// The bucket index of `value`.
fn index_of(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    let mantissa = value >> shift; // in [SUB, 2·SUB)
    ((u64::from(shift) + 1) * SUB + (mantissa - SUB)) as usize
}

/// The smallest value of bucket `index` and the bucket's width.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        return (index, 1);
    }
    let shift = index / SUB - 1;
    let mantissa = index % SUB + SUB;
    (mantissa << shift, 1 << shift)
}

/// A histogram many tasks record into at once (relaxed atomic adds).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
}

impl AtomicHistogram {
    /// An empty histogram.
    pub(crate) fn new() -> AtomicHistogram {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one value.
    pub(crate) fn record(&self, value: u64) {
        self.counts[index_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counts so far.
    pub(crate) fn snapshot(&self) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Latency quantiles in the histogram's unit, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Quantiles {
    /// Number of samples.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest sample (upper edge of its bucket).
    pub(crate) max: f64,
}

/// A plain histogram: a snapshot, mergeable and serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SparseHistogram", into = "SparseHistogram")]
pub(crate) struct Histogram {
    counts: Vec<u64>,
}

/// The wire form of [`Histogram`]: only non-empty buckets.
#[derive(Serialize, Deserialize)]
struct SparseHistogram {
    buckets: Vec<(usize, u64)>,
}

impl From<SparseHistogram> for Histogram {
    fn from(sparse: SparseHistogram) -> Histogram {
        let mut histogram = Histogram::default();
        // Indexes from another process are trusted only as far as they fit.
        for (index, count) in sparse.buckets {
            if let Some(slot) = histogram.counts.get_mut(index) {
                *slot += count;
            }
        }
        histogram
    }
}

impl From<Histogram> for SparseHistogram {
    fn from(histogram: Histogram) -> SparseHistogram {
        SparseHistogram {
            buckets: histogram
                .counts
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(index, count)| (index, *count))
                .collect(),
        }
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    /// Adds another histogram's counts to this one.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// Number of samples.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which a fraction `q` of the samples lie (the midpoint
    /// of the bucket holding that sample); 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        // The rank of the sample, 1-based; at least the first sample.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bounds_of(index);
                return low + width / 2;
            }
        }
        0
    }

    /// Upper edge of the highest non-empty bucket; 0 when empty.
    pub(crate) fn max(&self) -> u64 {
        self.counts
            .iter()
            .rposition(|count| *count > 0)
            .map_or(0, |index| {
                let (low, width) = bounds_of(index);
                low.saturating_add(width - 1)
            })
    }

    /// p50 / p99 / p999 / max divided by `divisor` (e.g. 1,000 for ns → µs).
    pub(crate) fn quantiles(&self, divisor: f64) -> Quantiles {
        Quantiles {
            count: self.count(),
            p50: self.quantile(0.50) as f64 / divisor,
            p99: self.quantile(0.99) as f64 / divisor,
            p999: self.quantile(0.999) as f64 / divisor,
            max: self.max() as f64 / divisor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for index in 0..BUCKETS - 1 {
            let (low, width) = bounds_of(index);
            let (next, _) = bounds_of(index + 1);
            assert_eq!(low + width, next, "gap after bucket {index}");
            assert_eq!(index_of(low), index);
            assert_eq!(index_of(next - 1), index);
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn bucket_width_stays_within_two_percent() {
        for value in [200u64, 1_000, 12_345, 1_000_000, 987_654_321, u64::MAX / 3] {
            let (low, width) = bounds_of(index_of(value));
            assert!(low <= value && value < low + width);
            assert!((width as f64) / (low as f64) <= 1.0 / 64.0 + 1e-12);
        }
    }

    #[test]
    fn quantiles_of_uniform_samples_are_close() {
        let histogram = AtomicHistogram::new();
        for value in 1..=100_000u64 {
            histogram.record(value * 1_000);
        }
        let snapshot = histogram.snapshot();
        let close = |got: u64, want: f64| (got as f64 - want).abs() / want < 0.02;
        assert_eq!(snapshot.count(), 100_000);
        assert!(close(snapshot.quantile(0.5), 50_000_000.0));
        assert!(close(snapshot.quantile(0.99), 99_000_000.0));
        assert!(close(snapshot.quantile(0.999), 99_900_000.0));
        assert!(close(snapshot.max(), 100_000_000.0));
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let empty = Histogram::default();
        assert_eq!(empty.quantiles(1.0), Quantiles::default());
    }

    #[test]
    fn merged_histograms_survive_the_sparse_wire_form() {
        let a = AtomicHistogram::new();
        let b = AtomicHistogram::new();
        a.record(5);
        a.record(70_000);
        b.record(70_000);
        b.record(3_000_000_000);
        let mut merged = a.snapshot();
        merged.merge(&b.snapshot());
        let json = serde_json::to_string(&merged).expect("serialise");
        let back: Histogram = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, merged);
        assert_eq!(back.count(), 4);
        let (low, width) = bounds_of(index_of(70_000));
        assert_eq!(back.quantile(0.5), low + width / 2);
    }

    #[test]
    fn out_of_range_wire_buckets_are_ignored() {
        let back: Histogram =
            serde_json::from_str(r#"{"buckets":[[3,2],[999999,7]]}"#).expect("deserialise");
        assert_eq!(back.count(), 2);
    }
}
