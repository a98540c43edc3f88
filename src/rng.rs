//! A tiny deterministic PRNG (splitmix64) for test inputs, random weights and the tuner's search.
//!
//! No dependency and no platform variation: the same seed yields the same numbers everywhere, so a
//! CPU-reference test and a GPU test can build bit-identical inputs independently.

/// splitmix64 (Steele, Lea & Flood 2014): one 64-bit add and a mixing function per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` from the top 24 bits, so every value is exactly representable in f32.
    pub fn next_unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_unit()
    }

    /// `len` independent draws of [`uniform`](Self::uniform).
    pub fn uniform_vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_in_range() {
        let a = SplitMix64::new(7).uniform_vec(1000, -2.0, 3.0);
        let b = SplitMix64::new(7).uniform_vec(1000, -2.0, 3.0);
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| (-2.0..3.0).contains(&x)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 0.5).abs() < 0.2, "mean {mean}");
        assert_ne!(a, SplitMix64::new(8).uniform_vec(1000, -2.0, 3.0));
    }
}
