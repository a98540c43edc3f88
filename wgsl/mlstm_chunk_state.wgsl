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
// Workgroup: 256 invocations own a 16 (dqk) x 64 (dv) tile of C in registers (4 each) for the
//   whole chunk range; k and v of the chunk are staged in workgroup memory (20.3 KiB at chunk 64).
// Grid: (ceil(dqk / 16), ceil(dv / 64), heads in the band); head = head0 + z.
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

var<workgroup> ks: array<array<f32, 16>, 64>; // [s][q]
var<workgroup> vs: array<array<f32, 64>, 64>; // [s][v]
var<workgroup> abar: array<f32, 64>;
var<workgroup> stat: array<f32, 2>; // max_s a_s, g

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = p.head0 + wid.z;
    let q0 = wid.x * 16u;
    let v0 = wid.y * 64u;
    let vl = lid % 64u;          // this invocation's column in the tile
    let qg = (lid / 64u) * 4u;   // its first of 4 rows
    let v = v0 + vl;
    let writes_n = wid.y == 0u && lid < 16u;
    let nq = q0 + lid;

    // Load the state before the first chunk of this range.
    var c: array<f32, 4>;
    for (var r = 0u; r < 4u; r++) {
        let q = q0 + qg + r;
        if (q < p.dqk && v < p.dv) {
            c[r] = cb[((p.c_begin * p.num_heads + h) * p.dqk + q) * p.dv + v];
        }
    }
    var n = 0.0;
    if (writes_n && nq < p.dqk) {
        n = nb[(p.c_begin * p.num_heads + h) * p.dqk + nq];
    }
    var m_prev = mb[p.c_begin * p.num_heads + h];

    for (var ci = p.c_begin; ci < p.c_end; ci++) {
        let t0 = ci * p.chunk;
        let len = min(p.chunk, p.tokens - t0);
        let gbase = h * p.tokens + t0;
        if (lid == 0u) {
            let g = gb[gbase + len - 1u];
            var amax = -3.4e38;
            for (var s = 0u; s < len; s++) {
                amax = max(amax, g - gb[gbase + s] + gi[gbase + s]);
            }
            stat[0] = amax;
            stat[1] = g;
        }
        // Stage k (16 columns) and v (64 columns) of the chunk's tokens.
        for (var e = lid; e < 64u * 16u; e += 256u) {
            let s = e / 16u;
            let q = q0 + e % 16u;
            var val = 0.0;
            if (s < len && q < p.dqk) {
                val = proj[(t0 + s) * p.proj_stride + p.k_col + h * p.dqk + q];
            }
            ks[s][e % 16u] = val;
        }
        for (var e = lid; e < 64u * 64u; e += 256u) {
            let s = e / 64u;
            let vv = v0 + e % 64u;
            var val = 0.0;
            if (s < len && vv < p.dv) {
                val = proj[(t0 + s) * p.proj_stride + p.v_col + h * p.dv + vv];
            }
            vs[s][e % 64u] = val;
        }
        workgroupBarrier();
        let g = stat[1];
        let m_new = max(g + m_prev, stat[0]);
        if (lid < len) {
            abar[lid] = exp(g - gb[gbase + lid] + gi[gbase + lid] - m_new);
        }
        workgroupBarrier();
        let gbar = exp(g + m_prev - m_new);
        for (var r = 0u; r < 4u; r++) {
            var acc = gbar * c[r];
            for (var s = 0u; s < len; s++) {
                acc = fma(abar[s] * ks[s][qg + r], vs[s][vl], acc);
            }
            c[r] = acc;
        }
        if (writes_n) {
            var acc = gbar * n;
            for (var s = 0u; s < len; s++) {
                acc = fma(abar[s], ks[s][lid], acc);
            }
            n = acc;
        }
        m_prev = m_new;

        // Publish the state before chunk ci + 1.
        let out = ci + 1u;
        for (var r = 0u; r < 4u; r++) {
            let q = q0 + qg + r;
            if (q < p.dqk && v < p.dv) {
                cb[((out * p.num_heads + h) * p.dqk + q) * p.dv + v] = c[r];
            }
        }
        if (writes_n && nq < p.dqk) {
            nb[(out * p.num_heads + h) * p.dqk + nq] = n;
        }
        if (wid.x == 0u && wid.y == 0u && lid == 0u) {
            mb[out * p.num_heads + h] = m_new;
        }
        workgroupBarrier();
    }
}
