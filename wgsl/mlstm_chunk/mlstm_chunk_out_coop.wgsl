// mlstm_chunk_out_coop.wgsl — chunkwise mLSTM phase 2 on the matrix units (cooperative matrices):
// every chunk's outputs from the state at its start plus the causal intra-chunk part. Same math,
// bindings, parameters and grid as mlstm_chunk_out.wgsl (reference/xlstm.md §2.4):
//   g_j = i~_j - b_j,  gmax[s] = max(m_prev, max_{j<=s} g_j),  beta[s] = exp(m_prev - gmax[s])
//   S = Q^ K^T,  M[s,j] = S[s,j] exp(g_j - gmax[s]) (j <= s),  q^ = q / sqrt(dqk)
//   h[s] = (beta[s] (Q^ C_prev)[s] + (M V)[s]) / (max(|beta[s] q^_s . n_prev + sum_j M[s,j]|,
//          exp(-b_s - gmax[s])) + eps)
// A chunk of up to 256 positions is cut into blocks of 64 rows (s-blocks), as in
// mlstm_chunk_out.wgsl: a workgroup computes one s-block sb and walks the 64-position key blocks
// jb = 0 ..= sb, each through the whole pipeline below (dqk slices, S, M, M V accumulated over the
// key blocks). Every row's stabiliser is known before the first key block (the maximum of g over
// the earlier s-blocks, by subgroup maxima, then the prefix scan inside the s-block), so nothing is
// rescaled across key blocks. C_prev and n_prev are loaded with the first key block only (the
// later ones stage zeros in their place, so their inter-chunk products add nothing). A chunk of
// <= 64 is one s-block and one key block.
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<vec4<f32>> [tokens, proj_stride] with q, k, v
//   at q_col/k_col/v_col + head offset (read; any alignment: unaligned rows load per element);
//   2 gi, 3 gb: array<f32> [num_heads, tokens] (read); 4 cb: array<vec4<f32>> [chunks + 1,
//   num_heads, dqk, dv], 5 nb: array<vec4<f32>> [.., num_heads, dqk], 6 mb: array<f32>
//   [.., num_heads] boundary states from phase 1 (read; any alignment); 7 hout: array<f32>
//   [tokens, num_heads * dv] (read_write).
// Workgroup: 256 invocations = 8 subgroups of 32 (the host uses this kernel only where the
//   subgroup size is 32) for one (chunk, s-block, head, 64-wide dv tile). dqk is walked in slices
//   of 64 for every key block:
//   q^ [64 s][64 d] and k [64 j][64 d] row by row, and the C_prev slice transposed
//   ([64 v][64 d], staged by subgroup: columns 8 sg .. + 7 of rows lane and lane + 32), are
//   converted to f16 into workgroup memory (rows padded by 8 halves), so every product loads its
//   A operand row-major and its B operand column-major (the layouts gemm_coop.wgsl uses); the
//   next slice is fetched into registers while the current one is multiplied. Subgroup sg owns
//   rows 16 (sg % 4) .. + 16 and columns 32 (sg / 4) .. + 32 of both the 64 x 64 score block S
//   and the 64 x 64 output tile: f32 accumulator fragments of FRAG x FRAG for S, as many for
//   Q^ C_prev and for M V (1 x 2 of 16x16, or 2 x 4 of 8x8). S goes
//   through workgroup memory (f32) where the decay mask, the stabiliser and the row sums are
//   applied; M (f16, over q^) and the v block (f16, transposed over C_prev) then feed M V. The
//   inter and intra fragments are combined and normalised per row through a per-subgroup f32
//   scratch tile. Workgroup memory: 48,128 bytes; every workgroup variable is a multiple of 16
//   bytes (the driver may lay them out in any order; the matrix loads and stores need 16-byte
//   aligned rows).
// Grid: (ceil(dv / 64), chunks in the tile x ceil(chunk / 64), heads in the band);
//   chunk = c_begin + y / ceil(chunk / 64), s-block = y % ceil(chunk / 64), head = head0 + z.
// Precision: q^, k, v, M and C_prev rounded to f16 for the products (C_prev scaled by 2^-4 first,
//   against f16 overflow; undone in f32), f32 accumulation; gates, stabiliser, q^ . n (from the
//   f32 q), row sums and the normalisation in f32. Only the f16-weight mode uses it.
// Requires: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX with FRAG^3 f16 -> f32, and
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

// The matrix-unit fragment: FRAG x FRAG (16: NVIDIA and AMD through Vulkan; 8: Apple's
// simdgroup matrices). The host sets FRAG and the three aliases together
// (ops::matmul::coop_fragment); the products below are written in fragments of FRAG.
const FRAG: u32 = 16u;
alias FragA = coop_mat16x16<f16, A>;
alias FragB = coop_mat16x16<f16, B>;
alias FragC = coop_mat16x16<f32, C>;

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
fn store_sf(c: FragC, o: u32, stride: u32) {
    coopStoreT(c, &sf[o], stride);
}

// Writes one output fragment pair (inter x, intra y) at rows r0.., columns c0.. of the tile
// through the subgroup's scratch: h = (beta / CSCALE * x + y) * inv.
fn emit(x: FragC, y: FragC, sg: u32, lane: u32, t0: u32, len: u32, h: u32, r0: u32, c0: u32) {
    let bx = sg * 512u;
    let by = bx + FRAG * FRAG;
    store_sf(x, bx, FRAG);
    store_sf(y, by, FRAG);
    workgroupBarrier();
    for (var e = 0u; e < FRAG * FRAG / 32u; e++) {
        let idx = lane * (FRAG * FRAG / 32u) + e;
        let s = r0 + idx / FRAG;
        let v = c0 + idx % FRAG;
        let val = (beta[s] * (1.0 / CSCALE) * sf[bx + idx] + sf[by + idx]) * inv[s];
        if ((s < len) & (v < p.dv)) {
            hout[(t0 + s) * p.out_stride + h * p.dv + v] = val;
        }
    }
    workgroupBarrier();
}

// g_j = i~_j - b_j at chunk-relative position j of the chunk at gbase, NEG at or past `limit`.
fn gval(gbase: u32, j: u32, limit: u32) -> f32 {
    if (j < limit) {
        return gi[gbase + j] - gb[gbase + j];
    }
    return NEG;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
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
    let cbase = (ci * p.num_heads + h) * p.dqk;
    let m_prev = mb[ci * p.num_heads + h];
    let gbase = h * p.tokens + t0;

    // The stabiliser's floor: max(m_prev, maximum of g over the earlier s-blocks, at most 192
    // positions, one per invocation), by subgroup maxima through red_q.
    var gfloor = m_prev;
    if (sb > 0u) {
        let part = subgroupMax(gval(gbase, lid, sfirst));
        if (lane == 0u) {
            red_q[sg] = part;
        }
        workgroupBarrier();
        for (var e = 0u; e < 8u; e++) {
            gfloor = max(gfloor, red_q[e]);
        }
        workgroupBarrier();
    }
    // This invocation's g for the prefix scan below: position (sg % 2) * 32 + lane of the
    // s-block, and position lane (the first half's maximum, carried into the second).
    let hj = (sg % 2u) * 32u + lane;
    let g_scan = gval(gbase + sfirst, hj, slen);
    let g_carry = gval(gbase + sfirst, lane, slen);

    // Staging role of q and k: row r (position), columns c .. c + 15 of a 64-wide dqk slice.
    let r = lid / 4u;
    let c = (lid % 4u) * 16u;
    let row_ok = r < slen;
    let qe = (t0 + sfirst + r) * p.proj_stride + p.q_col + h * p.dqk + c;
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

    let rb = (sg % 4u) * 16u; // this subgroup's rows
    let cp = (sg / 4u) * 32u; // and columns
    let sc = p.scale;
    let cq = lid % 4u;
    // The inter-chunk fragments (Q^ C_prev, with the first key block), the intra-chunk ones (M V)
    // and the row sums of M, over the causal key blocks.
    // Fragment xij at rows rb + i FRAG, columns cp + j FRAG of the subgroup's 16 x 32 block: x00
    // and x01 cover it at 16x16, the 2 x 4 fragments x00 .. x13 at 8x8 (the others are not used
    // there). Named variables, not arrays: drivers keep an array of fragments indexed in a loop in
    // memory.
    var i00 = FragC();
    var i01 = FragC();
    var i02 = FragC();
    var i03 = FragC();
    var i10 = FragC();
    var i11 = FragC();
    var i12 = FragC();
    var i13 = FragC();
    var n00 = FragC();
    var n01 = FragC();
    var n02 = FragC();
    var n03 = FragC();
    var n10 = FragC();
    var n11 = FragC();
    var n12 = FragC();
    var n13 = FragC();
    var qn = 0.0;
    var rs = 0.0;
    for (var jb = 0u; jb <= sb; jb++) {
        let jfirst = jb * 64u;
        let jlen = min(64u, len - jfirst);
        // C_prev and n_prev only with the first key block: the later ones load none (zeros),
        // so their inter-chunk products add nothing.
        let first = jb == 0u;
        let key_ok = r < jlen;
        let ke = (t0 + jfirst + r) * p.proj_stride + p.k_col + h * p.dqk + c;
        let ve0 = (t0 + jfirst + lane) * p.proj_stride + vcol;
        let ve1 = (t0 + jfirst + r1) * p.proj_stride + vcol;
        if (lid < 64u) {
            gj[lid] = gval(gbase + jfirst, lid, jlen);
        }

        // Slice 0 into registers.
        var nq0 = select(0u, cnt(p.dqk, c), row_ok);
        var nq1 = select(0u, cnt(p.dqk, c + 4u), row_ok);
        var nq2 = select(0u, cnt(p.dqk, c + 8u), row_ok);
        var nq3 = select(0u, cnt(p.dqk, c + 12u), row_ok);
        var nk0 = select(0u, cnt(p.dqk, c), key_ok);
        var nk1 = select(0u, cnt(p.dqk, c + 4u), key_ok);
        var nk2 = select(0u, cnt(p.dqk, c + 8u), key_ok);
        var nk3 = select(0u, cnt(p.dqk, c + 12u), key_ok);
        var qr0 = ld_proj(qe, nq0);
        var qr1 = ld_proj(qe + 4u, nq1);
        var qr2 = ld_proj(qe + 8u, nq2);
        var qr3 = ld_proj(qe + 12u, nq3);
        var kr0 = ld_proj(ke, nk0);
        var kr1 = ld_proj(ke + 4u, nk1);
        var kr2 = ld_proj(ke + 8u, nk2);
        var kr3 = ld_proj(ke + 12u, nk3);
        var nr0 = ld_n(cbase + c, select(0u, nq0, first));
        var nr1 = ld_n(cbase + c + 4u, select(0u, nq1, first));
        var nr2 = ld_n(cbase + c + 8u, select(0u, nq2, first));
        var nr3 = ld_n(cbase + c + 12u, select(0u, nq3, first));
        var cr0 = ld_c(ce0, select(0u, nv0, (lane < p.dqk) & first));
        var cr1 = ld_c(ce0 + 4u, select(0u, nv1, (lane < p.dqk) & first));
        var cr2 = ld_c(ce1, select(0u, nv0, (r1 < p.dqk) & first));
        var cr3 = ld_c(ce1 + 4u, select(0u, nv1, (r1 < p.dqk) & first));
        var vr0 = vec4<f32>();
        var vr1 = vec4<f32>();
        var vr2 = vec4<f32>();
        var vr3 = vec4<f32>();

        var s00 = FragC();
        var s01 = FragC();
        var s02 = FragC();
        var s03 = FragC();
        var s10 = FragC();
        var s11 = FragC();
        var s12 = FragC();
        var s13 = FragC();
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
                nk0 = select(0u, cnt(p.dqk, dn + c), key_ok);
                nk1 = select(0u, cnt(p.dqk, dn + c + 4u), key_ok);
                nk2 = select(0u, cnt(p.dqk, dn + c + 8u), key_ok);
                nk3 = select(0u, cnt(p.dqk, dn + c + 12u), key_ok);
                qr0 = ld_proj(qe + dn, nq0);
                qr1 = ld_proj(qe + dn + 4u, nq1);
                qr2 = ld_proj(qe + dn + 8u, nq2);
                qr3 = ld_proj(qe + dn + 12u, nq3);
                kr0 = ld_proj(ke + dn, nk0);
                kr1 = ld_proj(ke + dn + 4u, nk1);
                kr2 = ld_proj(ke + dn + 8u, nk2);
                kr3 = ld_proj(ke + dn + 12u, nk3);
                nr0 = ld_n(cbase + dn + c, select(0u, nq0, first));
                nr1 = ld_n(cbase + dn + c + 4u, select(0u, nq1, first));
                nr2 = ld_n(cbase + dn + c + 8u, select(0u, nq2, first));
                nr3 = ld_n(cbase + dn + c + 12u, select(0u, nq3, first));
                let ok0 = (dn + lane < p.dqk) & first;
                let ok1 = (dn + r1 < p.dqk) & first;
                cr0 = ld_c(ce0 + dn * p.dv, select(0u, nv0, ok0));
                cr1 = ld_c(ce0 + dn * p.dv + 4u, select(0u, nv1, ok0));
                cr2 = ld_c(ce1 + dn * p.dv, select(0u, nv0, ok1));
                cr3 = ld_c(ce1 + dn * p.dv + 4u, select(0u, nv1, ok1));
            } else {
                // After the last slice: the v block of the key block.
                vr0 = ld_proj(ve0, select(0u, nv0, lane < jlen));
                vr1 = ld_proj(ve0 + 4u, select(0u, nv1, lane < jlen));
                vr2 = ld_proj(ve1, select(0u, nv0, r1 < jlen));
                vr3 = ld_proj(ve1 + 4u, select(0u, nv1, r1 < jlen));
            }
            // FRAG-deep steps, four written out per iteration (one iteration at 16).
            for (var k4 = 0u; k4 < 64u; k4 += 4u * FRAG) {
                {
                    let o = k4;
                    let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                    let bk0 = coopLoad<FragB>(&ks[cp * LDS + o], LDS);
                    let bk1 = coopLoad<FragB>(&ks[(cp + FRAG) * LDS + o], LDS);
                    let bc0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                    let bc1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                    s00 = coopMultiplyAdd(a0, bk0, s00);
                    s01 = coopMultiplyAdd(a0, bk1, s01);
                    i00 = coopMultiplyAdd(a0, bc0, i00);
                    i01 = coopMultiplyAdd(a0, bc1, i01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                        let bk2 = coopLoad<FragB>(&ks[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bk3 = coopLoad<FragB>(&ks[(cp + 3u * FRAG) * LDS + o], LDS);
                        let bc2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bc3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                        s02 = coopMultiplyAdd(a0, bk2, s02);
                        s03 = coopMultiplyAdd(a0, bk3, s03);
                        s10 = coopMultiplyAdd(a1, bk0, s10);
                        s11 = coopMultiplyAdd(a1, bk1, s11);
                        s12 = coopMultiplyAdd(a1, bk2, s12);
                        s13 = coopMultiplyAdd(a1, bk3, s13);
                        i02 = coopMultiplyAdd(a0, bc2, i02);
                        i03 = coopMultiplyAdd(a0, bc3, i03);
                        i10 = coopMultiplyAdd(a1, bc0, i10);
                        i11 = coopMultiplyAdd(a1, bc1, i11);
                        i12 = coopMultiplyAdd(a1, bc2, i12);
                        i13 = coopMultiplyAdd(a1, bc3, i13);
                    }
                }
                {
                    let o = k4 + 1u * FRAG;
                    let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                    let bk0 = coopLoad<FragB>(&ks[cp * LDS + o], LDS);
                    let bk1 = coopLoad<FragB>(&ks[(cp + FRAG) * LDS + o], LDS);
                    let bc0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                    let bc1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                    s00 = coopMultiplyAdd(a0, bk0, s00);
                    s01 = coopMultiplyAdd(a0, bk1, s01);
                    i00 = coopMultiplyAdd(a0, bc0, i00);
                    i01 = coopMultiplyAdd(a0, bc1, i01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                        let bk2 = coopLoad<FragB>(&ks[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bk3 = coopLoad<FragB>(&ks[(cp + 3u * FRAG) * LDS + o], LDS);
                        let bc2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bc3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                        s02 = coopMultiplyAdd(a0, bk2, s02);
                        s03 = coopMultiplyAdd(a0, bk3, s03);
                        s10 = coopMultiplyAdd(a1, bk0, s10);
                        s11 = coopMultiplyAdd(a1, bk1, s11);
                        s12 = coopMultiplyAdd(a1, bk2, s12);
                        s13 = coopMultiplyAdd(a1, bk3, s13);
                        i02 = coopMultiplyAdd(a0, bc2, i02);
                        i03 = coopMultiplyAdd(a0, bc3, i03);
                        i10 = coopMultiplyAdd(a1, bc0, i10);
                        i11 = coopMultiplyAdd(a1, bc1, i11);
                        i12 = coopMultiplyAdd(a1, bc2, i12);
                        i13 = coopMultiplyAdd(a1, bc3, i13);
                    }
                }
                {
                    let o = k4 + 2u * FRAG;
                    let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                    let bk0 = coopLoad<FragB>(&ks[cp * LDS + o], LDS);
                    let bk1 = coopLoad<FragB>(&ks[(cp + FRAG) * LDS + o], LDS);
                    let bc0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                    let bc1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                    s00 = coopMultiplyAdd(a0, bk0, s00);
                    s01 = coopMultiplyAdd(a0, bk1, s01);
                    i00 = coopMultiplyAdd(a0, bc0, i00);
                    i01 = coopMultiplyAdd(a0, bc1, i01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                        let bk2 = coopLoad<FragB>(&ks[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bk3 = coopLoad<FragB>(&ks[(cp + 3u * FRAG) * LDS + o], LDS);
                        let bc2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bc3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                        s02 = coopMultiplyAdd(a0, bk2, s02);
                        s03 = coopMultiplyAdd(a0, bk3, s03);
                        s10 = coopMultiplyAdd(a1, bk0, s10);
                        s11 = coopMultiplyAdd(a1, bk1, s11);
                        s12 = coopMultiplyAdd(a1, bk2, s12);
                        s13 = coopMultiplyAdd(a1, bk3, s13);
                        i02 = coopMultiplyAdd(a0, bc2, i02);
                        i03 = coopMultiplyAdd(a0, bc3, i03);
                        i10 = coopMultiplyAdd(a1, bc0, i10);
                        i11 = coopMultiplyAdd(a1, bc1, i11);
                        i12 = coopMultiplyAdd(a1, bc2, i12);
                        i13 = coopMultiplyAdd(a1, bc3, i13);
                    }
                }
                {
                    let o = k4 + 3u * FRAG;
                    let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                    let bk0 = coopLoad<FragB>(&ks[cp * LDS + o], LDS);
                    let bk1 = coopLoad<FragB>(&ks[(cp + FRAG) * LDS + o], LDS);
                    let bc0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                    let bc1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                    s00 = coopMultiplyAdd(a0, bk0, s00);
                    s01 = coopMultiplyAdd(a0, bk1, s01);
                    i00 = coopMultiplyAdd(a0, bc0, i00);
                    i01 = coopMultiplyAdd(a0, bc1, i01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                        let bk2 = coopLoad<FragB>(&ks[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bk3 = coopLoad<FragB>(&ks[(cp + 3u * FRAG) * LDS + o], LDS);
                        let bc2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                        let bc3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                        s02 = coopMultiplyAdd(a0, bk2, s02);
                        s03 = coopMultiplyAdd(a0, bk3, s03);
                        s10 = coopMultiplyAdd(a1, bk0, s10);
                        s11 = coopMultiplyAdd(a1, bk1, s11);
                        s12 = coopMultiplyAdd(a1, bk2, s12);
                        s13 = coopMultiplyAdd(a1, bk3, s13);
                        i02 = coopMultiplyAdd(a0, bc2, i02);
                        i03 = coopMultiplyAdd(a0, bc3, i03);
                        i10 = coopMultiplyAdd(a1, bc0, i10);
                        i11 = coopMultiplyAdd(a1, bc1, i11);
                        i12 = coopMultiplyAdd(a1, bc2, i12);
                        i13 = coopMultiplyAdd(a1, bc3, i13);
                    }
                }
            }
            workgroupBarrier();
        }

        // Scores to workgroup memory; the v block transposed over the C_prev slice; with the
        // first key block, the stabiliser's prefix maximum.
        store_sf(s00, rb * SLD + cp, SLD);
        store_sf(s01, rb * SLD + cp + FRAG, SLD);
        if (FRAG == 8u) {
            store_sf(s02, rb * SLD + cp + 2u * FRAG, SLD);
            store_sf(s03, rb * SLD + cp + 3u * FRAG, SLD);
            store_sf(s10, (rb + FRAG) * SLD + cp, SLD);
            store_sf(s11, (rb + FRAG) * SLD + cp + FRAG, SLD);
            store_sf(s12, (rb + FRAG) * SLD + cp + 2u * FRAG, SLD);
            store_sf(s13, (rb + FRAG) * SLD + cp + 3u * FRAG, SLD);
        }
        put_ct(cg, lane, vr0);
        put_ct(cg + 4u, lane, vr1);
        put_ct(cg, r1, vr2);
        put_ct(cg + 4u, r1, vr3);
        red_q[lid] = qn * sc;
        if (first) {
            // Prefix maximum of the s-block's g by subgroup scans: every subgroup scans half
            // (sg % 2) of the block, the second half adds the maximum of the first; subgroups 0
            // and 1 store.
            var run = g_scan;
            for (var d = 1u; d < 32u; d *= 2u) {
                let up = subgroupShuffleUp(run, d);
                run = select(run, max(run, up), lane >= d);
            }
            var carry = subgroupMax(g_carry);
            if (sg % 2u == 0u) {
                carry = NEG;
            }
            run = max(max(run, carry), gfloor);
            if (sg < 2u) {
                gmax[hj] = run;
                beta[hj] = exp(m_prev - run);
            }
        }
        workgroupBarrier();

        // M = S exp(g_j - gmax[s]) on and below the diagonal (chunk-relative positions; f16 into
        // qs), and its row sums. This invocation: row r, columns (lid % 4) + 4 e.
        let gm = gmax[r];
        for (var e = 0u; e < 16u; e++) {
            let j = cq + 4u * e;
            var mv = 0.0;
            if ((jfirst + j <= sfirst + r) & row_ok) {
                mv = sf[r * SLD + j] * exp(gj[j] - gm);
            }
            rs += mv;
            qs[r * LDS + j] = f16(mv);
        }
        red_r[lid] = rs;
        workgroupBarrier();

        // Intra-chunk part M V: A[s][j] = qs[s][j] (row-major), B[j][v] = cst[v][j] (column-major).
        for (var k4 = 0u; k4 < 64u; k4 += 4u * FRAG) {
            {
                let o = k4;
                let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                n00 = coopMultiplyAdd(a0, b0, n00);
                n01 = coopMultiplyAdd(a0, b1, n01);
                if (FRAG == 8u) {
                    let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                    let b2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                    let b3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                    n02 = coopMultiplyAdd(a0, b2, n02);
                    n03 = coopMultiplyAdd(a0, b3, n03);
                    n10 = coopMultiplyAdd(a1, b0, n10);
                    n11 = coopMultiplyAdd(a1, b1, n11);
                    n12 = coopMultiplyAdd(a1, b2, n12);
                    n13 = coopMultiplyAdd(a1, b3, n13);
                }
            }
            {
                let o = k4 + 1u * FRAG;
                let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                n00 = coopMultiplyAdd(a0, b0, n00);
                n01 = coopMultiplyAdd(a0, b1, n01);
                if (FRAG == 8u) {
                    let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                    let b2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                    let b3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                    n02 = coopMultiplyAdd(a0, b2, n02);
                    n03 = coopMultiplyAdd(a0, b3, n03);
                    n10 = coopMultiplyAdd(a1, b0, n10);
                    n11 = coopMultiplyAdd(a1, b1, n11);
                    n12 = coopMultiplyAdd(a1, b2, n12);
                    n13 = coopMultiplyAdd(a1, b3, n13);
                }
            }
            {
                let o = k4 + 2u * FRAG;
                let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                n00 = coopMultiplyAdd(a0, b0, n00);
                n01 = coopMultiplyAdd(a0, b1, n01);
                if (FRAG == 8u) {
                    let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                    let b2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                    let b3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                    n02 = coopMultiplyAdd(a0, b2, n02);
                    n03 = coopMultiplyAdd(a0, b3, n03);
                    n10 = coopMultiplyAdd(a1, b0, n10);
                    n11 = coopMultiplyAdd(a1, b1, n11);
                    n12 = coopMultiplyAdd(a1, b2, n12);
                    n13 = coopMultiplyAdd(a1, b3, n13);
                }
            }
            {
                let o = k4 + 3u * FRAG;
                let a0 = coopLoadT<FragA>(&qs[rb * LDS + o], LDS);
                let b0 = coopLoad<FragB>(&cst[cp * LDS + o], LDS);
                let b1 = coopLoad<FragB>(&cst[(cp + FRAG) * LDS + o], LDS);
                n00 = coopMultiplyAdd(a0, b0, n00);
                n01 = coopMultiplyAdd(a0, b1, n01);
                if (FRAG == 8u) {
                    let a1 = coopLoadT<FragA>(&qs[(rb + FRAG) * LDS + o], LDS);
                    let b2 = coopLoad<FragB>(&cst[(cp + 2u * FRAG) * LDS + o], LDS);
                    let b3 = coopLoad<FragB>(&cst[(cp + 3u * FRAG) * LDS + o], LDS);
                    n02 = coopMultiplyAdd(a0, b2, n02);
                    n03 = coopMultiplyAdd(a0, b3, n03);
                    n10 = coopMultiplyAdd(a1, b0, n10);
                    n11 = coopMultiplyAdd(a1, b1, n11);
                    n12 = coopMultiplyAdd(a1, b2, n12);
                    n13 = coopMultiplyAdd(a1, b3, n13);
                }
            }
        }
        if (jb < sb) {
            // The next key block restages q, k, v and g over what M V has just read.
            workgroupBarrier();
        }
    }

    // Per-row normaliser.
    if (lid < 64u) {
        var iv = 0.0;
        if (lid < slen) {
            let b4 = lid * 4u;
            let qdn = red_q[b4] + red_q[b4 + 1u] + red_q[b4 + 2u] + red_q[b4 + 3u];
            let rsum = red_r[b4] + red_r[b4 + 1u] + red_r[b4 + 2u] + red_r[b4 + 3u];
            let den = beta[lid] * qdn + rsum;
            let m = gb[gbase + sfirst + lid] + gmax[lid];
            iv = 1.0 / (max(abs(den), exp(-m)) + p.eps);
        }
        inv[lid] = iv;
    }
    workgroupBarrier();

    let ts = t0 + sfirst;
    let vc = v0 + cp;
    emit(i00, n00, sg, lane, ts, slen, h, rb, vc);
    emit(i01, n01, sg, lane, ts, slen, h, rb, vc + FRAG);
    if (FRAG == 8u) {
        emit(i02, n02, sg, lane, ts, slen, h, rb, vc + 2u * FRAG);
        emit(i03, n03, sg, lane, ts, slen, h, rb, vc + 3u * FRAG);
        emit(i10, n10, sg, lane, ts, slen, h, rb + FRAG, vc);
        emit(i11, n11, sg, lane, ts, slen, h, rb + FRAG, vc + FRAG);
        emit(i12, n12, sg, lane, ts, slen, h, rb + FRAG, vc + 2u * FRAG);
        emit(i13, n13, sg, lane, ts, slen, h, rb + FRAG, vc + 3u * FRAG);
    }
}
