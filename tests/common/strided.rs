//! Strided matrices inside larger buffers, for kernel tests that check a kernel reads and writes
//! only its rows.

/// The value every element outside a kernel's output starts with (and must keep).
pub const SENTINEL: f32 = -12345.5;

/// A strided matrix: `rows` rows of `width` values at `offset + r * stride`, `fill` elsewhere
/// (including 5 values after the last row).
pub fn strided(data: &[f32], rows: usize, width: usize, offset: usize, stride: usize, fill: f32) -> Vec<f32> {
    assert!(stride >= width);
    let mut out = vec![fill; offset + rows * stride + 5];
    for r in 0..rows {
        out[offset + r * stride..][..width].copy_from_slice(&data[r * width..][..width]);
    }
    out
}

/// The `rows` rows of `width` values at `offset + r * stride`.
pub fn gather_rows(buf: &[f32], rows: usize, width: usize, offset: usize, stride: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| buf[offset + r * stride..][..width].iter().copied())
        .collect()
}

/// Every value outside the strided rows still holds the sentinel.
#[track_caller]
pub fn assert_untouched(what: &str, buf: &[f32], rows: usize, width: usize, offset: usize, stride: usize) {
    for (i, &v) in buf.iter().enumerate() {
        let inside = i >= offset && (i - offset) / stride < rows && (i - offset) % stride < width;
        if !inside {
            assert_eq!(
                v.to_bits(),
                SENTINEL.to_bits(),
                "{what}: value {i} outside the output was overwritten with {v}"
            );
        }
    }
}
