// mlstm_chunk_out_coop.wgsl — chunkwise mLSTM phase 2 on the matrix units (cooperative matrices):
// every chunk's outputs from the state at its start plus the causal intra-chunk part. Same math,
// bindings, parameters and grid as mlstm_chunk_out.wgsl (reference/xlstm.md §2.4):
//   g_j = i~_j - b_j,  gmax[s] = max(m_prev, max_{j<=s} g_j),  beta[s] = exp(m_prev - gmax[s])
//   S = Q^ K^T,  M[s,j] = S[s,j] exp(g_j - gmax[s]) (j <= s),  q^ = q / sqrt(dqk)
//   h[s] = (beta[s] (Q^ C_prev)[s] + (M V)[s]) / (max(|beta[s] q^_s . n_prev + sum_j M[s,j]|,
//          exp(-b_s - gmax[s])) + eps)
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<vec4<f32>> [tokens, proj_stride] with q, k, v
//   at q_col/k_col/v_col + head offset (read; any alignment: unaligned rows load per element);
//   2 gi, 3 gb: array<f32> [num_heads, tokens] (read); 4 cb: array<vec4<f32>> [chunks + 1,
//   num_heads, dqk, dv], 5 nb: array<vec4<f32>> [.., num_heads, dqk], 6 mb: array<f32>
//   [.., num_heads] boundary states from phase 1 (read; any alignment); 7 hout: array<f32>
//   [tokens, num_heads * dv] (read_write).
// Workgroup: 256 invocations = 8 subgroups of 32 (the host uses this kernel only where the
//   subgroup size is 32) for one (chunk, head, 64-wide dv tile). dqk is walked in slices of 64:
//   q^ [64 s][64 d] and k [64 j][64 d] row by row, and the C_prev slice transposed
//   ([64 v][64 d], staged by subgroup: columns 8 sg .. + 7 of rows lane and lane + 32), are
//   converted to f16 into workgroup memory (rows padded by 8 halves), so every product loads its
//   A operand row-major and its B operand column-major (the layouts gemm_coop.wgsl uses); the
//   next slice is fetched into registers while the current one is multiplied. Subgroup sg owns
//   rows 16 (sg % 4) .. + 16 and columns 32 (sg / 4) .. + 32 of both the 64 x 64 score block S
//   and the 64 x 64 output tile: 2 + 2 f32 accumulator fragments of 16x16, plus 2 for M V. S goes
//   through workgroup memory (f32) where the decay mask, the stabiliser and the row sums are
//   applied; M (f16, over q^) and the v block (f16, transposed over C_prev) then feed M V. The
//   inter and intra fragments are combined and normalised per row through a per-subgroup f32
//   scratch tile. Workgroup memory: 48,128 bytes; every workgroup variable is a multiple of 16
//   bytes (the driver may lay them out in any order; the matrix loads and stores need 16-byte
//   aligned rows).
// Grid: (ceil(dv / 64), chunks in the tile, heads in the band); chunk = c_begin + y,
//   head = head0 + z.
// Precision: q^, k, v, M and C_prev rounded to f16 for the products (C_prev scaled by 2^-4 first,
//   against f16 overflow; undone in f32), f32 accumulation; gates, stabiliser, q^ . n (from the
//   f32 q), row sums and the normalisation in f32. Only the f16-weight mode uses it.
// Requires: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 -> f32, and
//   48,128 bytes of workgroup memory.

enable f16;
enable wgpu_cooperative_matrix;

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

const LDS: u32 = 72u; // f16 row stride: 64 + 8 padding halves
const SLD: u32 = 68u; // f32 row stride of the score block
const NEG: f32 = -3.4e38;
// C_prev is staged as C * CSCALE (f16 range), the inter-chunk product multiplied back by 1 / CSCALE.
const CSCALE: f32 = 0.0625;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gi: array<f32>;
@group(0) @binding(3) var<storage, read> gb: array<f32>;
@group(0) @binding(4) var<storage, read> cb: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> nb: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> mb: array<f32>;
@group(0) @binding(7) var<storage, read_write> hout: array<f32>;

var<workgroup> qs: array<f16, 4608>; // [64 s][LDS]: q^ slice; after the dqk loop M
var<workgroup> ks: array<f16, 4608>; // [64 j][LDS]: k slice
var<workgroup> cst: array<f16, 4608>; // [64 v][LDS]: C_prev slice^T (x CSCALE); then v^T [v][j]
var<workgroup> sf: array<f32, 4352>; // [64 s][SLD]: S; then 8 x 512 epilogue scratch
var<workgroup> gj: array<f32, 64>;   // g_j (NEG past the chunk)
var<workgroup> gmax: array<f32, 64>; // max(m_prev, prefix max of g)
var<workgroup> beta: array<f32, 64>; // exp(m_prev - gmax[s])
var<workgroup> inv: array<f32, 64>;  // 1 / (max(|den|, exp(-m)) + eps), 0 past the chunk
var<workgroup> red_q: array<f32, 256>; // partial q^ . n_prev, 4 per row
var<workgroup> red_r: array<f32, 256>; // partial row sums of M, 4 per row

// Number of valid elements (0..4) of the four starting at idx below limit.
fn cnt(limit: u32, idx: u32) -> u32 {
    if (idx >= limit) {
        return 0u;
    }
    return min(limit - idx, 4u);
}

// proj[e .. e + 4], the first n of them (the others 0).
fn ld_proj(e: u32, n: u32) -> vec4<f32> {
    if ((n == 4u) & (e % 4u == 0u)) {
        return proj[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < n; j++) {
        v[j] = proj[(e + j) / 4u][(e + j) % 4u];
    }
    return v;
}

// cb[e .. e + 4], the first n of them (the others 0).
fn ld_c(e: u32, n: u32) -> vec4<f32> {
    if ((n == 4u) & (e % 4u == 0u)) {
        return cb[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < n; j++) {
        v[j] = cb[(e + j) / 4u][(e + j) % 4u];
    }
    return v;
}

// nb[e .. e + 4], the first n of them (the others 0).
fn ld_n(e: u32, n: u32) -> vec4<f32> {
    if ((n == 4u) & (e % 4u == 0u)) {
        return nb[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < n; j++) {
        v[j] = nb[(e + j) / 4u][(e + j) % 4u];
    }
    return v;
}

fn put_q(o: u32, v: vec4<f32>) {
    qs[o] = f16(v.x);
    qs[o + 1u] = f16(v.y);
    qs[o + 2u] = f16(v.z);
    qs[o + 3u] = f16(v.w);
}

fn put_k(o: u32, v: vec4<f32>) {
    ks[o] = f16(v.x);
    ks[o + 1u] = f16(v.y);
    ks[o + 2u] = f16(v.z);
    ks[o + 3u] = f16(v.w);
}

// Four consecutive columns c .. c + 3 of row d, transposed: cst[column][d].
fn put_ct(c: u32, d: u32, v: vec4<f32>) {
    cst[c * LDS + d] = f16(v.x);
    cst[(c + 1u) * LDS + d] = f16(v.y);
    cst[(c + 2u) * LDS + d] = f16(v.z);
    cst[(c + 3u) * LDS + d] = f16(v.w);
}

// (naga's SPIR-V writer needs the store's offset and stride as plain values: function arguments)
fn store_sf(c: coop_mat16x16<f32, C>, o: u32, stride: u32) {
    coopStoreT(c, &sf[o], stride);
}

// Writes one 16x16 output fragment pair (inter x, intra y) at rows r0.., columns c0.. of the tile
// through the subgroup's scratch: h = (beta / CSCALE * x + y) * inv.
fn emit(x: coop_mat16x16<f32, C>, y: coop_mat16x16<f32, C>, sg: u32, lane: u32, t0: u32, len: u32,
        h: u32, r0: u32, c0: u32) {
    store_sf(x, sg * 512u, 16u);
    store_sf(y, sg * 512u + 256u, 16u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let idx = lane * 8u + e;
        let s = r0 + idx / 16u;
        let v = c0 + idx % 16u;
        let val = (beta[s] * (1.0 / CSCALE) * sf[sg * 512u + idx] + sf[sg * 512u + 256u + idx]) * inv[s];
        if ((s < len) & (v < p.dv)) {
            hout[(t0 + s) * p.out_stride + h * p.dv + v] = val;
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let h = p.head0 + wid.z;
    let ci = p.c_begin + wid.y;
    let v0 = wid.x * 64u;
    let t0 = ci * p.chunk;
    let len = min(p.chunk, p.tokens - t0);
    let cbase = (ci * p.num_heads + h) * p.dqk;
    let m_prev = mb[ci * p.num_heads + h];
    let gbase = h * p.tokens + t0;

    if (lid < 64u) {
        var g = NEG;
        if (lid < len) {
            g = gi[gbase + lid] - gb[gbase + lid];
        }
        gj[lid] = g;
    }

    // Staging role of q and k: row r (position), columns c .. c + 15 of a 64-wide dqk slice.
    let r = lid / 4u;
    let c = (lid % 4u) * 16u;
    let row_ok = r < len;
    let prow = (t0 + r) * p.proj_stride;
    let qe = prow + p.q_col + h * p.dqk + c;
    let ke = prow + p.k_col + h * p.dqk + c;
    let so = r * LDS + c;
    // Staging role of C_prev and v (by subgroup): rows lane and lane + 32 (d, or position j),
    // columns cg .. cg + 7 of the dv tile (two vec4 each).
    let cg = sg * 8u;
    let r1 = lane + 32u;
    let nv0 = cnt(p.dv, v0 + cg);
    let nv1 = cnt(p.dv, v0 + cg + 4u);
    let ce0 = (cbase + lane) * p.dv + v0 + cg;
    let ce1 = (cbase + r1) * p.dv + v0 + cg;
    let vcol = p.v_col + h * p.dv + v0 + cg;
    let ve0 = (t0 + lane) * p.proj_stride + vcol;
    let ve1 = (t0 + r1) * p.proj_stride + vcol;

    // Slice 0 into registers.
    var nq0 = select(0u, cnt(p.dqk, c), row_ok);
    var nq1 = select(0u, cnt(p.dqk, c + 4u), row_ok);
    var nq2 = select(0u, cnt(p.dqk, c + 8u), row_ok);
    var nq3 = select(0u, cnt(p.dqk, c + 12u), row_ok);
    var qr0 = ld_proj(qe, nq0);
    var qr1 = ld_proj(qe + 4u, nq1);
    var qr2 = ld_proj(qe + 8u, nq2);
    var qr3 = ld_proj(qe + 12u, nq3);
    var kr0 = ld_proj(ke, nq0);
    var kr1 = ld_proj(ke + 4u, nq1);
    var kr2 = ld_proj(ke + 8u, nq2);
    var kr3 = ld_proj(ke + 12u, nq3);
    var nr0 = ld_n(cbase + c, nq0);
    var nr1 = ld_n(cbase + c + 4u, nq1);
    var nr2 = ld_n(cbase + c + 8u, nq2);
    var nr3 = ld_n(cbase + c + 12u, nq3);
    var cr0 = ld_c(ce0, select(0u, nv0, lane < p.dqk));
    var cr1 = ld_c(ce0 + 4u, select(0u, nv1, lane < p.dqk));
    var cr2 = ld_c(ce1, select(0u, nv0, r1 < p.dqk));
    var cr3 = ld_c(ce1 + 4u, select(0u, nv1, r1 < p.dqk));
    var vr0 = vec4<f32>();
    var vr1 = vec4<f32>();
    var vr2 = vec4<f32>();
    var vr3 = vec4<f32>();

    let rb = (sg % 4u) * 16u; // this subgroup's rows
    let cp = (sg / 4u) * 32u; // and columns
    var s0 = coop_mat16x16<f32, C>();
    var s1 = coop_mat16x16<f32, C>();
    var i0 = coop_mat16x16<f32, C>();
    var i1 = coop_mat16x16<f32, C>();
    var qn = 0.0;
    let sc = p.scale;
    for (var d0 = 0u; d0 < p.dqk; d0 += 64u) {
        put_q(so, qr0 * sc);
        put_q(so + 4u, qr1 * sc);
        put_q(so + 8u, qr2 * sc);
        put_q(so + 12u, qr3 * sc);
        put_k(so, kr0);
        put_k(so + 4u, kr1);
        put_k(so + 8u, kr2);
        put_k(so + 12u, kr3);
        put_ct(cg, lane, cr0 * CSCALE);
        put_ct(cg + 4u, lane, cr1 * CSCALE);
        put_ct(cg, r1, cr2 * CSCALE);
        put_ct(cg + 4u, r1, cr3 * CSCALE);
        qn += dot(qr0, nr0) + dot(qr1, nr1) + dot(qr2, nr2) + dot(qr3, nr3);
        workgroupBarrier();
        let dn = d0 + 64u;
        if (dn < p.dqk) {
            // The next slice.
            nq0 = select(0u, cnt(p.dqk, dn + c), row_ok);
            nq1 = select(0u, cnt(p.dqk, dn + c + 4u), row_ok);
            nq2 = select(0u, cnt(p.dqk, dn + c + 8u), row_ok);
            nq3 = select(0u, cnt(p.dqk, dn + c + 12u), row_ok);
            qr0 = ld_proj(qe + dn, nq0);
            qr1 = ld_proj(qe + dn + 4u, nq1);
            qr2 = ld_proj(qe + dn + 8u, nq2);
            qr3 = ld_proj(qe + dn + 12u, nq3);
            kr0 = ld_proj(ke + dn, nq0);
            kr1 = ld_proj(ke + dn + 4u, nq1);
            kr2 = ld_proj(ke + dn + 8u, nq2);
            kr3 = ld_proj(ke + dn + 12u, nq3);
            nr0 = ld_n(cbase + dn + c, nq0);
            nr1 = ld_n(cbase + dn + c + 4u, nq1);
            nr2 = ld_n(cbase + dn + c + 8u, nq2);
            nr3 = ld_n(cbase + dn + c + 12u, nq3);
            let ok0 = dn + lane < p.dqk;
            let ok1 = dn + r1 < p.dqk;
            cr0 = ld_c(ce0 + dn * p.dv, select(0u, nv0, ok0));
            cr1 = ld_c(ce0 + dn * p.dv + 4u, select(0u, nv1, ok0));
            cr2 = ld_c(ce1 + dn * p.dv, select(0u, nv0, ok1));
            cr3 = ld_c(ce1 + dn * p.dv + 4u, select(0u, nv1, ok1));
        } else {
            // After the last slice: the v block of the chunk.
            vr0 = ld_proj(ve0, select(0u, nv0, lane < len));
            vr1 = ld_proj(ve0 + 4u, select(0u, nv1, lane < len));
            vr2 = ld_proj(ve1, select(0u, nv0, r1 < len));
            vr3 = ld_proj(ve1 + 4u, select(0u, nv1, r1 < len));
        }
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 0u], LDS);
        let bk00 = coopLoad<coop_mat16x16<f16, B>>(&ks[cp * LDS + 0u], LDS);
        let bk10 = coopLoad<coop_mat16x16<f16, B>>(&ks[(cp + 16u) * LDS + 0u], LDS);
        let bc00 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 0u], LDS);
        let bc10 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 0u], LDS);
        s0 = coopMultiplyAdd(a0, bk00, s0);
        s1 = coopMultiplyAdd(a0, bk10, s1);
        i0 = coopMultiplyAdd(a0, bc00, i0);
        i1 = coopMultiplyAdd(a0, bc10, i1);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 16u], LDS);
        let bk01 = coopLoad<coop_mat16x16<f16, B>>(&ks[cp * LDS + 16u], LDS);
        let bk11 = coopLoad<coop_mat16x16<f16, B>>(&ks[(cp + 16u) * LDS + 16u], LDS);
        let bc01 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 16u], LDS);
        let bc11 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 16u], LDS);
        s0 = coopMultiplyAdd(a1, bk01, s0);
        s1 = coopMultiplyAdd(a1, bk11, s1);
        i0 = coopMultiplyAdd(a1, bc01, i0);
        i1 = coopMultiplyAdd(a1, bc11, i1);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 32u], LDS);
        let bk02 = coopLoad<coop_mat16x16<f16, B>>(&ks[cp * LDS + 32u], LDS);
        let bk12 = coopLoad<coop_mat16x16<f16, B>>(&ks[(cp + 16u) * LDS + 32u], LDS);
        let bc02 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 32u], LDS);
        let bc12 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 32u], LDS);
        s0 = coopMultiplyAdd(a2, bk02, s0);
        s1 = coopMultiplyAdd(a2, bk12, s1);
        i0 = coopMultiplyAdd(a2, bc02, i0);
        i1 = coopMultiplyAdd(a2, bc12, i1);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 48u], LDS);
        let bk03 = coopLoad<coop_mat16x16<f16, B>>(&ks[cp * LDS + 48u], LDS);
        let bk13 = coopLoad<coop_mat16x16<f16, B>>(&ks[(cp + 16u) * LDS + 48u], LDS);
        let bc03 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 48u], LDS);
        let bc13 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 48u], LDS);
        s0 = coopMultiplyAdd(a3, bk03, s0);
        s1 = coopMultiplyAdd(a3, bk13, s1);
        i0 = coopMultiplyAdd(a3, bc03, i0);
        i1 = coopMultiplyAdd(a3, bc13, i1);
        workgroupBarrier();
    }

    // Scores to workgroup memory; the v block transposed over the C_prev slice; the stabiliser's
    // prefix maximum.
    store_sf(s0, rb * SLD + cp, SLD);
    store_sf(s1, rb * SLD + cp + 16u, SLD);
    put_ct(cg, lane, vr0);
    put_ct(cg + 4u, lane, vr1);
    put_ct(cg, r1, vr2);
    put_ct(cg + 4u, r1, vr3);
    red_q[lid] = qn * sc;
    // Prefix maximum of g by subgroup scans: every subgroup scans half (sg % 2) of the chunk, the
    // second half adds the maximum of the first; subgroups 0 and 1 store.
    let hj = (sg % 2u) * 32u + lane;
    var run = gj[hj];
    for (var d = 1u; d < 32u; d *= 2u) {
        let up = subgroupShuffleUp(run, d);
        run = select(run, max(run, up), lane >= d);
    }
    var carry = subgroupMax(gj[lane]);
    if (sg % 2u == 0u) {
        carry = NEG;
    }
    run = max(max(run, carry), m_prev);
    if (sg < 2u) {
        gmax[hj] = run;
        beta[hj] = exp(m_prev - run);
    }
    workgroupBarrier();

    // M = S exp(g_j - gmax[s]) on and below the diagonal (f16 into qs), and its row sums. This
    // invocation: row r, columns (lid % 4) + 4 e.
    let cq = lid % 4u;
    let gm = gmax[r];
    var rs = 0.0;
    for (var e = 0u; e < 16u; e++) {
        let j = cq + 4u * e;
        var mv = 0.0;
        if ((j <= r) & row_ok) {
            mv = sf[r * SLD + j] * exp(gj[j] - gm);
        }
        rs += mv;
        qs[r * LDS + j] = f16(mv);
    }
    red_r[lid] = rs;
    workgroupBarrier();

    // Intra-chunk part M V: A[s][j] = qs[s][j] (row-major), B[j][v] = cst[v][j] (column-major).
    var n0 = coop_mat16x16<f32, C>();
    var n1 = coop_mat16x16<f32, C>();
    let m0 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 0u], LDS);
    let v00 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 0u], LDS);
    let v10 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 0u], LDS);
    n0 = coopMultiplyAdd(m0, v00, n0);
    n1 = coopMultiplyAdd(m0, v10, n1);
    let m1 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 16u], LDS);
    let v01 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 16u], LDS);
    let v11 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 16u], LDS);
    n0 = coopMultiplyAdd(m1, v01, n0);
    n1 = coopMultiplyAdd(m1, v11, n1);
    let m2 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 32u], LDS);
    let v02 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 32u], LDS);
    let v12 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 32u], LDS);
    n0 = coopMultiplyAdd(m2, v02, n0);
    n1 = coopMultiplyAdd(m2, v12, n1);
    let m3 = coopLoadT<coop_mat16x16<f16, A>>(&qs[rb * LDS + 48u], LDS);
    let v03 = coopLoad<coop_mat16x16<f16, B>>(&cst[cp * LDS + 48u], LDS);
    let v13 = coopLoad<coop_mat16x16<f16, B>>(&cst[(cp + 16u) * LDS + 48u], LDS);
    n0 = coopMultiplyAdd(m3, v03, n0);
    n1 = coopMultiplyAdd(m3, v13, n1);

    // Per-row normaliser.
    if (lid < 64u) {
        var iv = 0.0;
        if (lid < len) {
            let b4 = lid * 4u;
            let qdn = red_q[b4] + red_q[b4 + 1u] + red_q[b4 + 2u] + red_q[b4 + 3u];
            let rsum = red_r[b4] + red_r[b4 + 1u] + red_r[b4 + 2u] + red_r[b4 + 3u];
            let den = beta[lid] * qdn + rsum;
            let m = gb[gbase + lid] + gmax[lid];
            iv = 1.0 / (max(abs(den), exp(-m)) + p.eps);
        }
        inv[lid] = iv;
    }
    workgroupBarrier();

    emit(i0, n0, sg, lane, t0, len, h, rb, v0 + cp);
    emit(i1, n1, sg, lane, t0, len, h, rb, v0 + cp + 16u);
}
