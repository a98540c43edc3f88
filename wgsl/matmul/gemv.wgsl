// gemv.wgsl — decode projections for one token: y[y_offset + n] (+)= sum_k x[x_offset + k] * W[n, k]
//
// The input can be transformed on the fly so decode needs fewer dispatches (X_MODE):
//   0: x as is;
//   1: RMSNorm: x * g / sqrt(mean(x^2) + eps), g = aux[0 .. k]; every lane group sees the whole
//      input row once, so it sums x^2 along with its dot products and applies the 1/rms factor
//      to the reduced sums (no separate pass over x, no extra barrier);
//   2: SwiGLU: silu(x[k']) * x[k + k'] for k' < k (x holds the fused [gate | up] projection).
// Bindings (group 0): 0 uniform Params; 1 x: array<vec4<f32>> (read; read as vec4 when x_offset
//   and k are multiples of 4, element by element otherwise); 2 w: one row-part of the matrix in
//   any weight format (weight_formats.wgsl, appended) (read); 3 y: array<f32> (read_write);
//   4 aux: array<vec4<f32>> (read; the RMSNorm weight in mode 1, otherwise any buffer).
// Workgroup: WG invocations = WG / LANES lane groups of LANES lanes; each lane group multiplies
//   RPL (4 or 8) consecutive rows. Each lane reads one 16-byte block per load (8 weights in f16,
//   16 in q8, 32 in q4, 4 in f32) of each of its rows, strided across the row so loads
//   coalesce, and dequantizes them in registers (gemv_rows.wgsl); the rows share each input
//   load and transform. PREFETCH: each iteration loads the next blocks before multiplying
//   these (the float formats: more bytes in flight per lane). The lanes' partial sums are reduced by the
//   appended library: gemv_reduce_shared.wgsl (workgroup memory, any adapter) or
//   gemv_reduce_subgroup.wgsl (one lane group per subgroup, where the subgroup size is LANES).
//   GROUPS: each lane group multiplies that many groups of RPL rows in turn (longer-lived
//   workgroups that keep loads in flight across the reductions).
// Grid: (ceil(n / (GROUPS * RPL * WG / LANES)), 1, 1).
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: weights in any format (WEIGHT_FORMAT), dequantized and accumulated in f32.

const WG: u32 = 256u;
const LANES: u32 = 64u;
const RPL: u32 = 8u;
const GROUPS: u32 = 1u;
const PREFETCH: u32 = 0u;
const X_MODE: u32 = 0u;

struct Params {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<vec4<f32>>;

// Mode 1: this lane's share of sum(x^2) over the raw input (each element is read once per lane
// group).
var<private> sum_sq: f32;

// raw x[at .. at + 4] relative to x_offset (zero at or past `end`), for `at` a multiple of 4
// relative to the start of the input row.
fn raw_x4(at: u32, end: u32) -> vec4<f32> {
    // `&`, not `&&`: naga lowers a short-circuit through a local variable and a branch.
    if (((p.x_offset + at) % 4u == 0u) & (at + 4u <= end)) {
        return x[(p.x_offset + at) / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (at + j < end) {
            let e = p.x_offset + at + j;
            v[j] = x[e / 4u][e % 4u];
        }
    }
    return v;
}

fn aux4(k: u32) -> vec4<f32> {
    if (k + 4u <= p.k) {
        return aux[k / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = aux[(k + j) / 4u][(k + j) % 4u];
        }
    }
    return v;
}

// The (transformed) input x[k .. k + 4], zero past p.k, for k a multiple of 4 (what
// gemv_rows.wgsl's block_inputs reads).
fn input4(k: u32) -> vec4<f32> {
    if (X_MODE == 1u) {
        let v = raw_x4(k, p.k);
        sum_sq += dot(v, v);
        return v * aux4(k);
    }
    if (X_MODE == 2u) {
        let g = raw_x4(k, p.k);
        let u = raw_x4(p.k + k, 2u * p.k);
        return g / (vec4<f32>(1.0) + exp(-g)) * u;
    }
    return raw_x4(k, p.k);
}

// One lane's partial sums: rows r .. r + 3 in `lo`, r + 4 .. r + 7 in `hi` (RPL 8), and its share
// of sum(x^2) (mode 1).
struct LaneSums {
    lo: vec4<f32>,
    hi: vec4<f32>,
    sum_sq: f32,
}

// The sums of rows r .. r + RPL - 1 over this lane's blocks of the row (lane `lane` of its
// group), and its share of sum(x^2) (mode 1).
fn row_sums(r: u32, lane: u32) -> LaneSums {
    let stride = LANES * block_elems();
    var s = LaneSums();
    sum_sq = 0.0;
    var k = lane * block_elems();
    if (PREFETCH == 1u) {
        // Each iteration loads the next block's weights before multiplying this one's, so
        // a lane keeps loads in flight while it computes.
        var wa = load_rows4(r, k);
        var wb = wa;
        if (RPL == 8u) {
            wb = load_rows4(r + 4u, k);
        }
        for (; k < p.kp; k += stride) {
            let kn = min(k + stride, p.kp - block_elems());
            let na = load_rows4(r, kn);
            var nb = wb;
            if (RPL == 8u) {
                nb = load_rows4(r + 4u, kn);
            }
            let xa = block_inputs(k);
            s.lo += dot_loaded4(wa, xa);
            if (RPL == 8u) {
                s.hi += dot_loaded4(wb, xa);
            }
            wa = na;
            wb = nb;
        }
    }
    for (; k < p.kp; k += stride) {
        let xa = block_inputs(k);
        s.lo += dot_rows4(r, k, xa);
        if (RPL == 8u) {
            s.hi += dot_rows4(r + 4u, k, xa);
        }
    }
    s.sum_sq = sum_sq;
    return s;
}

// Reduces the lanes' sums of rows r .. r + RPL - 1 and writes them (lane 0). Every invocation
// of the workgroup calls it together (the reduction may use barriers).
fn finish_rows(r: u32, lid: u32, lane: u32, s: LaneSums) {
    let t = lane_sums(lid, s);
    if (lane == 0u) {
        var scale = 1.0;
        if (X_MODE == 1u) {
            scale = inverseSqrt(t.sum_sq / f32(p.k) + p.eps);
        }
        for (var i = 0u; i < RPL; i++) {
            if (r + i < p.n) {
                let o = p.y_offset + r + i;
                var v = select(t.lo[i % 4u], t.hi[i % 4u], i >= 4u) * scale;
                if (p.accumulate != 0u) {
                    v += y[o];
                }
                if (p.soft_cap > 0.0) {
                    v = p.soft_cap * tanh(v / p.soft_cap);
                }
                y[o] = v;
            }
        }
    }
    if (GROUPS > 1u) {
        // The reduction's workgroup memory is reused by the next row group.
        workgroupBarrier();
    }
}

// First row of row group g of lane group `group` in workgroup `wg`: the workgroup's lane groups
// take neighbouring rows at each step.
fn first_row(wg: u32, group: u32, g: u32) -> u32 {
    return ((wg * GROUPS + g) * (WG / LANES) + group) * RPL;
}

// The GEMV of invocation `lid`, lane `lane` of lane group `group`, in workgroup `wg` (the
// reduction library's entry point numbers the lanes). Each lane group multiplies GROUPS row
// groups of RPL rows in turn.
fn gemv(wg: u32, lid: u32, lane: u32, group: u32) {
    let k = lane * block_elems();
    if (GROUPS > 1u && p.kp <= LANES * block_elems()) {
        // Rows of at most one block a lane (q4 and q8 rows of 4,096 at 128 lanes): the lane
        // transforms its inputs once, and the next row group's blocks are loaded before this
        // one's are reduced, so loads stay in flight across the reductions.
        let in_row = k < p.kp;
        var xa = BlockInputs();
        var wa = Rows4();
        var wb = Rows4();
        if (in_row) {
            xa = block_inputs(k);
            wa = load_rows4(first_row(wg, group, 0u), k);
            if (RPL == 8u) {
                wb = load_rows4(first_row(wg, group, 0u) + 4u, k);
            }
        }
        let ss = sum_sq;
        for (var g = 0u; g < GROUPS; g++) {
            let r = first_row(wg, group, g);
            var na = wa;
            var nb = wb;
            if (in_row && g + 1u < GROUPS) {
                let rn = first_row(wg, group, g + 1u);
                na = load_rows4(rn, k);
                if (RPL == 8u) {
                    nb = load_rows4(rn + 4u, k);
                }
            }
            var s = LaneSums();
            if (in_row) {
                s.lo = dot_loaded4(wa, xa);
                if (RPL == 8u) {
                    s.hi = dot_loaded4(wb, xa);
                }
            }
            s.sum_sq = ss;
            finish_rows(r, lid, lane, s);
            wa = na;
            wb = nb;
        }
        return;
    }
    for (var g = 0u; g < GROUPS; g++) {
        let r = first_row(wg, group, g);
        var s = LaneSums();
        if (r < p.n) {
            s = row_sums(r, lane);
        }
        finish_rows(r, lid, lane, s);
    }
}
