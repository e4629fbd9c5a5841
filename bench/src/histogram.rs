//! A bounded latency histogram: log-linear buckets over nanoseconds, fixed size whatever the run's
//! length, so a million requests cost the same memory as ten.
//!
//! Values below 64 ns get a bucket each; above that, every power of two is split into 64 equal
//! buckets, so a reported percentile is within 1/64 (1.6 %) of the true value. Values above
//! [`MAX_VALUE`] (about 18 minutes) are clamped into the top bucket; the exact minimum, maximum and
//! sum are kept beside the buckets.

/// log2 of the number of sub-buckets per power of two: 64 sub-buckets, 1.6 % resolution.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Values up to 2^40 ns (about 18 minutes) get their own bucket; a request is never that slow.
const MAX_EXP: u32 = 40;
/// The largest value with a bucket of its own.
pub const MAX_VALUE: u64 = (1 << MAX_EXP) - 1;
/// One block of `SUB` buckets per power of two from 2^SUB_BITS to 2^(MAX_EXP-1), plus the exact block.
const BUCKETS: usize = (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// Counts of values (nanoseconds) by log-linear bucket.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

/// The bucket a value falls in.
fn index(value: u64) -> usize {
    let value = value.min(MAX_VALUE);
    if value < SUB as u64 {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = (value >> shift) as usize; // in SUB..2*SUB
    (shift as usize + 1) * SUB + (mantissa - SUB)
}

/// The smallest value of a bucket and the bucket's width.
fn bounds(index: usize) -> (u64, u64) {
    let block = index / SUB;
    if block == 0 {
        return (index as u64, 1);
    }
    let shift = block as u32 - 1;
    let mantissa = (SUB + index % SUB) as u64;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    /// Counts one value, in nanoseconds.
    pub fn record(&mut self, nanos: u64) {
        self.counts[index(nanos)] += 1;
        self.count += 1;
        self.sum += u128::from(nanos);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value recorded; 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, exact (not bucketed); 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.5 is the median, 0.999 is p99.9): the top of the bucket holding
    /// that rank, never above the largest value recorded; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bounds(i);
                return (low + width - 1).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, width) = bounds(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + width - 1), i);
            expected_low = low + width;
        }
        assert_eq!(expected_low, MAX_VALUE + 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in [0, 1, 5, 63] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.25), 0);
        assert_eq!(h.quantile(0.5), 1);
        assert_eq!(h.quantile(0.75), 5);
        assert_eq!(h.quantile(1.0), 63);
        assert_eq!((h.min(), h.max(), h.count()), (0, 63, 4));
    }

    #[test]
    fn quantiles_are_within_the_resolution() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1_000); // 1 µs .. 100 ms, uniform
        }
        for (q, exact) in [
            (0.5, 50_000_000.0),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - exact).abs() / exact < 1.0 / 64.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert!((h.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(1_000_000);
        b.record(7);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, 7, 1_000_000));
        assert_eq!(a.quantile(0.5), 10);
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = Histogram::default();
        h.record(u64::MAX);
        assert_eq!(h.count(), 1);
        assert_eq!(h.quantile(0.5), u64::MAX);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_reports_zero() {
        let h = Histogram::default();
        assert_eq!(
            (h.quantile(0.99), h.min(), h.max(), h.mean()),
            (0, 0, 0, 0.0)
        );
    }
}
