//! Comparing kernel outputs with references: elementwise tolerances that name the worst values,
//! and the largest error of a test printed at its end.

/// max |x| (1 for an all-zero slice, so it can scale tolerances).
pub fn max_abs(x: &[f32]) -> f32 {
    let m = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Checks `|got - want| <= atol + rtol * |want|` elementwise (NaN fails) and returns the largest
/// `|got - want|`.
#[track_caller]
pub fn check(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let within = err <= atol + rtol * w.abs(); // false for NaN
        if !within {
            bad.push(format!("[{i}] got {g} want {w} (|err| {err:e})"));
        } else {
            worst = worst.max(err);
        }
    }
    if !bad.is_empty() {
        let n = bad.len();
        bad.truncate(6);
        panic!(
            "{what}: {n} of {} values out of tolerance (atol {atol:e}, rtol {rtol:e}):\n  {}",
            got.len(),
            bad.join("\n  ")
        );
    }
    worst
}

/// [`check`] with `atol = rel * max|want|` and `rtol = rel`; returns the largest error relative to
/// max |want|.
#[track_caller]
pub fn close(what: &str, got: &[f32], want: &[f32], rel: f32) -> f32 {
    let scale = max_abs(want);
    check(what, got, want, rel * scale, rel) / scale
}

/// Records the largest relative error of a test and prints it at the end.
pub struct Worst(pub &'static str, pub f32, pub &'static str);

impl Worst {
    pub fn add(&mut self, e: f32) {
        self.1 = self.1.max(e);
    }
}

impl Drop for Worst {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!(
                "[{}] {:<28} max error = {:.3e} {}",
                env!("CARGO_CRATE_NAME"),
                self.0,
                self.1,
                self.2
            );
        }
    }
}
