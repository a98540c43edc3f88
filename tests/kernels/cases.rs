//! Shape tables shared by the conformance tests (`tests/kernels/`) and the criterion benchmarks
//! (`benches/kernels.rs`, which includes this file by path), so correctness and performance run
//! the same shapes. Tests run every table; benchmarks on a software adapter (lavapipe) run the
//! `*_SOFTWARE` tables, on a GPU the full-size ones.
#![allow(dead_code)] // each includer uses its own subset

/// Decode GEMV shapes (n, k): the 7B model's fused projection, out projection, FFN up and down.
pub const GEMV_BENCH: &[(usize, usize)] = &[(12304, 4096), (4096, 4096), (21888, 4096), (4096, 10944)];
/// The decode GEMV shape a software adapter benchmarks, and the tests check.
pub const GEMV_SOFTWARE: &[(usize, usize)] = &[(1024, 512)];

/// Prefill GEMM shape (tokens, n, k): a 1024-token segment through the 7B fused projection.
pub const GEMM_BENCH: (usize, usize, usize) = (1024, 12304, 4096);
/// The prefill GEMM shape a software adapter benchmarks, and the tests check.
pub const GEMM_SOFTWARE: (usize, usize, usize) = (64, 256, 256);

/// sLSTM recurrence shapes (heads, head width, tokens): head widths around the `Auto`
/// crossover, at the 125M-model width (E = 768) and wider.
pub const SLSTM_BENCH: &[(usize, usize, usize)] = &[
    (4, 256, 1024),
    (4, 32, 256),
    (12, 64, 512),
    (6, 128, 512),
    (4, 192, 512),
];
/// The sLSTM shapes a software adapter benchmarks, and the tests check.
pub const SLSTM_SOFTWARE: &[(usize, usize, usize)] = &[(4, 256, 64), (4, 32, 256)];

/// v1 mLSTM gate projection cases (tokens, gate rows = 2·NH, inputs k = 3·inner, row stride,
/// gate column): one and many tokens, widths that are not multiples of 4, gates right after
/// q | k | v and further along a padded row.
pub const MLSTM_V1_GATES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 2, 12, 14, 12),
    (1, 8, 96, 110, 100),
    (7, 4, 33, 40, 35),
    (130, 8, 192, 200, 192),
    (3, 16, 771, 800, 771),
];

/// sLSTM conformance cases (head width, heads, tokens): widths 1 to 1024 (the sequence kernel up
/// to its limit of 256), 1 to 5 heads, 1 to 3000 tokens.
pub const SLSTM: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 3, 2),
    (1, 5, 64),
    (3, 2, 7),
    (3, 4, 64),
    (3, 1, 1),
    (32, 4, 64),
    (32, 5, 7),
    (32, 1, 2),
    (100, 2, 64),
    (100, 3, 7),
    (100, 1, 1),
    (256, 4, 7),
    (256, 1, 64),
    (256, 2, 2),
    (300, 2, 7),
    (300, 1, 64),
    (1024, 1, 7),
    (1024, 2, 2),
    // Long sequences: the sequence kernel runs as several dispatches (lavapipe ends every loop
    // of an invocation after 65535 iterations in total; see ops::slstm).
    (256, 2, 300),
    (32, 1, 3000),
];

/// Matmul sweep: inputs k and outputs n (every pair, both weight formats, every epilogue).
pub const MATMUL_K: [usize; 3] = [5, 37, 100];
pub const MATMUL_N: [usize; 3] = [1, 9, 70];
/// Token counts of the tiled GEMM sweep, and of the matrix-unit GEMM (128 x 128 tiles: several
/// tiles in both directions with ragged edges).
pub const GEMM_TOKENS: [usize; 4] = [2, 63, 65, 130];
pub const GEMM_COOP_TOKENS: [usize; 2] = [129, 300];

/// Chunkwise mLSTM chunk sizes and segment lengths (chunk, tokens): every power of two up to
/// the largest chunk and lengths between, each with a segment that is not a multiple of the chunk
/// (a short last chunk; for 256 also a segment shorter than one chunk, where the 64-row blocks
/// past its end do nothing).
pub const MLSTM_CHUNK_SIZES: &[(usize, usize)] = &[
    (1, 7),
    (37, 100),
    (64, 150),
    (65, 140),
    (100, 230),
    (128, 300),
    (200, 430),
    (256, 300),
    (256, 131),
];
