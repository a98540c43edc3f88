// mlstm_chunk_state.wgsl — chunkwise mLSTM phase 1: the state at every chunk boundary
// (mlstm_kernels native chunkwise, reference/xlstm.md §2.4), sequential over chunks:
//   a_s = (b_L - b_s) + i~_s,  g = b_L,  m_k = max(g + m_{k-1}, max_s a_s)
//   C_k = exp(g + m_{k-1} - m_k) C_{k-1} + sum_s exp(a_s - m_k) k_s v_s^T,  n_k likewise with v = 1
// The last chunk of a segment may be shorter than `chunk` (L is then its real length).
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<f32> [tokens, proj_stride] holding k at
//   column k_col + h * dqk and v at v_col + h * dv (read); 2 gi, 3 gb: array<f32> [num_heads,
//   tokens] from mlstm_gates (read); 4 cb: array<f32> [chunks + 1, num_heads, dqk, dv];
//   5 nb: array<f32> [chunks + 1, num_heads, dqk]; 6 mb: array<f32> [chunks + 1, num_heads]
//   (read_write). Index c of the boundary buffers is the state before chunk c; this dispatch reads
//   index c_begin and writes c_begin + 1 ..= c_end.
// Workgroup: 256 invocations own a 64 (dqk) x 64 (dv) tile of C in registers for the whole chunk
//   range: invocation (tq = lid / 16, tv = lid % 16) holds rows 4tq..4tq+3 x columns 4tv..4tv+3
//   as four vec4. k and v of the chunk are staged in slices of 32 positions (16 KiB), so any chunk
//   length up to 256 (one decay factor per invocation) walks the same loop.
// Grid: (ceil(dqk / 64), ceil(dv / 64), heads in the band); head = head0 + z.
// Precision: f32.

struct Params {
    tokens: u32,
    chunk: u32,
    c_begin: u32,
    c_end: u32,
    head0: u32,
    num_heads: u32,
    dqk: u32,
    dv: u32,
    proj_stride: u32,
    k_col: u32,
    v_col: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> gi: array<f32>;
@group(0) @binding(3) var<storage, read> gb: array<f32>;
@group(0) @binding(4) var<storage, read_write> cb: array<f32>;
@group(0) @binding(5) var<storage, read_write> nb: array<f32>;
@group(0) @binding(6) var<storage, read_write> mb: array<f32>;

var<workgroup> ks: array<array<vec4<f32>, 16>, 32>; // [s][q / 4], weighted by exp(a_s - m_k)
var<workgroup> vs: array<array<vec4<f32>, 16>, 32>; // [s][v / 4]
var<workgroup> abar: array<f32, 256>; // max_s a_s first, then exp(a_s - m_k): chunk <= 256

fn c_index(c: u32, h: u32, q: u32, v: u32) -> u32 {
    return ((c * p.num_heads + h) * p.dqk + q) * p.dv + v;
}

fn load_c(c: u32, h: u32, q: u32, v0: u32) -> vec4<f32> {
    var r = vec4<f32>();
    if (q < p.dqk) {
        for (var j = 0u; j < 4u; j++) {
            if (v0 + j < p.dv) {
                r[j] = cb[c_index(c, h, q, v0 + j)];
            }
        }
    }
    return r;
}

fn store_c(c: u32, h: u32, q: u32, v0: u32, val: vec4<f32>) {
    if (q < p.dqk) {
        for (var j = 0u; j < 4u; j++) {
            if (v0 + j < p.dv) {
                cb[c_index(c, h, q, v0 + j)] = val[j];
            }
        }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = p.head0 + wid.z;
    let q0 = wid.x * 64u + (lid / 16u) * 4u; // this invocation's 4 rows
    let v0 = wid.y * 64u + (lid % 16u) * 4u; // and 4 columns
    let tq = lid / 16u;
    let tv = lid % 16u;
    let owns_n = wid.y == 0u && tv == 0u;

    // The state before the first chunk of this range.
    var c0 = load_c(p.c_begin, h, q0, v0);
    var c1 = load_c(p.c_begin, h, q0 + 1u, v0);
    var c2 = load_c(p.c_begin, h, q0 + 2u, v0);
    var c3 = load_c(p.c_begin, h, q0 + 3u, v0);
    var n = vec4<f32>();
    if (owns_n) {
        for (var j = 0u; j < 4u; j++) {
            if (q0 + j < p.dqk) {
                n[j] = nb[(p.c_begin * p.num_heads + h) * p.dqk + q0 + j];
            }
        }
    }
    var m_prev = mb[p.c_begin * p.num_heads + h];

    for (var ci = p.c_begin; ci < p.c_end; ci++) {
        let t0 = ci * p.chunk;
        let len = min(p.chunk, p.tokens - t0);
        let gbase = h * p.tokens + t0;
        // a_s for one position per invocation (chunk <= 256); their maximum by a tree in abar
        // (a serial loop over the chunk here was the kernel's critical path).
        let g = gb[gbase + len - 1u];
        var a = -3.4e38;
        if (lid < len) {
            a = g - gb[gbase + lid] + gi[gbase + lid];
        }
        abar[lid] = a;
        workgroupBarrier();
        for (var w = 128u; w > 0u; w /= 2u) {
            if (lid < w) {
                abar[lid] = max(abar[lid], abar[lid + w]);
            }
            workgroupBarrier();
        }
        let m_new = max(g + m_prev, abar[0]);
        // Every invocation has read the maximum before abar takes the decay factors.
        workgroupBarrier();
        if (lid < len) {
            abar[lid] = exp(a - m_new);
        }
        let gbar = exp(g + m_prev - m_new);
        c0 *= gbar;
        c1 *= gbar;
        c2 *= gbar;
        c3 *= gbar;
        n *= gbar;
        for (var sh = 0u; sh < len; sh += 32u) {
            workgroupBarrier();
            // Stage 32 positions of k (64 columns, scaled by abar) and v (64 columns).
            for (var e = lid; e < 32u * 64u; e += 256u) {
                let s = e / 64u;
                let col = e % 64u;
                var kv = 0.0;
                var vv = 0.0;
                if (sh + s < len) {
                    let row = (t0 + sh + s) * p.proj_stride;
                    if (wid.x * 64u + col < p.dqk) {
                        kv = proj[row + p.k_col + h * p.dqk + wid.x * 64u + col] * abar[sh + s];
                    }
                    if (wid.y * 64u + col < p.dv) {
                        vv = proj[row + p.v_col + h * p.dv + wid.y * 64u + col];
                    }
                }
                ks[s][col / 4u][col % 4u] = kv;
                vs[s][col / 4u][col % 4u] = vv;
            }
            workgroupBarrier();
            let count = min(32u, len - sh);
            // Four positions written out per iteration (naga emits loops without unroll hints).
            var s = 0u;
            for (; s + 4u <= count; s += 4u) {
                {
                    let k = ks[s][tq];
                    let v = vs[s][tv];
                    c0 = fma(vec4<f32>(k.x), v, c0);
                    c1 = fma(vec4<f32>(k.y), v, c1);
                    c2 = fma(vec4<f32>(k.z), v, c2);
                    c3 = fma(vec4<f32>(k.w), v, c3);
                    n += k;
                }
                {
                    let k = ks[s + 1u][tq];
                    let v = vs[s + 1u][tv];
                    c0 = fma(vec4<f32>(k.x), v, c0);
                    c1 = fma(vec4<f32>(k.y), v, c1);
                    c2 = fma(vec4<f32>(k.z), v, c2);
                    c3 = fma(vec4<f32>(k.w), v, c3);
                    n += k;
                }
                {
                    let k = ks[s + 2u][tq];
                    let v = vs[s + 2u][tv];
                    c0 = fma(vec4<f32>(k.x), v, c0);
                    c1 = fma(vec4<f32>(k.y), v, c1);
                    c2 = fma(vec4<f32>(k.z), v, c2);
                    c3 = fma(vec4<f32>(k.w), v, c3);
                    n += k;
                }
                {
                    let k = ks[s + 3u][tq];
                    let v = vs[s + 3u][tv];
                    c0 = fma(vec4<f32>(k.x), v, c0);
                    c1 = fma(vec4<f32>(k.y), v, c1);
                    c2 = fma(vec4<f32>(k.z), v, c2);
                    c3 = fma(vec4<f32>(k.w), v, c3);
                    n += k;
                }
            }
            for (; s < count; s++) {
                let k = ks[s][tq];
                let v = vs[s][tv];
                c0 = fma(vec4<f32>(k.x), v, c0);
                c1 = fma(vec4<f32>(k.y), v, c1);
                c2 = fma(vec4<f32>(k.z), v, c2);
                c3 = fma(vec4<f32>(k.w), v, c3);
                n += k;
            }
        }
        m_prev = m_new;

        // Publish the state before chunk ci + 1.
        let out = ci + 1u;
        store_c(out, h, q0, v0, c0);
        store_c(out, h, q0 + 1u, v0, c1);
        store_c(out, h, q0 + 2u, v0, c2);
        store_c(out, h, q0 + 3u, v0, c3);
        if (owns_n) {
            for (var j = 0u; j < 4u; j++) {
                if (q0 + j < p.dqk) {
                    nb[(out * p.num_heads + h) * p.dqk + q0 + j] = n[j];
                }
            }
        }
        if (wid.x == 0u && wid.y == 0u && lid == 0u) {
            mb[out * p.num_heads + h] = m_new;
        }
        workgroupBarrier();
    }
}
