// mlstm_chunk_out.wgsl — chunkwise mLSTM phase 2: every chunk's outputs from the state at its
// start plus the causal intra-chunk part (mlstm_kernels native chunkwise, reference/xlstm.md §2.4):
//   logD[s,j] = b_s - b_j + i~_j (j <= s),  m[s] = max(b_s + m_prev, max_j logD[s,j])
//   num[s] = exp(b_s + m_prev - m[s]) q^_s^T C_prev + sum_j (q^_s . k_j) exp(logD[s,j] - m[s]) v_j
//   den[s] = exp(b_s + m_prev - m[s]) q^_s . n_prev + sum_j (q^_s . k_j) exp(logD[s,j] - m[s])
//   h[s]   = num[s] / (max(|den[s]|, exp(-m[s])) + eps),   q^ = q / sqrt(dqk)
// With g_j = i~_j - b_j and P[s] = max_{j<=s} g_j (a prefix maximum), m[s] = b_s + max(m_prev, P[s]),
// exp(logD[s,j] - m[s]) = exp(g_j - max(m_prev, P[s])) and the inter-chunk factor is
// exp(m_prev - max(m_prev, P[s])).
//
// A chunk of up to 256 positions is cut into blocks of 64 rows (s-blocks): a workgroup computes
// one s-block sb and walks the 64-position key blocks jb = 0 ..= sb (the causal ones). The
// stabiliser of a row needs the prefix maximum over all earlier key positions, so it is computed
// first (a workgroup max over the earlier blocks' g, then the prefix inside the s-block) and the
// decayed scores of every key block are final when formed: no rescaling across key blocks.
// Q^ C_prev and q^ . n_prev are formed with the first key block. A chunk of <= 64 is one s-block
// and one key block: the same work as a kernel for 64 x 64 blocks only.
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<f32> [tokens, proj_stride] with q, k, v at
//   q_col/k_col/v_col + head offset (read); 2 gi, 3 gb: array<f32> [num_heads, tokens] (read);
//   4 cb, 5 nb, 6 mb: boundary states from mlstm_chunk_state (read);
//   7 hout: array<f32> [tokens, num_heads * dv] (read_write).
// Workgroup: 256 invocations for one (chunk, s-block, head, 64-wide dv tile); invocation
//   (ti = lid / 16, tj = lid % 16) owns rows 4ti..4ti+3 and columns 4tj..4tj+3 of the 64 x 64
//   score block and of the 64 x 64 output tile, accumulated in vec4 registers. q, k and C are
//   staged in 8-wide dqk slices, v in halves of 32 positions. Workgroup memory: 25 KiB (any chunk).
// Grid: (ceil(dv / 64), chunks in the tile x ceil(chunk / 64), heads in the band);
//   chunk = c_begin + y / ceil(chunk / 64), s-block = y % ceil(chunk / 64), head = head0 + z.
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

// Phase A: [0, 128) q^T slice [8 d][16 vec4 of rows], [128, 256) k^T slice [8 d][16 vec4 of
// positions], [256, 384) C slice [8 d][16 vec4 of columns]. Phase C: v half [32 j][16 vec4].
var<workgroup> stage: array<vec4<f32>, 512>;
var<workgroup> mm: array<array<vec4<f32>, 16>, 64>; // [s][j / 4] decay-weighted scores
var<workgroup> qn: array<f32, 64>;                  // q^_s . n_prev
var<workgroup> gmax: array<f32, 64>;                // max(m_prev, P[s])
var<workgroup> gj: array<f32, 64>;                  // g_j

fn stage_set(i: u32, c: u32, v: f32) {
    stage[i][c] = v;
}

// The four lanes of the score block row r0 + i (i < 4) masked to the causal part: key positions
// j (chunk-relative, four from jpos) up to the row's position spos, rows inside the chunk.
fn decayed(sv: vec4<f32>, gv: vec4<f32>, gm: f32, jpos: u32, spos: u32, row_ok: bool) -> vec4<f32> {
    let jidx = vec4<u32>(jpos, jpos + 1u, jpos + 2u, jpos + 3u);
    return select(vec4<f32>(), sv * exp(gv - gm), jidx <= vec4<u32>(spos) & vec4<bool>(row_ok));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = p.head0 + wid.z;
    let blocks = (p.chunk + 63u) / 64u; // s-blocks per chunk
    let ci = p.c_begin + wid.y / blocks;
    let sb = wid.y % blocks;
    let v0 = wid.x * 64u;
    let t0 = ci * p.chunk;
    let len = min(p.chunk, p.tokens - t0);
    let sfirst = sb * 64u; // chunk-relative position of this s-block's first row
    if (sfirst >= len) {
        return; // an s-block past the end of a short last chunk
    }
    let slen = min(64u, len - sfirst);
    let ti = lid / 16u;
    let tj = lid % 16u;
    let cbase = (ci * p.num_heads + h) * p.dqk;
    let m_prev = mb[ci * p.num_heads + h];
    let gbase = h * p.tokens + t0;

    // max(m_prev, maximum of g over the earlier s-blocks) (at most 192 positions: one per
    // invocation), reduced in the staging area.
    var gfloor = m_prev;
    if (sb > 0u) {
        var g = -3.4e38;
        if (lid < sfirst) {
            g = gi[gbase + lid] - gb[gbase + lid];
        }
        stage_set(lid / 4u, lid % 4u, g);
        workgroupBarrier();
        for (var w = 128u; w > 0u; w /= 2u) {
            if (lid < w) {
                stage_set(lid / 4u, lid % 4u, max(stage[lid / 4u][lid % 4u], stage[(lid + w) / 4u][(lid + w) % 4u]));
            }
            workgroupBarrier();
        }
        gfloor = max(m_prev, stage[0][0]);
        workgroupBarrier();
    }

    // Gate statistics of the s-block: g_s and the stabiliser gmax[s] = max(gfloor, prefix max),
    // by one invocation (at most 64 steps). gj holds the s-block's g for the diagonal key block.
    if (lid < 64u) {
        var g = -3.4e38;
        if (lid < slen) {
            g = gi[gbase + sfirst + lid] - gb[gbase + sfirst + lid];
        }
        gj[lid] = g;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var run = gfloor;
        for (var s = 0u; s < slen; s++) {
            run = max(run, gj[s]);
            gmax[s] = run;
        }
    }
    workgroupBarrier();

    let r0 = ti * 4u;
    let j0 = tj * 4u;
    // The inter-chunk part Q^ C_prev (with the first key block), the intra-chunk part M V and the
    // row sums of M, over the key blocks.
    var h0 = vec4<f32>();
    var h1 = vec4<f32>();
    var h2 = vec4<f32>();
    var h3 = vec4<f32>();
    var qdotn = 0.0;
    var n0 = vec4<f32>();
    var n1 = vec4<f32>();
    var n2 = vec4<f32>();
    var n3 = vec4<f32>();
    var rs = vec4<f32>();
    for (var jb = 0u; jb <= sb; jb++) {
        let jfirst = jb * 64u;
        let jlen = min(64u, len - jfirst);
        // Scores S = Q^ K^T of the block (rows s, columns j).
        var s0 = vec4<f32>();
        var s1 = vec4<f32>();
        var s2 = vec4<f32>();
        var s3 = vec4<f32>();
        if (jb == 0u) {
            for (var d0 = 0u; d0 < p.dqk; d0 += 8u) {
                // 8 x 64 of q and of k (2 + 2 per invocation), 8 x 64 of C (2 per invocation).
                for (var e = lid; e < 512u; e += 256u) {
                    let d = e / 64u;
                    let r = e % 64u;
                    var qv = 0.0;
                    var kv = 0.0;
                    if (d0 + d < p.dqk) {
                        let col = h * p.dqk + d0 + d;
                        if (r < slen) {
                            qv = proj[(t0 + sfirst + r) * p.proj_stride + col + p.q_col] * p.scale;
                        }
                        if (r < jlen) {
                            kv = proj[(t0 + r) * p.proj_stride + col + p.k_col];
                        }
                    }
                    stage_set(d * 16u + r / 4u, r % 4u, qv);
                    stage_set(128u + d * 16u + r / 4u, r % 4u, kv);
                    var cv = 0.0;
                    if (d0 + d < p.dqk && v0 + r < p.dv) {
                        cv = cb[(cbase + d0 + d) * p.dv + v0 + r];
                    }
                    stage_set(256u + d * 16u + r / 4u, r % 4u, cv);
                }
                workgroupBarrier();
                // The slice's 8 steps of d, written out (naga emits loops without unroll hints): q^
                // of rows 4ti..4ti+3, k of positions 4tj..4tj+3 and C_prev[d, columns 4tj..4tj+3].
                {
                    let a = stage[0u + ti];
                    let bk = stage[128u + tj];
                    let bc = stage[256u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[16u + ti];
                    let bk = stage[144u + tj];
                    let bc = stage[272u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[32u + ti];
                    let bk = stage[160u + tj];
                    let bc = stage[288u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[48u + ti];
                    let bk = stage[176u + tj];
                    let bc = stage[304u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[64u + ti];
                    let bk = stage[192u + tj];
                    let bc = stage[320u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[80u + ti];
                    let bk = stage[208u + tj];
                    let bc = stage[336u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[96u + ti];
                    let bk = stage[224u + tj];
                    let bc = stage[352u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                {
                    let a = stage[112u + ti];
                    let bk = stage[240u + tj];
                    let bc = stage[368u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                    h0 = fma(vec4<f32>(a.x), bc, h0);
                    h1 = fma(vec4<f32>(a.y), bc, h1);
                    h2 = fma(vec4<f32>(a.z), bc, h2);
                    h3 = fma(vec4<f32>(a.w), bc, h3);
                }
                if (lid < 64u) {
                    for (var d = 0u; d < 8u; d++) {
                        if (d0 + d < p.dqk) {
                            qdotn = fma(stage[d * 16u + lid / 4u][lid % 4u], nb[cbase + d0 + d], qdotn);
                        }
                    }
                }
                workgroupBarrier();
            }
            if (lid < 64u) {
                qn[lid] = qdotn;
            }
        } else {
            // A key block below the diagonal: the scores only.
            for (var d0 = 0u; d0 < p.dqk; d0 += 8u) {
                for (var e = lid; e < 512u; e += 256u) {
                    let d = e / 64u;
                    let r = e % 64u;
                    var qv = 0.0;
                    var kv = 0.0;
                    if (d0 + d < p.dqk) {
                        let col = h * p.dqk + d0 + d;
                        if (r < slen) {
                            qv = proj[(t0 + sfirst + r) * p.proj_stride + col + p.q_col] * p.scale;
                        }
                        if (r < jlen) {
                            kv = proj[(t0 + jfirst + r) * p.proj_stride + col + p.k_col];
                        }
                    }
                    stage_set(d * 16u + r / 4u, r % 4u, qv);
                    stage_set(128u + d * 16u + r / 4u, r % 4u, kv);
                }
                workgroupBarrier();
                // The 8 steps of d, written out.
                {
                    let a = stage[0u + ti];
                    let bk = stage[128u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[16u + ti];
                    let bk = stage[144u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[32u + ti];
                    let bk = stage[160u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[48u + ti];
                    let bk = stage[176u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[64u + ti];
                    let bk = stage[192u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[80u + ti];
                    let bk = stage[208u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[96u + ti];
                    let bk = stage[224u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                {
                    let a = stage[112u + ti];
                    let bk = stage[240u + tj];
                    s0 = fma(vec4<f32>(a.x), bk, s0);
                    s1 = fma(vec4<f32>(a.y), bk, s1);
                    s2 = fma(vec4<f32>(a.z), bk, s2);
                    s3 = fma(vec4<f32>(a.w), bk, s3);
                }
                workgroupBarrier();
            }
        }

        // g of the key block: a chunk of one s-block keeps its own, loaded above; otherwise every
        // key block loads its g over the previous one's (the diagonal block's is the s-block's).
        if (sb > 0u) {
            if (lid < 64u) {
                var g = -3.4e38;
                if (lid < jlen) {
                    g = gi[gbase + jfirst + lid] - gb[gbase + jfirst + lid];
                }
                gj[lid] = g;
            }
            workgroupBarrier();
        }
        // Decay-weighted scores M[s, j] = S[s, j] exp(g_j - gmax[s]) for j <= s, into workgroup
        // memory (positions chunk-relative).
        var gv = vec4<f32>(-3.4e38);
        for (var c = 0u; c < 4u; c++) {
            gv[c] = gj[j0 + c];
        }
        let jpos = jfirst + j0;
        let spos = sfirst + r0;
        mm[r0][tj] = decayed(s0, gv, gmax[r0], jpos, spos, r0 < slen);
        mm[r0 + 1u][tj] = decayed(s1, gv, gmax[r0 + 1u], jpos, spos + 1u, r0 + 1u < slen);
        mm[r0 + 2u][tj] = decayed(s2, gv, gmax[r0 + 2u], jpos, spos + 2u, r0 + 2u < slen);
        mm[r0 + 3u][tj] = decayed(s3, gv, gmax[r0 + 3u], jpos, spos + 3u, r0 + 3u < slen);
        workgroupBarrier();

        // M V and the row sums of M, v staged in halves of 32 positions.
        for (var jh = 0u; jh < 64u; jh += 32u) {
            for (var e = lid; e < 32u * 64u; e += 256u) {
                let j = e / 64u;
                let vv = e % 64u;
                var val = 0.0;
                if (jh + j < jlen && v0 + vv < p.dv) {
                    val = proj[(t0 + jfirst + jh + j) * p.proj_stride + p.v_col + h * p.dv + v0 + vv];
                }
                stage_set(j * 16u + vv / 4u, vv % 4u, val);
            }
            workgroupBarrier();
            // The 8 steps of four key positions, written out.
            {
                let mq = jh / 4u + 0u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[0u + tj];
                let b1 = stage[16u + tj];
                let b2 = stage[32u + tj];
                let b3 = stage[48u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 1u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[64u + tj];
                let b1 = stage[80u + tj];
                let b2 = stage[96u + tj];
                let b3 = stage[112u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 2u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[128u + tj];
                let b1 = stage[144u + tj];
                let b2 = stage[160u + tj];
                let b3 = stage[176u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 3u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[192u + tj];
                let b1 = stage[208u + tj];
                let b2 = stage[224u + tj];
                let b3 = stage[240u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 4u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[256u + tj];
                let b1 = stage[272u + tj];
                let b2 = stage[288u + tj];
                let b3 = stage[304u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 5u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[320u + tj];
                let b1 = stage[336u + tj];
                let b2 = stage[352u + tj];
                let b3 = stage[368u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 6u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[384u + tj];
                let b1 = stage[400u + tj];
                let b2 = stage[416u + tj];
                let b3 = stage[432u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            {
                let mq = jh / 4u + 7u;
                let m0 = mm[r0][mq];
                let m1 = mm[r0 + 1u][mq];
                let m2 = mm[r0 + 2u][mq];
                let m3 = mm[r0 + 3u][mq];
                rs += vec4<f32>(m0.x + m0.y + m0.z + m0.w, m1.x + m1.y + m1.z + m1.w,
                                m2.x + m2.y + m2.z + m2.w, m3.x + m3.y + m3.z + m3.w);
                let b0 = stage[448u + tj];
                let b1 = stage[464u + tj];
                let b2 = stage[480u + tj];
                let b3 = stage[496u + tj];
                n0 = fma(vec4<f32>(m0.x), b0, fma(vec4<f32>(m0.y), b1, fma(vec4<f32>(m0.z), b2, fma(vec4<f32>(m0.w), b3, n0))));
                n1 = fma(vec4<f32>(m1.x), b0, fma(vec4<f32>(m1.y), b1, fma(vec4<f32>(m1.z), b2, fma(vec4<f32>(m1.w), b3, n1))));
                n2 = fma(vec4<f32>(m2.x), b0, fma(vec4<f32>(m2.y), b1, fma(vec4<f32>(m2.z), b2, fma(vec4<f32>(m2.w), b3, n2))));
                n3 = fma(vec4<f32>(m3.x), b0, fma(vec4<f32>(m3.y), b1, fma(vec4<f32>(m3.z), b2, fma(vec4<f32>(m3.w), b3, n3))));
            }
            workgroupBarrier();
        }
    }

    // Combine and normalise the four rows.
    for (var i = 0u; i < 4u; i++) {
        let s = r0 + i;
        if (s >= slen) {
            break;
        }
        var hi = h0;
        var ni = n0;
        if (i == 1u) {
            hi = h1;
            ni = n1;
        } else if (i == 2u) {
            hi = h2;
            ni = n2;
        } else if (i == 3u) {
            hi = h3;
            ni = n3;
        }
        let bs = gb[gbase + sfirst + s];
        let gm = gmax[s];
        let beta = exp(m_prev - gm);
        let m = bs + gm;
        let den = beta * qn[s] + rs[i];
        let inv = 1.0 / (max(abs(den), exp(-m)) + p.eps);
        let out = (beta * hi + ni) * inv;
        for (var c = 0u; c < 4u; c++) {
            let vv = v0 + j0 + c;
            if (vv < p.dv) {
                hout[(t0 + sfirst + s) * p.out_stride + h * p.dv + vv] = out[c];
            }
        }
    }
}
