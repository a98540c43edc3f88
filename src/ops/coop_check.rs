//! Which matrix-unit kernels a device uses, and the run-time self-check that guards the ones this
//! project's tests cannot run.
//!
//! gemm_coop and the chunkwise `_coop` kernels are one source each, written in fragments of
//! FRAG x FRAG and instantiated at 16 (NVIDIA and AMD through Vulkan: the instance the kernel
//! tests run, on the H200 in every release) and at 8 (Apple's simdgroup matrices through Metal,
//! which no GPU the tests run on offers). So the 8x8 instance is used only after it has agreed
//! with the portable kernels on the user's own GPU: the first time pipelines are built on an
//! adapter that offers 8x8 but not 16x16 ([`crate::gpu::Kernels::matrix_units`]), [`run`]
//! multiplies small random problems (ragged and whole tiles, both epilogues; a chunkwise mLSTM
//! segment with short and multi-block chunks) on both paths and compares them. Only when they
//! agree within the f16 bound are the matrix units used; otherwise one `xlstm: warning:` line
//! says why and the tiled kernels run. The verdict is remembered per adapter, driver and kernel
//! source in `matrix-units.json` in the cache directory (beside the pipeline cache), so the
//! check runs once; `xlstm info` shows it.
//!
//! `XLSTM_SELF_CHECK=force` runs the check at every start on whatever fragment the adapter
//! offers (the 16x16 instance too, so the check itself is exercised where the kernels are
//! known); `inject` does the same and adds an error to one value of the candidate's result, so
//! the fallback can be exercised on any adapter. Without matrix units a forced check compares the
//! portable kernels with themselves.

use super::{
    matmul, mlstm_chunk_out, mlstm_chunk_out_coop, mlstm_chunk_state, mlstm_chunk_state_coop, mlstm_gates, Boundaries,
    CellLayout, ChunkInputs, Epilogue, KernelShapes, MlstmGates, Ops, Rows, COOP_FRAGMENTS,
};
use crate::error::{Error, Result};
use crate::gpu::readback::read_f32;
use crate::gpu::{BufferPool, Category, GpuBuffer, GpuMatrix, Kernels, PlanBuilder, Slice, SubmitBudget, WeightDtype};
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How the self-check runs (`XLSTM_SELF_CHECK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfCheckMode {
    /// Only for fragments the tests do not cover, once per adapter, driver and kernel source.
    Normal,
    /// At every start, on whatever fragment the adapter offers, ignoring what is remembered.
    Force,
    /// As `Force`, with an error added to one value of the candidate's result.
    Inject,
}

impl SelfCheckMode {
    /// The mode `XLSTM_SELF_CHECK` asks for (unset or empty: normal).
    pub fn from_env() -> Result<Self> {
        match std::env::var("XLSTM_SELF_CHECK").as_deref().map(str::trim) {
            Err(_) | Ok("") => Ok(SelfCheckMode::Normal),
            Ok("force") => Ok(SelfCheckMode::Force),
            Ok("inject") => Ok(SelfCheckMode::Inject),
            Ok(other) => Err(Error::Input(format!(
                "XLSTM_SELF_CHECK must be `force` or `inject`, got `{other}`"
            ))),
        }
    }
}

/// The outcome of one self-check.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfCheck {
    /// The fragment edge checked (`None`: the portable kernels against themselves).
    pub fragment: Option<u32>,
    pub passed: bool,
    /// Largest difference from the portable kernels, relative to each problem's scale, over all
    /// problems (infinite for a non-finite value).
    pub max_error: f32,
    /// The worst problem and its tolerance, or why the check could not run.
    pub detail: String,
    /// Read from `matrix-units.json` instead of run now.
    pub remembered: bool,
    /// Every comparison of a check run now: (what, error relative to its scale, tolerance).
    pub comparisons: Vec<(String, f32, f32)>,
}

/// Which matrix-unit kernels a device uses, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixUnits {
    /// Fragment edge of gemm_coop and the chunkwise `_coop` kernels; `None`: the tiled kernels.
    pub fragment: Option<u32>,
    /// The fragment edge the adapter offers (with f16, subgroups of 32 and the workgroup memory).
    pub offered: Option<u32>,
    /// The self-check behind the decision, where one ran or was remembered.
    pub check: Option<SelfCheck>,
}

impl fmt::Display for MatrixUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let edge = |e: u32| format!("{e}x{e}");
        match (&self.check, self.offered) {
            (None, None) => write!(f, "none (no f16 matrix units with f32 accumulators): tiled kernels"),
            (None, Some(e)) => write!(f, "{} (the instance the kernel tests run)", edge(e)),
            (Some(c), _) => {
                let what = c.fragment.map_or("portable kernels".to_string(), edge);
                let when = if c.remembered { "remembered" } else { "run now" };
                if c.passed {
                    write!(f, "{what}: passed the self-check on this GPU ({}; {when})", c.detail)
                } else {
                    write!(
                        f,
                        "none: {what} failed the self-check ({}; {when}): tiled kernels",
                        c.detail
                    )
                }
            }
        }
    }
}

/// The fragment edge the adapter can run the matrix-unit kernels at, 16 first.
pub fn offered_fragment(caps: &crate::gpu::Caps) -> Option<u32> {
    COOP_FRAGMENTS
        .into_iter()
        .find(|&f| super::coop_gemm_supported(caps, f) && super::coop_chunk_supported(caps, f))
}

/// Settles which matrix-unit kernels `kernels` uses (see the module documentation).
pub(crate) fn decide(kernels: &Kernels, mode: SelfCheckMode) -> MatrixUnits {
    let offered = offered_fragment(kernels.caps());
    let must_check = match mode {
        SelfCheckMode::Normal => offered.is_some_and(|f| f != 16),
        SelfCheckMode::Force | SelfCheckMode::Inject => true,
    };
    if !must_check {
        return MatrixUnits {
            fragment: offered,
            offered,
            check: None,
        };
    }
    let key = RecordKey::new(kernels, offered);
    let remembered = match mode {
        SelfCheckMode::Normal => key.as_ref().and_then(|k| k.lookup()),
        _ => None,
    };
    let check = remembered.unwrap_or_else(|| {
        let c = run(kernels, offered, mode == SelfCheckMode::Inject).unwrap_or_else(|e| SelfCheck {
            fragment: offered,
            passed: false,
            max_error: f32::INFINITY,
            detail: format!("could not run: {e}"),
            remembered: false,
            comparisons: Vec::new(),
        });
        if let Some(k) = &key {
            k.store(&c);
        }
        c
    });
    if !check.passed {
        let what = offered.map_or("the portable kernels".to_string(), |e| {
            format!("the {e}x{e} matrix-unit kernels")
        });
        eprintln!(
            "xlstm: warning: {what} disagree with the tiled kernels on this GPU ({}); using the tiled kernels",
            check.detail
        );
    }
    MatrixUnits {
        fragment: offered.filter(|_| check.passed),
        offered,
        check: Some(check),
    }
}

/// Largest difference (relative to the problem's scale) the GEMM may show: both sides multiply
/// the same f16 values exactly and accumulate in f32, so only the order of the sums differs.
const GEMM_TOLERANCE: f32 = 1e-3;
/// The chunkwise kernels round q, k, v and their products' operands to f16 on the matrix units:
/// relative to the largest output (the H200's 16x16 instance: BENCHMARKS.md).
const CHUNK_TOLERANCE: f32 = 2e-2;

/// Runs the matrix-unit kernels at `fragment` (or the portable ones, for `None`) and the
/// portable kernels on the same problems on this GPU and compares them; `inject` adds an error
/// to one value of the candidate's result. An error if a problem cannot be run at all.
pub fn run(kernels: &Kernels, fragment: Option<u32>, inject: bool) -> Result<SelfCheck> {
    let shapes = KernelShapes::default();
    let candidate = Ops::with_fragment(kernels, WeightDtype::F16, shapes, fragment)?;
    let reference = Ops::with_fragment(kernels, WeightDtype::F16, shapes, None)?;
    if fragment.is_some() && !(candidate.uses_coop_gemm() && candidate.uses_coop_chunk()) {
        return Err(Error::Input(format!(
            "the adapter cannot run the {0}x{0} matrix-unit kernels",
            fragment.unwrap_or(0)
        )));
    }
    let run = Run {
        kernels,
        pool: BufferPool::new(kernels.gpu().device.clone()),
    };
    let mut worst = Worst::new();
    let (gemm, chunkwise) = match fragment {
        Some(_) => ("gemm_coop", "mlstm_chunk_{state,out}_coop"),
        None => ("gemm", "mlstm_chunk_{state,out}"),
    };
    // (tokens, k, n, accumulate, soft cap): ragged tiles through the scratch epilogue with a
    // whole one stored directly, a ragged K with both epilogue transforms, whole tiles adding
    // into the output in place.
    let gemms = [
        (200, 192, 160, false, 0.0),
        (130, 100, 72, true, 30.0),
        (256, 128, 256, true, 0.0),
    ];
    for (i, &(tokens, k, n, accumulate, soft_cap)) in gemms.iter().enumerate() {
        let epi = Epilogue { accumulate, soft_cap };
        let problem = GemmProblem::new(tokens, k, n, 1000 + i as u64);
        let want = run.gemm(&reference, &problem, epi)?;
        let mut got = run.gemm(&candidate, &problem, epi)?;
        if inject && i == 0 {
            // One wrong output value, as a kernel with a misplaced fragment would give.
            got[tokens * n / 2] += problem.scale;
        }
        let what = format!("{gemm} tokens {tokens} k {k} n {n}");
        worst.add(&what, relative_error(&got, &want, problem.scale), GEMM_TOLERANCE);
    }
    // (heads, dqk, dv, tokens, chunk): ragged 64-wide tiles over two dqk slices with a short last
    // chunk; chunks of two 64-row blocks (phase 2 walks the causal key blocks).
    let cells = [(2, 96, 80, 150, 64), (1, 64, 64, 200, 128)];
    for (i, &(heads, dqk, dv, tokens, chunk)) in cells.iter().enumerate() {
        let problem = CellProblem::new(heads, dqk, dv, tokens, chunk, 2000 + i as u64);
        let want = run.chunkwise(&reference, &problem, false)?;
        let got = run.chunkwise(&candidate, &problem, fragment.is_some())?;
        let (h, c) = got;
        let what = format!("{chunkwise} heads {heads} dqk {dqk} dv {dv} tokens {tokens} chunk {chunk}");
        worst.add(
            &format!("{what}: h"),
            relative_error(&h, &want.0, max_abs(&want.0)),
            CHUNK_TOLERANCE,
        );
        worst.add(
            &format!("{what}: C"),
            relative_error(&c, &want.1, max_abs(&want.1)),
            CHUNK_TOLERANCE,
        );
    }
    Ok(SelfCheck {
        fragment,
        passed: worst.passed(),
        max_error: worst.error,
        detail: worst.detail(),
        remembered: false,
        comparisons: worst.all,
    })
}

/// The comparisons so far: whether all passed, the first failure, the largest error.
struct Worst {
    all: Vec<(String, f32, f32)>,
    failure: Option<String>,
    error: f32,
    what: String,
    tolerance: f32,
}

impl Worst {
    fn new() -> Self {
        Worst {
            all: Vec::new(),
            failure: None,
            error: 0.0,
            what: String::new(),
            tolerance: 0.0,
        }
    }

    fn add(&mut self, what: &str, error: f32, tolerance: f32) {
        self.all.push((what.to_string(), error, tolerance));
        // A NaN error fails (it is not within any tolerance).
        let within = error <= tolerance;
        if !within && self.failure.is_none() {
            self.failure = Some(format!(
                "{what}: error {error:.2e} of the scale, tolerance {tolerance:.0e}"
            ));
        }
        if error > self.error || error.is_nan() || self.what.is_empty() {
            self.error = error;
            self.what = what.to_string();
            self.tolerance = tolerance;
        }
    }

    fn passed(&self) -> bool {
        self.failure.is_none()
    }

    fn detail(&self) -> String {
        match &self.failure {
            Some(f) => f.clone(),
            None => format!(
                "largest error {:.2e} of the scale, tolerance {:.0e}, in {}",
                self.error, self.tolerance, self.what
            ),
        }
    }
}

/// max |got - want| / scale (infinite where a value is not finite or the lengths differ).
fn relative_error(got: &[f32], want: &[f32], scale: f32) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    let scale = if scale > 0.0 { scale } else { 1.0 };
    got.iter().zip(want).fold(0.0f32, |acc, (g, w)| {
        let d = (g - w).abs();
        if d.is_finite() {
            acc.max(d / scale)
        } else {
            f32::INFINITY
        }
    })
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Uniform values in [lo, hi) rounded to f16 (so both paths multiply the same numbers).
fn f16_values(r: &mut SplitMix64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len)
        .map(|_| half::f16::from_f32(r.uniform(lo, hi)).to_f32())
        .collect()
}

struct GemmProblem {
    tokens: usize,
    k: usize,
    n: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    y0: Vec<f32>,
    /// max over outputs of sum_k |x w| + |y0|: the size of what one output sums.
    scale: f32,
}

impl GemmProblem {
    fn new(tokens: usize, k: usize, n: usize, seed: u64) -> Self {
        let mut r = SplitMix64::new(seed);
        let x = f16_values(&mut r, tokens * k, -1.0, 1.0);
        let w = f16_values(&mut r, n * k, -1.0, 1.0);
        let y0 = r.uniform_vec(tokens * n, -2.0, 2.0);
        let row_abs: Vec<f32> = w.chunks_exact(k).map(|row| row.iter().map(|v| v.abs()).sum()).collect();
        let x_max = max_abs(&x);
        let scale = x_max * row_abs.iter().fold(0.0f32, |m, v| m.max(*v)) + 2.0;
        GemmProblem {
            tokens,
            k,
            n,
            x,
            w,
            y0,
            scale,
        }
    }
}

/// One mLSTM cell segment: the fused projections of xLSTM Large's layout, gate biases and the
/// state before the segment.
struct CellProblem {
    l: CellLayout,
    tokens: usize,
    chunk: usize,
    proj: Vec<f32>,
    bias: Vec<f32>,
    c0: Vec<f32>,
    n0: Vec<f32>,
    m0: Vec<f32>,
}

impl CellProblem {
    fn new(heads: usize, dqk: usize, dv: usize, tokens: usize, chunk: usize, seed: u64) -> Self {
        let l = CellLayout::fused(heads, dqk, dv, 15.0, 1e-6);
        let mut r = SplitMix64::new(seed);
        let mut proj = Vec::with_capacity(tokens * l.proj_stride);
        // Positive q and k (and n_prev): every score and normaliser term is positive, so h is a
        // weighted mean of values of size ~1 and its error measures the products, not a
        // cancellation in the normaliser.
        for _ in 0..tokens {
            for col in 0..l.proj_stride {
                proj.push(if col >= l.i_col {
                    r.uniform(-8.0, 8.0)
                } else if col < l.v_col {
                    r.uniform(0.0, 1.0)
                } else {
                    r.uniform(-1.0, 1.0)
                });
            }
        }
        let mut bias = r.uniform_vec(heads, -3.0, 3.0);
        bias.extend(r.uniform_vec(heads, 0.0, 6.0));
        CellProblem {
            tokens,
            chunk,
            proj,
            bias,
            c0: r.uniform_vec(heads * dqk * dv, -1.0, 1.0),
            n0: r.uniform_vec(heads * dqk, 0.5, 1.0),
            m0: r.uniform_vec(heads, -1.0, 2.0),
            l,
        }
    }
}

/// Buffers and plans of one self-check.
struct Run<'a> {
    kernels: &'a Kernels,
    pool: BufferPool,
}

impl Run<'_> {
    fn buf(&self, data: &[f32]) -> Result<GpuBuffer> {
        let b = self.pool.storage(
            (data.len().max(1) * 4) as u64,
            Category::Scratch,
            "matrix-unit self-check",
        )?;
        self.kernels
            .gpu()
            .queue
            .write_buffer(b.raw(), 0, bytemuck::cast_slice(data));
        Ok(b)
    }

    fn read(&self, b: &GpuBuffer, first: usize, n: usize) -> Result<Vec<f32>> {
        read_f32(self.kernels.gpu(), &self.pool, b, first as u64, n as u64)
    }

    fn execute(&self, record: impl FnOnce(&mut PlanBuilder) -> Result<()>) -> Result<()> {
        let gpu = self.kernels.gpu();
        let mut pb = PlanBuilder::new(gpu.clone());
        record(&mut pb)?;
        pb.finish(&self.pool)?.run(gpu, SubmitBudget::default())?;
        gpu.wait()
    }

    /// y (+)= x W^T with `ops`, y starting as the problem's y0.
    fn gemm(&self, ops: &Ops, p: &GemmProblem, epi: Epilogue) -> Result<Vec<f32>> {
        let gpu = self.kernels.gpu();
        let w = GpuMatrix::from_f32(gpu, &self.pool, &p.w, p.n, p.k, WeightDtype::F16, "self-check weights")?;
        let x = self.buf(&p.x)?;
        let y = self.buf(&p.y0)?;
        let rows = |b: &GpuBuffer, stride: usize| Rows {
            buf: Slice::all(b),
            offset: 0,
            stride,
        };
        self.execute(|pb| matmul(pb, ops, &rows(&x, p.k), p.tokens, &w, &rows(&y, p.n), epi))?;
        self.read(&y, 0, p.tokens * p.n)
    }

    /// The gates and both chunkwise phases with `ops` (on its matrix units for `coop`): h and
    /// every boundary state C.
    fn chunkwise(&self, ops: &Ops, p: &CellProblem, coop: bool) -> Result<(Vec<f32>, Vec<f32>)> {
        let l = &p.l;
        let (nh, t) = (l.num_heads, p.tokens);
        let chunks = t.div_ceil(p.chunk);
        let per_c = nh * l.dqk * l.dv;
        let with_boundaries = |init: &[f32], per: usize| {
            let mut v = init.to_vec();
            v.resize((chunks + 1) * per, 0.0);
            v
        };
        let proj = self.buf(&p.proj)?;
        let bias = self.buf(&p.bias)?;
        let gi = self.buf(&vec![0.0; nh * t])?;
        let gb = self.buf(&vec![0.0; nh * t])?;
        let cb = self.buf(&with_boundaries(&p.c0, per_c))?;
        let nb = self.buf(&with_boundaries(&p.n0, nh * l.dqk))?;
        let mb = self.buf(&with_boundaries(&p.m0, nh))?;
        let hb = self.buf(&vec![0.0; t * nh * l.dv])?;
        let b = Boundaries {
            c: Slice::all(&cb),
            n: Slice::all(&nb),
            m: Slice::all(&mb),
        };
        let (proj_s, gi_s, gb_s) = (Slice::all(&proj), Slice::all(&gi), Slice::all(&gb));
        let inputs = ChunkInputs {
            l,
            proj: &proj_s,
            gi: &gi_s,
            gb: &gb_s,
            b: &b,
            tokens: t,
            chunk: p.chunk,
        };
        self.execute(|pb| {
            let gates = MlstmGates {
                l,
                proj: &proj_s,
                bias: &Slice::all(&bias),
                tokens: t,
                chunk: p.chunk,
                gi: &gi_s,
                gb: &gb_s,
            };
            mlstm_gates(pb, ops, &gates)?;
            if coop {
                mlstm_chunk_state_coop(pb, ops, &inputs, 0..chunks, 0..nh)?;
                mlstm_chunk_out_coop(pb, ops, &inputs, 0..chunks, 0..nh, &Slice::all(&hb))
            } else {
                mlstm_chunk_state(pb, ops, &inputs, 0..chunks, 0..nh)?;
                mlstm_chunk_out(pb, ops, &inputs, 0..chunks, 0..nh, &Slice::all(&hb))
            }
        })?;
        Ok((
            self.read(&hb, 0, t * nh * l.dv)?,
            self.read(&cb, per_c, chunks * per_c)?,
        ))
    }
}

/// Where verdicts are remembered: beside the pipeline cache.
const RECORD_FILE: &str = "matrix-units.json";
const RECORD_READ: crate::files::ReadRules = crate::files::ReadRules {
    max_bytes: 1 << 20,
    same_owner: true,
};

/// What a remembered verdict applies to: this adapter and driver, this fragment, these kernels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RecordKey {
    adapter: String,
    driver: String,
    backend: String,
    fragment: Option<u32>,
    /// A digest of every kernel source the check compares (a changed kernel is checked anew).
    kernels: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    key: RecordKey,
    passed: bool,
    max_error: f32,
    detail: String,
}

impl RecordKey {
    /// The key for `fragment` on this device (none without a cache directory).
    fn new(kernels: &Kernels, fragment: Option<u32>) -> Option<Self> {
        let caps = kernels.caps();
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        for name in [
            "gemm_coop",
            "gemm",
            "gemm_8x8",
            "mlstm_gates",
            "mlstm_chunk_state",
            "mlstm_chunk_out",
            "mlstm_chunk_state_coop",
            "mlstm_chunk_out_coop",
        ] {
            // FNV-1a: stable across builds and platforms (the file outlives the binary).
            for b in crate::gpu::kernels::source(name).ok()?.bytes() {
                digest = (digest ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        Some(RecordKey {
            adapter: caps.adapter_name.clone(),
            driver: caps.driver.clone(),
            backend: caps.backend.clone(),
            fragment,
            kernels: format!("{digest:016x}"),
        })
    }

    fn path() -> Option<std::path::PathBuf> {
        Some(crate::gpu::kernels::cache_dir()?.join(RECORD_FILE))
    }

    fn read_all(path: &std::path::Path) -> Vec<Record> {
        crate::files::check_private_dir(crate::files::parent_dir(path))
            .ok()
            .and_then(|()| crate::files::read_regular(path, RECORD_READ).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn lookup(&self) -> Option<SelfCheck> {
        self.lookup_in(&Self::path()?)
    }

    fn lookup_in(&self, path: &std::path::Path) -> Option<SelfCheck> {
        Self::read_all(path)
            .into_iter()
            .find(|r| r.key == *self)
            .map(|r| SelfCheck {
                fragment: self.fragment,
                passed: r.passed,
                max_error: r.max_error,
                detail: r.detail,
                remembered: true,
                comparisons: Vec::new(),
            })
    }

    /// Remembers `check` for this key (failures to write cost only a check at the next start).
    fn store(&self, check: &SelfCheck) {
        if let Some(path) = Self::path() {
            self.store_in(&path, check);
        }
    }

    fn store_in(&self, path: &std::path::Path, check: &SelfCheck) {
        let mut all: Vec<Record> = Self::read_all(path).into_iter().filter(|r| r.key != *self).collect();
        all.push(Record {
            key: self.clone(),
            passed: check.passed,
            // (JSON has no infinity)
            max_error: if check.max_error.is_finite() {
                check.max_error
            } else {
                f32::MAX
            },
            detail: check.detail.clone(),
        });
        let Ok(json) = serde_json::to_vec_pretty(&all) else {
            return;
        };
        if crate::files::ensure_private_dir(crate::files::parent_dir(path)).is_ok() {
            let _ = crate::files::write_atomic(path, &json, crate::files::Visibility::Private);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fragment: Option<u32>, kernels: &str) -> RecordKey {
        RecordKey {
            adapter: "Apple M3 Max".into(),
            driver: "".into(),
            backend: "Metal".into(),
            fragment,
            kernels: kernels.into(),
        }
    }

    fn check(passed: bool, max_error: f32) -> SelfCheck {
        SelfCheck {
            fragment: Some(8),
            passed,
            max_error,
            detail: "detail".into(),
            remembered: false,
            comparisons: Vec::new(),
        }
    }

    #[test]
    fn verdicts_are_remembered_per_adapter_fragment_and_kernel_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join(RECORD_FILE);
        let a = key(Some(8), "0001");
        assert_eq!(a.lookup_in(&path), None);
        a.store_in(&path, &check(false, f32::INFINITY));
        let got = a.lookup_in(&path).expect("remembered");
        assert!(got.remembered && !got.passed && got.max_error == f32::MAX);
        // A new verdict replaces the old one; other keys are kept apart.
        a.store_in(&path, &check(true, 1e-6));
        let b = key(Some(8), "0002");
        b.store_in(&path, &check(false, 0.5));
        assert!(a.lookup_in(&path).unwrap().passed);
        assert!(!b.lookup_in(&path).unwrap().passed);
        assert_eq!(key(Some(16), "0001").lookup_in(&path), None);
        assert_eq!(RecordKey::read_all(&path).len(), 2);
        // A damaged file is no verdict (the check runs again and rewrites it).
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(a.lookup_in(&path), None);
        a.store_in(&path, &check(true, 1e-6));
        assert!(a.lookup_in(&path).unwrap().passed);
    }

    #[test]
    fn worst_names_the_first_failure_and_nan_fails() {
        let mut w = Worst::new();
        w.add("a", 1e-5, 1e-3);
        assert!(w.passed());
        w.add("b", f32::NAN, 1e-3);
        w.add("c", 0.5, 1e-3);
        assert!(!w.passed());
        assert!(w.detail().starts_with("b:"), "{}", w.detail());
        assert_eq!(relative_error(&[1.0, f32::NAN], &[1.0, 2.0], 1.0), f32::INFINITY);
        assert_eq!(relative_error(&[1.0], &[1.0, 2.0], 1.0), f32::INFINITY);
        assert!((relative_error(&[1.0, 2.5], &[1.0, 2.0], 2.0) - 0.25).abs() < 1e-6);
    }
}
