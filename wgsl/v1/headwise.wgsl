// headwise.wgsl — block-diagonal (headwise) projections of the original xLSTM
// (LinearHeadwiseExpand), `groups` of them in one dispatch:
//   out[t, g*width + b*bs + o] = sum_{d < bs} X_g[t, b*bs + d] * w[g, b, o, d]  (+ bias[g*width + b*bs + o])
// where X_g = first for g < split, else second. w is [groups, width / bs, bs, bs], so the weight
// row of output column c = g*width + b*bs + o starts at c * bs. Rows of first, second and out are
// strided views (offset + t * stride).
//
// Entry points (the host picks one by shape):
//   direct: one output value per invocation, a serial dot of length bs (small blocks, bs <= 16).
//   rows:   GEMV-like for few tokens: a workgroup = 8 output columns x 32 lanes striding over d,
//           lane partials reduced in workgroup memory.
//   tiled:  GEMM-like for many tokens: a workgroup computes 64 tokens x 64 outputs of one block
//           (4 x 4 per invocation) with 16-deep slices of X and w staged in workgroup memory.
// Bindings (group 0): 0 uniform Params; 1 first: array<f32> (read_write, only read); 2 second:
//   array<f32> (read_write, only read); 3 w: array<f32> (read); 4 bias: array<f32> [groups*width]
//   (read; has_bias = 0: any buffer); 5 out: array<f32> (read_write). first, second and out may
//   share a buffer (read_write, which wgpu allows); out must not overlap the inputs.
// Workgroup: 256 invocations (no subgroups).
// Grid: linear workgroup index wid.x + wid.y * grid_x (grid_x <= 65535) over
//   direct: tokens * ceil(groups*width / 256); rows: tokens * ceil(groups*width / 8);
//   tiled: ceil(tokens / 64) * groups * (width / bs) * ceil(bs / 64).
// Precision: f32 products and accumulation.

struct Params {
    tokens: u32,
    groups: u32,
    width: u32,
    bs: u32,
    split: u32,
    nb: u32,
    first_offset: u32,
    first_stride: u32,
    second_offset: u32,
    second_stride: u32,
    out_offset: u32,
    out_stride: u32,
    has_bias: u32,
    grid_x: u32,
    // Workgroups per token (direct, rows) or per token tile (tiled).
    per_row: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> first: array<f32>;
@group(0) @binding(2) var<storage, read_write> second: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// X_g[t, col]: the input row of token t for projection g.
fn x_base(g: u32, t: u32) -> u32 {
    if (g < p.split) {
        return p.first_offset + t * p.first_stride;
    }
    return p.second_offset + t * p.second_stride;
}

fn x_at(g: u32, i: u32) -> f32 {
    if (g < p.split) {
        return first[i];
    }
    return second[i];
}

fn bias_at(c: u32) -> f32 {
    if (p.has_bias != 0u) {
        return bias[c];
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wg = wid.x + wid.y * p.grid_x;
    let t = wg / p.per_row;
    let c = (wg % p.per_row) * 256u + lid;
    if (t >= p.tokens || c >= p.groups * p.width) {
        return;
    }
    let g = c / p.width;
    let cw = c % p.width;
    let xb = x_base(g, t) + (cw / p.bs) * p.bs;
    var acc = 0.0;
    for (var d = 0u; d < p.bs; d++) {
        acc = fma(x_at(g, xb + d), w[c * p.bs + d], acc);
    }
    out[p.out_offset + t * p.out_stride + c] = acc + bias_at(c);
}

const LANES: u32 = 32u;
const ROWS: u32 = 8u; // 256 / LANES

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wg = wid.x + wid.y * p.grid_x;
    let t = wg / p.per_row;
    if (t >= p.tokens) {
        return;
    }
    let lane = lid % LANES;
    let c = (wg % p.per_row) * ROWS + lid / LANES;
    var acc = 0.0;
    if (c < p.groups * p.width) {
        let g = c / p.width;
        let xb = x_base(g, t) + ((c % p.width) / p.bs) * p.bs;
        for (var d = lane; d < p.bs; d += LANES) {
            acc = fma(x_at(g, xb + d), w[c * p.bs + d], acc);
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u && c < p.groups * p.width) {
        out[p.out_offset + t * p.out_stride + c] = red[lid] + bias_at(c);
    }
}

const TM: u32 = 64u; // tokens per tile
const TN: u32 = 64u; // outputs per tile
const TK: u32 = 16u; // depth of a staged slice
const PAD: u32 = 65u; // TM + 1 = TN + 1: row pitch of the staged slices (no bank conflicts)

var<workgroup> xs: array<f32, 1040>; // [TK][PAD]: xs[k * PAD + m] = X[t0 + m, k0 + k]
var<workgroup> ws: array<f32, 1040>; // [TK][PAD]: ws[k * PAD + n] = w[.., o0 + n, k0 + k]

@compute @workgroup_size(256)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wg = wid.x + wid.y * p.grid_x;
    let tile_t = wg / p.per_row;
    if (tile_t * TM >= p.tokens) {
        return;
    }
    let rem = wg % p.per_row;
    let o_tiles = (p.bs + TN - 1u) / TN;
    let gb = rem / o_tiles; // g * nb + b
    let o0 = (rem % o_tiles) * TN;
    let g = gb / p.nb;
    let b = gb % p.nb;
    let t0 = tile_t * TM;
    let tx = lid % 16u;
    let ty = lid / 16u;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.bs; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let e = lid + 256u * r;
            let mn = e / TK;
            let k = e % TK;
            let d = k0 + k;
            let t = t0 + mn;
            var xv = 0.0;
            if (t < p.tokens && d < p.bs) {
                xv = x_at(g, x_base(g, t) + b * p.bs + d);
            }
            xs[k * PAD + mn] = xv;
            let o = o0 + mn;
            var wv = 0.0;
            if (o < p.bs && d < p.bs) {
                wv = w[(gb * p.bs + o) * p.bs + d];
            }
            ws[k * PAD + mn] = wv;
        }
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
            let wv = vec4<f32>(ws[k * PAD + tx], ws[k * PAD + tx + 16u], ws[k * PAD + tx + 32u], ws[k * PAD + tx + 48u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(xs[k * PAD + ty + 16u * i]), wv, acc[i]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let o = o0 + tx + 16u * j;
            if (t < p.tokens && o < p.bs) {
                let c = gb * p.bs + o; // = g * width + b * bs + o
                out[p.out_offset + t * p.out_stride + c] = acc[i][j] + bias_at(c);
            }
        }
    }
}
