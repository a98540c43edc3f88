// gemv_head_norm.wgsl — the decode out-projection of xLSTM Large with the head norm and output
// gate as its input transform (one dispatch instead of head_norm_gate.wgsl + gemv.wgsl):
//   y[y_offset + n] (+)= sum_k xt[k] * W[n, k],
//   xt[k] = (x[k] - mean_h) / sqrt(var_h + eps) * norm[k] * sigmoid(gate[gate_offset + k]),
// mean/var (biased) over head h = k / head_dim of the 1-token mLSTM output x.
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> (read; the row at x_offset);
//   2 w: one row-part of the matrix in any weight format (weight_formats.wgsl, appended) (read);
//   3 y: array<f32> (read_write); 4 norm: array<f32> [k] (read); 5 gate: array<f32> (read).
// Workgroup: 256 invocations. The workgroup first stages the transformed input once in workgroup
//   memory (KMAX floats, zero padded to kp): invocation i sums the max(1, k / 256) consecutive
//   inputs from i * that, shifted by its head's first value for a stable variance, and one
//   invocation per head adds its head's partial sums (the host uses this kernel only where those
//   runs stay within one head, head_dim % 4 == 0 and kp <= KMAX). Then ROWS / 4 lane groups of
//   LANES = 1024 / ROWS lanes multiply 4 consecutive rows each at once (gemv_rows.wgsl: one
//   16-byte block per load, 8 weights in f16, 16 in q8, 32 in q4; eight loads in flight), keep
//   one partial sum per row and lane, and the workgroup reduces all rows at once. ROWS (4, 8, 16
//   or 32; `KernelShapes::head_norm_rows`) trades the number of workgroups (a 4,096-row matrix in 16-row
//   workgroups fills half of an H200's workgroup slots) against the staging every workgroup does.
// Grid: (ceil(n / ROWS), 1, 1).
// Epilogue: accumulate != 0 adds into y (the residual); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: weights in any format (WEIGHT_FORMAT), dequantized in registers; everything else f32.

const KMAX: u32 = 4096u;
const ROWS: u32 = 16u;
const LANES: u32 = 1024u / ROWS;

struct Params {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
    gate_offset: u32,
    head_dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> norm: array<f32>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;

var<workgroup> xs: array<vec4<f32>, KMAX / 4u>;
var<workgroup> red: array<f32, 1024>; // [ROWS][LANES] row partials; [2][256] statistics first
var<workgroup> head_mean: array<f32, 256>;
var<workgroup> head_inv: array<f32, 256>;

// The staged, transformed input for gemv_rows.wgsl's dot_rows4 (zero padded to kp).
fn input4(k: u32) -> vec4<f32> {
    return xs[k / 4u];
}

// Stages the raw input, computes the per-head statistics, then transforms the staged input.
fn stage_input(lid: u32) {
    for (var i = lid; i * 4u < p.kp; i += 256u) {
        var v = vec4<f32>();
        for (var j = 0u; j < 4u; j++) {
            if (i * 4u + j < p.k) {
                v[j] = x[p.x_offset + i * 4u + j];
            }
        }
        xs[i] = v;
    }
    workgroupBarrier();
    let per = max(1u, p.k / 256u);
    let first = lid * per;
    var s = 0.0;
    var sq = 0.0;
    if (first < p.k) {
        let shift = xs[(first / p.head_dim) * p.head_dim / 4u].x;
        for (var j = first; j < first + per; j++) {
            let d = xs[j / 4u][j % 4u] - shift;
            s += d;
            sq += d * d;
        }
    }
    red[lid] = s;
    red[256u + lid] = sq;
    workgroupBarrier();
    if (lid < p.k / p.head_dim) {
        let group = p.head_dim / per; // invocations per head
        var hs = 0.0;
        var hsq = 0.0;
        for (var i = lid * group; i < (lid + 1u) * group; i++) {
            hs += red[i];
            hsq += red[256u + i];
        }
        let n = f32(p.head_dim);
        let mean_shifted = hs / n;
        head_mean[lid] = xs[lid * p.head_dim / 4u].x + mean_shifted;
        head_inv[lid] = inverseSqrt(max(hsq / n - mean_shifted * mean_shifted, 0.0) + p.eps);
    }
    workgroupBarrier();
    for (var i = lid; i * 4u < p.k; i += 256u) {
        let hd = i * 4u / p.head_dim;
        var v = vec4<f32>();
        for (var j = 0u; j < 4u; j++) {
            let k = i * 4u + j;
            let o = gate[p.gate_offset + k];
            v[j] = (xs[i][j] - head_mean[hd]) * head_inv[hd] * norm[k] / (1.0 + exp(-o));
        }
        xs[i] = v;
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    stage_input(lid);
    let g = lid / LANES;
    let lane = lid % LANES;
    let stride = LANES * block_elems(); // LANES lanes x one block
    // Each lane group takes 4 consecutive rows at once (they share each input load).
    let row = g * 4u;
    let r = wid.x * ROWS + row;
    var t = vec4<f32>();
    if (r < p.n) {
        t = rows4_over_k(r, lane * block_elems(), stride);
    }
    red[row * LANES + lane] = t.x;
    red[(row + 1u) * LANES + lane] = t.y;
    red[(row + 2u) * LANES + lane] = t.z;
    red[(row + 3u) * LANES + lane] = t.w;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        for (var e = lid; e < ROWS * half; e += 256u) {
            let row = e / half;
            let l = e % half;
            red[row * LANES + l] += red[row * LANES + l + half];
        }
        workgroupBarrier();
    }
    if (lid < ROWS) {
        let r = wid.x * ROWS + lid;
        if (r < p.n) {
            let o = p.y_offset + r;
            var v = red[lid * LANES];
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
