// gemm_8x8.wgsl — prefill projections on adapters without matrix units, for long segments:
//   y[t, y_col + n] (+)= sum_k x[t, k] * W[n, k]  (nn.Linear, y = x W^T), as gemm.wgsl.
//
// Bindings, parameters and epilogue (gemm_store.wgsl, appended): those of gemm.wgsl (the host's GemmParams), except that x is
//   bound as array<vec4<f32>> (read in 16-byte loads where its rows are aligned).
// Workgroup: 256 invocations computing a 128 (tokens) x 128 (rows) tile, 8 x 8 outputs per
//   invocation (tokens ty*4 .. +3 and 64 + ty*4 .. +3, rows tx*4 .. +3 and 64 + tx*4 .. +3, so
//   the four workgroup-memory vector loads of a step fall in distinct banks); per step of k that
//   is 64 FMAs for four 16-byte loads (gemm.wgsl's 4 x 4: 16 for two). K is staged through
//   workgroup memory in slices of 16 (16 KiB); the next slice is read into registers while the
//   current one is multiplied, whose 16 steps are written out.
// Grid: (ceil(n / 128), ceil(tokens / 128), 1).
// Precision: weights in any format (WEIGHT_FORMAT), dequantized to f32; activations and
//   accumulation f32 (the same products and order within each output as gemm.wgsl, k ascending).

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
    y_aligned: u32, // read by gemm_coop.wgsl only (the GEMMs share the host's GemmParams)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Four consecutive tokens (xs) or rows (ws) per vector: [k][token / 4], [k][row / 4].
var<workgroup> xs: array<array<vec4<f32>, 32>, 16>;
var<workgroup> ws: array<array<vec4<f32>, 32>, 16>;

fn load_x1(e: u32, k: u32) -> f32 {
    if (k < p.k) {
        return x[e / 4u][e % 4u];
    }
    return 0.0;
}

// Eight activations x[t, k .. k + 8] (zero outside the input), k a multiple of 8: two 16-byte
// loads where the row is 16-byte aligned and the eight lie inside it, else element by element
// (written out: a dynamically indexed local would live in slow local memory).
fn load_x8(t: u32, k: u32) -> mat2x4<f32> {
    if (t >= p.tokens) {
        return mat2x4<f32>();
    }
    let e = p.x_offset + t * p.x_stride + k;
    // `&`, not `&&`: naga lowers a short-circuit through a local variable and a branch.
    if ((e % 4u == 0u) & (k + 8u <= p.k)) {
        return mat2x4<f32>(x[e / 4u], x[e / 4u + 1u]);
    }
    return mat2x4<f32>(
        vec4<f32>(load_x1(e, k), load_x1(e + 1u, k + 1u), load_x1(e + 2u, k + 2u), load_x1(e + 3u, k + 3u)),
        vec4<f32>(load_x1(e + 4u, k + 4u), load_x1(e + 5u, k + 5u), load_x1(e + 6u, k + 6u), load_x1(e + 7u, k + 7u)));
}

// Eight weights W[r, k .. k + 8] (zero outside the part), dequantized.
fn load_w8(r: u32, k: u32) -> mat2x4<f32> {
    if (r < p.n && k < p.kp) {
        return weights8(r * p.kp + k, p.n, p.kp);
    }
    return mat2x4<f32>();
}

// Stages one token's (or row's) eight values at k .. k + 8 of the slice, transposed.
fn put_x(i: u32, kk: u32, m: mat2x4<f32>) {
    let q = i / 4u;
    let c = i % 4u;
    xs[kk][q][c] = m[0].x;
    xs[kk + 1u][q][c] = m[0].y;
    xs[kk + 2u][q][c] = m[0].z;
    xs[kk + 3u][q][c] = m[0].w;
    xs[kk + 4u][q][c] = m[1].x;
    xs[kk + 5u][q][c] = m[1].y;
    xs[kk + 6u][q][c] = m[1].z;
    xs[kk + 7u][q][c] = m[1].w;
}

fn put_w(i: u32, kk: u32, m: mat2x4<f32>) {
    let q = i / 4u;
    let c = i % 4u;
    ws[kk][q][c] = m[0].x;
    ws[kk + 1u][q][c] = m[0].y;
    ws[kk + 2u][q][c] = m[0].z;
    ws[kk + 3u][q][c] = m[0].w;
    ws[kk + 4u][q][c] = m[1].x;
    ws[kk + 5u][q][c] = m[1].y;
    ws[kk + 6u][q][c] = m[1].z;
    ws[kk + 7u][q][c] = m[1].w;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * 128u;
    let tok0 = wid.y * 128u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Each invocation stages eight k values of one token and of one row.
    let li = lid / 2u;
    let lk = (lid % 2u) * 8u;
    var xr = load_x8(tok0 + li, lk);
    var wr = load_w8(row0 + li, lk);

    // acc_<token><row half>: tokens ty*4 + i (i < 4) and 64 + ty*4 + i (i >= 4).
    var a00 = vec4<f32>(); var a01 = vec4<f32>();
    var a10 = vec4<f32>(); var a11 = vec4<f32>();
    var a20 = vec4<f32>(); var a21 = vec4<f32>();
    var a30 = vec4<f32>(); var a31 = vec4<f32>();
    var a40 = vec4<f32>(); var a41 = vec4<f32>();
    var a50 = vec4<f32>(); var a51 = vec4<f32>();
    var a60 = vec4<f32>(); var a61 = vec4<f32>();
    var a70 = vec4<f32>(); var a71 = vec4<f32>();
    for (var k0 = 0u; k0 < p.kp; k0 += 16u) {
        put_x(li, lk, xr);
        put_w(li, lk, wr);
        workgroupBarrier();
        let kn = k0 + 16u;
        if (kn < p.kp) {
            xr = load_x8(tok0 + li, kn + lk);
            wr = load_w8(row0 + li, kn + lk);
        }
        // The slice's 16 steps of k, written out: naga emits loops without unroll hints, and as a
        // loop this ran at 32.1 TFLOP/s on the H200, written out at 38.2 (BENCHMARKS.md 2026-12-04).
        {
            let x0 = xs[0u][ty];
            let x1 = xs[0u][16u + ty];
            let w0 = ws[0u][tx];
            let w1 = ws[0u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[1u][ty];
            let x1 = xs[1u][16u + ty];
            let w0 = ws[1u][tx];
            let w1 = ws[1u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[2u][ty];
            let x1 = xs[2u][16u + ty];
            let w0 = ws[2u][tx];
            let w1 = ws[2u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[3u][ty];
            let x1 = xs[3u][16u + ty];
            let w0 = ws[3u][tx];
            let w1 = ws[3u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[4u][ty];
            let x1 = xs[4u][16u + ty];
            let w0 = ws[4u][tx];
            let w1 = ws[4u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[5u][ty];
            let x1 = xs[5u][16u + ty];
            let w0 = ws[5u][tx];
            let w1 = ws[5u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[6u][ty];
            let x1 = xs[6u][16u + ty];
            let w0 = ws[6u][tx];
            let w1 = ws[6u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[7u][ty];
            let x1 = xs[7u][16u + ty];
            let w0 = ws[7u][tx];
            let w1 = ws[7u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[8u][ty];
            let x1 = xs[8u][16u + ty];
            let w0 = ws[8u][tx];
            let w1 = ws[8u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[9u][ty];
            let x1 = xs[9u][16u + ty];
            let w0 = ws[9u][tx];
            let w1 = ws[9u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[10u][ty];
            let x1 = xs[10u][16u + ty];
            let w0 = ws[10u][tx];
            let w1 = ws[10u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[11u][ty];
            let x1 = xs[11u][16u + ty];
            let w0 = ws[11u][tx];
            let w1 = ws[11u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[12u][ty];
            let x1 = xs[12u][16u + ty];
            let w0 = ws[12u][tx];
            let w1 = ws[12u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[13u][ty];
            let x1 = xs[13u][16u + ty];
            let w0 = ws[13u][tx];
            let w1 = ws[13u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[14u][ty];
            let x1 = xs[14u][16u + ty];
            let w0 = ws[14u][tx];
            let w1 = ws[14u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        {
            let x0 = xs[15u][ty];
            let x1 = xs[15u][16u + ty];
            let w0 = ws[15u][tx];
            let w1 = ws[15u][16u + tx];
            a00 = fma(vec4<f32>(x0.x), w0, a00); a01 = fma(vec4<f32>(x0.x), w1, a01);
            a10 = fma(vec4<f32>(x0.y), w0, a10); a11 = fma(vec4<f32>(x0.y), w1, a11);
            a20 = fma(vec4<f32>(x0.z), w0, a20); a21 = fma(vec4<f32>(x0.z), w1, a21);
            a30 = fma(vec4<f32>(x0.w), w0, a30); a31 = fma(vec4<f32>(x0.w), w1, a31);
            a40 = fma(vec4<f32>(x1.x), w0, a40); a41 = fma(vec4<f32>(x1.x), w1, a41);
            a50 = fma(vec4<f32>(x1.y), w0, a50); a51 = fma(vec4<f32>(x1.y), w1, a51);
            a60 = fma(vec4<f32>(x1.z), w0, a60); a61 = fma(vec4<f32>(x1.z), w1, a61);
            a70 = fma(vec4<f32>(x1.w), w0, a70); a71 = fma(vec4<f32>(x1.w), w1, a71);
        }
        workgroupBarrier();
    }
    let t0 = tok0 + ty * 4u;
    let t1 = tok0 + 64u + ty * 4u;
    let r0 = row0 + tx * 4u;
    let r1 = row0 + 64u + tx * 4u;
    store_row(t0, r0, a00); store_row(t0, r1, a01);
    store_row(t0 + 1u, r0, a10); store_row(t0 + 1u, r1, a11);
    store_row(t0 + 2u, r0, a20); store_row(t0 + 2u, r1, a21);
    store_row(t0 + 3u, r0, a30); store_row(t0 + 3u, r1, a31);
    store_row(t1, r0, a40); store_row(t1, r1, a41);
    store_row(t1 + 1u, r0, a50); store_row(t1 + 1u, r1, a51);
    store_row(t1 + 2u, r0, a60); store_row(t1 + 2u, r1, a61);
    store_row(t1 + 3u, r0, a70); store_row(t1 + 3u, r1, a71);
}
