// gemm_coop.wgsl — prefill projections on the GPU's matrix units (cooperative matrices):
//   y[t, n] (+)= sum_k x[t, k] * W[n, k]   (nn.Linear, y = x W^T)
//
// Bindings (group 0): 0 uniform Params; 1 x: array<vec4<f32>>, rows at x_offset + t * x_stride
//   elements (read); 2 w: one row-part of the matrix in any weight format (weight_formats.wgsl,
//   appended; f16 staged as stored, the other formats dequantized to f16 while staging) (read);
//   3 y: array<f32> rows at y_offset + t * y_stride (read_write).
// Workgroup: 256 invocations = 8 subgroups of 32 (the host uses this kernel only where the
//   subgroup size is 32). The workgroup computes a TILE (tokens) x TILE (rows) tile, TILE = 8 FRAG
//   (128 for 16x16 fragments, 64 for 8x8); subgroup s owns 4 x 2 fragments of FRAG x FRAG (64
//   tokens x 32 rows at 16) with f32 accumulators. K is staged through
//   workgroup memory in slices of 64, activations converted to f16 on the way, the next slice
//   fetched into registers while the current one is multiplied (rows padded by 8 halves against
//   bank conflicts). Tiles wholly inside the matrices with 4-aligned activation rows and K a
//   multiple of 64 (all 7B prefill projections) fetch without per-element checks. Whole tiles
//   without soft cap and with 16-byte aligned output rows (y_offset, y_stride multiples of 4,
//   y_aligned set) add the residual and store straight from the fragments; the others go through
//   a per-subgroup FRAG x FRAG scratch tile. Workgroup memory: 44 KiB (45,056 bytes).
// Grid: (ceil(tokens / TILE), ceil(n / TILE), 1): token tiles first.
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: f16 x f16 products accumulated in f32 (f16 and quantized weights; --dtype f32 uses
//   gemm.wgsl).
// Requires: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX with FRAG^3 f16 -> f32, and
//   45,056 bytes of workgroup memory.

enable f16;
enable wgpu_cooperative_matrix;

struct Params {
    tokens: u32,
    n: u32,
    k: u32,
    kp: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    y_aligned: u32, // y's binding offset is a multiple of 16 bytes
    _pad1: u32,
}

const LDS: u32 = 72u; // 64 + 8 padding halves per staged row

// The matrix-unit fragment: FRAG x FRAG (16: NVIDIA and AMD through Vulkan; 8: Apple's
// simdgroup matrices). The host sets FRAG and the three aliases together
// (ops::matmul::coop_fragment); everything below is written in fragments of FRAG.
const FRAG: u32 = 16u;
alias FragA = coop_mat16x16<f16, A>;
alias FragB = coop_mat16x16<f16, B>;
alias FragC = coop_mat16x16<f32, C>;
// The workgroup's tile edge: 8 x 8 fragments (8 subgroups of 4 x 2 fragments each).
const TILE: u32 = 8u * FRAG;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> xa: array<f16, 9216>; // [128 tokens][LDS]
var<workgroup> wb: array<f16, 9216>; // [128 rows][LDS]
var<workgroup> scratch: array<f32, 2048>; // [8 subgroups][FRAG x FRAG]

// Four activations x[t, k .. k + 4] (zero outside the matrix), k a multiple of 4.
fn load_x4(t: u32, k: u32) -> vec4<f32> {
    if (t >= p.tokens) {
        return vec4<f32>();
    }
    let e = p.x_offset + t * p.x_stride + k;
    if (e % 4u == 0u && k + 4u <= p.k) {
        return x[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = x[(e + j) / 4u][(e + j) % 4u];
        }
    }
    return v;
}

// Eight weights from element e of the part as four f16 pairs (e a multiple of 8): f16 weights
// as stored, the other formats dequantized (weight_formats.wgsl).
fn fetch_w8(e: u32) -> vec4<u32> {
    if (WEIGHT_FORMAT == 1u) {
        return w[e / 8u];
    }
    let m = weights8(e, p.n, p.kp);
    return vec4<u32>(pack2x16float(m[0].xy), pack2x16float(m[0].zw), pack2x16float(m[1].xy), pack2x16float(m[1].zw));
}

// Eight weights W[r, k .. k + 8] (zero outside the part), k a multiple of 8.
fn load_w8(r: u32, k: u32) -> vec4<u32> {
    if (r < p.n && k < p.kp) {
        return fetch_w8(r * p.kp + k);
    }
    return vec4<u32>();
}

fn put_x(r: u32, c: u32, v: vec4<f16>) {
    xa[r * LDS + c] = v.x;
    xa[r * LDS + c + 1u] = v.y;
    xa[r * LDS + c + 2u] = v.z;
    xa[r * LDS + c + 3u] = v.w;
}

// Eight f16 weights (four words) into row r of the tile at column c. Eight invocations share a
// row and a subgroup covers four rows 36 words apart, so storing the words in the same order
// would make the four rows' stores meet in one bank; each row starts at another word instead.
fn put_w(r: u32, c: u32, v: vec4<u32>) {
    for (var i = 0u; i < 4u; i++) {
        let j = (i + r) % 4u;
        let h = vec2<f16>(unpack2x16float(v[j]));
        wb[r * LDS + c + 2u * j] = h.x;
        wb[r * LDS + c + 2u * j + 1u] = h.y;
    }
}

fn store_frag(c: FragC, base: u32) {
    coopStoreT(c, &scratch[base], FRAG);
}

fn write_out(t: u32, r: u32, acc: f32) {
    if (t >= p.tokens || r >= p.n) {
        return;
    }
    let o = p.y_offset + t * p.y_stride + r;
    var v = acc;
    if (p.accumulate != 0u) {
        v += y[o];
    }
    if (p.soft_cap > 0.0) {
        v = p.soft_cap * tanh(v / p.soft_cap);
    }
    y[o] = v;
}

// Publishes one fragment at (t0, r0) through the subgroup's scratch tile.
fn emit(c: FragC, sg: u32, lane: u32, t0: u32, r0: u32) {
    let base = sg * FRAG * FRAG;
    store_frag(c, base);
    workgroupBarrier();
    for (var e = 0u; e < FRAG * FRAG / 32u; e++) {
        let idx = lane * (FRAG * FRAG / 32u) + e;
        write_out(t0 + idx / FRAG, r0 + idx % FRAG, scratch[base + idx]);
    }
    workgroupBarrier();
}

// The output fragment at element o, row-major with the output's row stride (16-byte
// aligned: checked by the caller).
fn load_y(o: u32, stride: u32) -> FragC {
    return coopLoadT<FragC>(&y[o], stride);
}

// (naga's SPIR-V writer needs the store's offset and stride as plain values: function arguments)
fn store_y(c: FragC, o: u32, stride: u32) {
    coopStoreT(c, &y[o], stride);
}

// Writes one fragment straight to y (whole tiles without soft cap): no scratch, no barriers.
fn emit_direct(c: FragC, t0: u32, r0: u32) {
    let stride = p.y_stride;
    let o = p.y_offset + t0 * stride + r0;
    var v = c;
    if (p.accumulate != 0u) {
        v = v + load_y(o, stride);
    }
    store_y(v, o, stride);
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // Token tiles vary fastest: the workgroups running together share weight tiles in L2.
    let tok0 = wid.x * TILE;
    let row0 = wid.y * TILE;
    let wm = (sg % 2u) * 4u * FRAG; // this subgroup's tokens within the tile
    let wn = (sg / 2u) * 2u * FRAG; // and its rows
    // The subgroup's block of y: fragment cij at tokens wm + i FRAG, rows wn + j FRAG. (Named
    // variables, not an array: drivers keep an array of fragments indexed in a loop in memory.)
    var c00 = FragC();
    var c01 = FragC();
    var c10 = FragC();
    var c11 = FragC();
    var c20 = FragC();
    var c21 = FragC();
    var c30 = FragC();
    var c31 = FragC();
    // Each invocation stages activation rows lr + 16 i (i < TILE / 16) at columns lc .. lc + 3,
    // and weight rows lrw + 32 i (i < TILE / 32) at columns lcw .. lcw + 7 (one 16-byte load of
    // f16); the rows past a 64-edge tile only where TILE is 128. The next slice is fetched into
    // registers while the current one is multiplied.
    let lr = lid / 16u;
    let lc = (lid % 16u) * 4u;
    let lrw = lid / 8u;
    let lcw = (lid % 8u) * 8u;
    var xr0 = load_x4(tok0 + lr + 0u, lc);
    var xr1 = load_x4(tok0 + lr + 16u, lc);
    var xr2 = load_x4(tok0 + lr + 32u, lc);
    var xr3 = load_x4(tok0 + lr + 48u, lc);
    var xr4 = vec4<f32>();
    var xr5 = vec4<f32>();
    var xr6 = vec4<f32>();
    var xr7 = vec4<f32>();
    var wr0 = load_w8(row0 + lrw + 0u, lcw);
    var wr1 = load_w8(row0 + lrw + 32u, lcw);
    var wr2 = vec4<u32>();
    var wr3 = vec4<u32>();
    if (TILE == 128u) {
        xr4 = load_x4(tok0 + lr + 64u, lc);
        xr5 = load_x4(tok0 + lr + 80u, lc);
        xr6 = load_x4(tok0 + lr + 96u, lc);
        xr7 = load_x4(tok0 + lr + 112u, lc);
        wr2 = load_w8(row0 + lrw + 64u, lcw);
        wr3 = load_w8(row0 + lrw + 96u, lcw);
    }
    // Interior tiles with aligned rows and whole K slices load without per-element checks
    // (non-short-circuit `&`: naga lowers `&&` through a local variable).
    let interior = (tok0 + TILE <= p.tokens) & (row0 + TILE <= p.n) & (p.x_offset % 4u == 0u)
        & (p.x_stride % 4u == 0u) & (p.k == p.kp) & (p.k % 64u == 0u);
    let xb = (p.x_offset + (tok0 + lr) * p.x_stride + lc) / 4u;
    let xs = 16u * p.x_stride / 4u;
    let wbase = (row0 + lrw) * p.kp + lcw;
    let ws = 32u * p.kp;
    for (var k0 = 0u; k0 < p.kp; k0 += 64u) {
        put_x(lr + 0u, lc, vec4<f16>(xr0));
        put_x(lr + 16u, lc, vec4<f16>(xr1));
        put_x(lr + 32u, lc, vec4<f16>(xr2));
        put_x(lr + 48u, lc, vec4<f16>(xr3));
        put_w(lrw + 0u, lcw, wr0);
        put_w(lrw + 32u, lcw, wr1);
        if (TILE == 128u) {
            put_x(lr + 64u, lc, vec4<f16>(xr4));
            put_x(lr + 80u, lc, vec4<f16>(xr5));
            put_x(lr + 96u, lc, vec4<f16>(xr6));
            put_x(lr + 112u, lc, vec4<f16>(xr7));
            put_w(lrw + 64u, lcw, wr2);
            put_w(lrw + 96u, lcw, wr3);
        }
        workgroupBarrier();
        let kn = k0 + 64u;
        if (kn < p.kp) {
            if (interior) {
                xr0 = x[xb + 0u * xs + kn / 4u];
                xr1 = x[xb + 1u * xs + kn / 4u];
                xr2 = x[xb + 2u * xs + kn / 4u];
                xr3 = x[xb + 3u * xs + kn / 4u];
                wr0 = fetch_w8(wbase + 0u * ws + kn);
                wr1 = fetch_w8(wbase + 1u * ws + kn);
                if (TILE == 128u) {
                    xr4 = x[xb + 4u * xs + kn / 4u];
                    xr5 = x[xb + 5u * xs + kn / 4u];
                    xr6 = x[xb + 6u * xs + kn / 4u];
                    xr7 = x[xb + 7u * xs + kn / 4u];
                    wr2 = fetch_w8(wbase + 2u * ws + kn);
                    wr3 = fetch_w8(wbase + 3u * ws + kn);
                }
            } else {
                xr0 = load_x4(tok0 + lr + 0u, kn + lc);
                xr1 = load_x4(tok0 + lr + 16u, kn + lc);
                xr2 = load_x4(tok0 + lr + 32u, kn + lc);
                xr3 = load_x4(tok0 + lr + 48u, kn + lc);
                wr0 = load_w8(row0 + lrw + 0u, kn + lcw);
                wr1 = load_w8(row0 + lrw + 32u, kn + lcw);
                if (TILE == 128u) {
                    xr4 = load_x4(tok0 + lr + 64u, kn + lc);
                    xr5 = load_x4(tok0 + lr + 80u, kn + lc);
                    xr6 = load_x4(tok0 + lr + 96u, kn + lc);
                    xr7 = load_x4(tok0 + lr + 112u, kn + lc);
                    wr2 = load_w8(row0 + lrw + 64u, kn + lcw);
                    wr3 = load_w8(row0 + lrw + 96u, kn + lcw);
                }
            }
        }
        // The slice in FRAG-deep steps, four written out per iteration (one iteration at 16).
        for (var k4 = 0u; k4 < 64u; k4 += 4u * FRAG) {
            {
                let o = k4;
                let a0 = coopLoadT<FragA>(&xa[wm * LDS + o], LDS);
                let a1 = coopLoadT<FragA>(&xa[(wm + FRAG) * LDS + o], LDS);
                let a2 = coopLoadT<FragA>(&xa[(wm + 2u * FRAG) * LDS + o], LDS);
                let a3 = coopLoadT<FragA>(&xa[(wm + 3u * FRAG) * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&wb[wn * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&wb[(wn + FRAG) * LDS + o], LDS);
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                c20 = coopMultiplyAdd(a2, b0, c20);
                c21 = coopMultiplyAdd(a2, b1, c21);
                c30 = coopMultiplyAdd(a3, b0, c30);
                c31 = coopMultiplyAdd(a3, b1, c31);
            }
            {
                let o = k4 + 1u * FRAG;
                let a0 = coopLoadT<FragA>(&xa[wm * LDS + o], LDS);
                let a1 = coopLoadT<FragA>(&xa[(wm + FRAG) * LDS + o], LDS);
                let a2 = coopLoadT<FragA>(&xa[(wm + 2u * FRAG) * LDS + o], LDS);
                let a3 = coopLoadT<FragA>(&xa[(wm + 3u * FRAG) * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&wb[wn * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&wb[(wn + FRAG) * LDS + o], LDS);
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                c20 = coopMultiplyAdd(a2, b0, c20);
                c21 = coopMultiplyAdd(a2, b1, c21);
                c30 = coopMultiplyAdd(a3, b0, c30);
                c31 = coopMultiplyAdd(a3, b1, c31);
            }
            {
                let o = k4 + 2u * FRAG;
                let a0 = coopLoadT<FragA>(&xa[wm * LDS + o], LDS);
                let a1 = coopLoadT<FragA>(&xa[(wm + FRAG) * LDS + o], LDS);
                let a2 = coopLoadT<FragA>(&xa[(wm + 2u * FRAG) * LDS + o], LDS);
                let a3 = coopLoadT<FragA>(&xa[(wm + 3u * FRAG) * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&wb[wn * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&wb[(wn + FRAG) * LDS + o], LDS);
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                c20 = coopMultiplyAdd(a2, b0, c20);
                c21 = coopMultiplyAdd(a2, b1, c21);
                c30 = coopMultiplyAdd(a3, b0, c30);
                c31 = coopMultiplyAdd(a3, b1, c31);
            }
            {
                let o = k4 + 3u * FRAG;
                let a0 = coopLoadT<FragA>(&xa[wm * LDS + o], LDS);
                let a1 = coopLoadT<FragA>(&xa[(wm + FRAG) * LDS + o], LDS);
                let a2 = coopLoadT<FragA>(&xa[(wm + 2u * FRAG) * LDS + o], LDS);
                let a3 = coopLoadT<FragA>(&xa[(wm + 3u * FRAG) * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&wb[wn * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&wb[(wn + FRAG) * LDS + o], LDS);
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                c20 = coopMultiplyAdd(a2, b0, c20);
                c21 = coopMultiplyAdd(a2, b1, c21);
                c30 = coopMultiplyAdd(a3, b0, c30);
                c31 = coopMultiplyAdd(a3, b1, c31);
            }
        }
        workgroupBarrier();
    }
    let t = tok0 + wm;
    let r = row0 + wn;
    // Whole tiles without soft cap and with 16-byte aligned output rows store fragments directly.
    let whole = (p.soft_cap <= 0.0) & (p.y_aligned != 0u) & (tok0 + TILE <= p.tokens)
        & (row0 + TILE <= p.n) & (p.y_offset % 4u == 0u) & (p.y_stride % 4u == 0u);
    let f = FRAG;
    if (whole) {
        emit_direct(c00, t, r);
        emit_direct(c01, t, r + f);
        emit_direct(c10, t + f, r);
        emit_direct(c11, t + f, r + f);
        emit_direct(c20, t + 2u * f, r);
        emit_direct(c21, t + 2u * f, r + f);
        emit_direct(c30, t + 3u * f, r);
        emit_direct(c31, t + 3u * f, r + f);
        return;
    }
    emit(c00, sg, lane, t, r);
    emit(c01, sg, lane, t, r + f);
    emit(c10, sg, lane, t + f, r);
    emit(c11, sg, lane, t + f, r + f);
    emit(c20, sg, lane, t + 2u * f, r);
    emit(c21, sg, lane, t + 2u * f, r + f);
    emit(c30, sg, lane, t + 3u * f, r);
    emit(c31, sg, lane, t + 3u * f, r + f);
}
