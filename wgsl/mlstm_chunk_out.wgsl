// mlstm_chunk_out.wgsl — chunkwise mLSTM phase 2: every chunk's outputs from the state at its
// start plus the causal intra-chunk part (mlstm_kernels native chunkwise, reference/xlstm.md §2.4):
//   logD[s,j] = b_s - b_j + i~_j (j <= s),  m[s] = max(b_s + m_prev, max_j logD[s,j])
//   num[s] = exp(b_s + m_prev - m[s]) q^_s^T C_prev + sum_j (q^_s . k_j) exp(logD[s,j] - m[s]) v_j
//   den[s] = exp(b_s + m_prev - m[s]) q^_s . n_prev + sum_j (q^_s . k_j) exp(logD[s,j] - m[s])
//   h[s]   = num[s] / (max(|den[s]|, exp(-m[s])) + eps),   q^ = q / sqrt(dqk)
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<f32> [tokens, proj_stride] with q, k, v at
//   q_col/k_col/v_col + head offset (read); 2 gi, 3 gb: array<f32> [num_heads, tokens] (read);
//   4 cb, 5 nb, 6 mb: boundary states from mlstm_chunk_state (read);
//   7 hout: array<f32> [tokens, num_heads * dv] (read_write).
// Workgroup: 256 invocations for one (chunk, head, 64-wide dv tile); invocation (s = lid / 4,
//   quarter = lid % 4) owns 16 columns of row s. q, k and C are staged in 16-wide dqk slices.
//   Workgroup memory: 29.3 KiB (chunk <= 64).
// Grid: (ceil(dv / 64), chunks in the tile, heads in the band); chunk = c_begin + y, head = head0 + z.
// Precision: f32.

struct Params {
    tokens: u32,
    chunk: u32,
    c_begin: u32,
    head0: u32,
    num_heads: u32,
    dqk: u32,
    dv: u32,
    proj_stride: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    out_stride: u32,
    scale: f32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> gi: array<f32>;
@group(0) @binding(3) var<storage, read> gb: array<f32>;
@group(0) @binding(4) var<storage, read> cb: array<f32>;
@group(0) @binding(5) var<storage, read> nb: array<f32>;
@group(0) @binding(6) var<storage, read> mb: array<f32>;
@group(0) @binding(7) var<storage, read_write> hout: array<f32>;

var<workgroup> qs: array<array<f32, 16>, 64>;  // [s][d] scaled q slice
var<workgroup> ks: array<array<f32, 16>, 64>;  // [j][d] k slice
var<workgroup> cs: array<array<f32, 64>, 16>;  // [d][v] C_prev slice
var<workgroup> mm: array<array<f32, 64>, 64>;  // [s][j] decay-weighted scores
var<workgroup> rowred: array<f32, 256>;        // per-row partial max / sums
var<workgroup> qn: array<f32, 64>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = p.head0 + wid.z;
    let ci = p.c_begin + wid.y;
    let v0 = wid.x * 64u;
    let t0 = ci * p.chunk;
    let len = min(p.chunk, p.tokens - t0);
    let s = lid / 4u;
    let quarter = lid % 4u;
    let j0 = quarter * 16u;      // this invocation's 16 key positions (scores)
    let vq = quarter * 16u;      // and its 16 value columns within the tile
    let cbase = (ci * p.num_heads + h) * p.dqk;

    var sc: array<f32, 16>;      // q^_s . k_j
    var inter: array<f32, 16>;   // q^_s^T C_prev
    var qdotn = 0.0;
    for (var d0 = 0u; d0 < p.dqk; d0 += 16u) {
        for (var e = lid; e < 64u * 16u; e += 256u) {
            let r = e / 16u;
            let d = d0 + e % 16u;
            var qv = 0.0;
            var kv = 0.0;
            if (r < len && d < p.dqk) {
                let row = (t0 + r) * p.proj_stride + h * p.dqk + d;
                qv = proj[row + p.q_col] * p.scale;
                kv = proj[row + p.k_col];
            }
            qs[r][e % 16u] = qv;
            ks[r][e % 16u] = kv;
        }
        for (var e = lid; e < 16u * 64u; e += 256u) {
            let d = d0 + e / 64u;
            let vv = v0 + e % 64u;
            var cv = 0.0;
            if (d < p.dqk && vv < p.dv) {
                cv = cb[(cbase + d) * p.dv + vv];
            }
            cs[e / 64u][e % 64u] = cv;
        }
        workgroupBarrier();
        for (var d = 0u; d < 16u; d++) {
            let qv = qs[s][d];
            for (var j = 0u; j < 16u; j++) {
                sc[j] = fma(qv, ks[j0 + j][d], sc[j]);
                inter[j] = fma(qv, cs[d][vq + j], inter[j]);
            }
        }
        if (quarter == 0u) {
            for (var d = 0u; d < 16u; d++) {
                if (d0 + d < p.dqk) {
                    qdotn = fma(qs[s][d], nb[cbase + d0 + d], qdotn);
                }
            }
        }
        workgroupBarrier();
    }

    // Row maxima of the log decay matrix over this invocation's 16 keys, then over the row.
    let gbase = h * p.tokens + t0;
    var bs = 0.0;
    if (s < len) {
        bs = gb[gbase + s];
    }
    var lmax = -3.4e38;
    for (var j = 0u; j < 16u; j++) {
        let jj = j0 + j;
        if (s < len && jj <= s) {
            lmax = max(lmax, bs - gb[gbase + jj] + gi[gbase + jj]);
        }
    }
    rowred[lid] = lmax;
    if (quarter == 0u) {
        qn[s] = qdotn;
    }
    workgroupBarrier();
    let m_intra = max(max(rowred[s * 4u], rowred[s * 4u + 1u]), max(rowred[s * 4u + 2u], rowred[s * 4u + 3u]));
    let m_inter = bs + mb[ci * p.num_heads + h];
    let m = max(m_inter, m_intra);
    workgroupBarrier();

    var rsum = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let jj = j0 + j;
        var val = 0.0;
        if (s < len && jj <= s) {
            val = sc[j] * exp(bs - gb[gbase + jj] + gi[gbase + jj] - m);
        }
        mm[s][jj] = val;
        rsum += val;
    }
    rowred[lid] = rsum;
    workgroupBarrier();
    if (s >= len) {
        return;
    }
    let beta = exp(m_inter - m);
    let den = beta * qn[s] + rowred[s * 4u] + rowred[s * 4u + 1u] + rowred[s * 4u + 2u] + rowred[s * 4u + 3u];
    let inv = 1.0 / (max(abs(den), exp(-m)) + p.eps);
    for (var j = 0u; j < 16u; j++) {
        let vv = v0 + vq + j;
        if (vv >= p.dv) {
            break;
        }
        var num = beta * inter[j];
        for (var jj = 0u; jj <= s; jj++) {
            num = fma(mm[s][jj], proj[(t0 + jj) * p.proj_stride + p.v_col + h * p.dv + vv], num);
        }
        hout[(t0 + s) * p.out_stride + h * p.dv + vv] = num * inv;
    }
}
