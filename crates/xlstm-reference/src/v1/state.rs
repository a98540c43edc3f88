//! The storage precision of the reference and the recurrent state of every block.

use xlstm_wgpu::model::v1_config::{BlockKind, V1Config};

/// The storage precision of activations and states: `f32` (like GPU buffers and the package's
/// float32 run; the default) or `f64` (every value kept in double precision, which reproduces the
/// package run in float64 — `model.double()` — to ~1e-12 and so checks the math itself).
/// Arithmetic is f64 in both cases; values are rounded to `Self` wherever they are stored.
pub trait Real: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// Recurrent state of one v1 mLSTM block, in the package's `step()` convention.
#[derive(Clone, Debug, PartialEq)]
pub struct MlstmState<S = f32> {
    /// Conv input window `[KS, I]`, oldest first, newest at row `KS−1` (the package's `conv_state`).
    pub conv: Vec<S>,
    /// `C [NH, DH, DH]` (`C[h, a, b]` accumulates `k_a/√DH · v_b`).
    pub c: Vec<S>,
    /// `n [NH, DH]` (accumulates `k/√DH`).
    pub n: Vec<S>,
    /// Stabiliser `m [NH]` (0 initially).
    pub m: Vec<S>,
}

/// Recurrent state of one sLSTM block: the package's `slstm_state` `[4, E]` = (y, c, n, m) and the
/// conv window (empty without conv).
#[derive(Clone, Debug, PartialEq)]
pub struct SlstmState<S = f32> {
    /// Conv input window `[KS, E]`, newest at row `KS−1`.
    pub conv: Vec<S>,
    pub y: Vec<S>,
    pub c: Vec<S>,
    pub n: Vec<S>,
    pub m: Vec<S>,
}

/// One block's state.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockState<S = f32> {
    Mlstm(MlstmState<S>),
    Slstm(SlstmState<S>),
}

/// The whole model's recurrent state. An empty state (`V1State::default()`, no blocks) is filled
/// with zeros by the first [`forward`](super::forward) call; [`V1State::new`] builds the zero state explicitly.
#[derive(Clone, Debug, PartialEq)]
pub struct V1State<S = f32> {
    pub blocks: Vec<BlockState<S>>,
}

impl<S: Real> Default for V1State<S> {
    fn default() -> Self {
        Self { blocks: Vec::new() }
    }
}

impl<S: Real> V1State<S> {
    /// The zero state of every block (what the package's `step(idx, state=None)` starts from).
    pub fn new(cfg: &V1Config) -> Self {
        let e = cfg.embedding_dim;
        let zeros = |len: usize| vec![S::default(); len];
        let blocks = cfg
            .blocks
            .iter()
            .map(|kind| match kind {
                BlockKind::Mlstm => {
                    let m = cfg
                        .mlstm_layer()
                        .expect("validated config: mLSTM blocks have a layer config");
                    let (nh, dh) = (m.num_heads, m.head_dim());
                    BlockState::Mlstm(MlstmState {
                        conv: zeros(m.conv1d_kernel_size * m.inner_dim),
                        c: zeros(nh * dh * dh),
                        n: zeros(nh * dh),
                        m: zeros(nh),
                    })
                }
                BlockKind::Slstm => BlockState::Slstm(SlstmState {
                    conv: zeros(
                        cfg.slstm_layer()
                            .expect("validated config: sLSTM blocks have a layer config")
                            .conv1d_kernel_size
                            * e,
                    ),
                    y: zeros(e),
                    c: zeros(e),
                    n: zeros(e),
                    m: zeros(e),
                }),
            })
            .collect();
        Self { blocks }
    }
}
