// mlstm_chunk_state_coop.wgsl — chunkwise mLSTM phase 1 with the chunk's product on the matrix
// units (cooperative matrices): the state at every chunk boundary, sequential over chunks. Same
// math, bindings, parameters and grid as mlstm_chunk_state.wgsl (reference/xlstm.md §2.4):
//   a_s = (b_L - b_s) + i~_s,  g = b_L,  m_k = max(g + m_{k-1}, max_s a_s)
//   C_k = exp(g + m_{k-1} - m_k) C_{k-1} + (K ⊙ exp(a - m_k))^T V,  n_k likewise with v = 1
// The last chunk of a segment may be shorter than `chunk` (L is then its real length).
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<vec4<f32>> [tokens, proj_stride] holding k
//   at column k_col + h * dqk and v at v_col + h * dv (read; any alignment: unaligned rows load
//   per element); 2 gi, 3 gb: array<f32> [num_heads, tokens] from mlstm_gates (read);
//   4 cb: array<f32> [chunks + 1, num_heads, dqk, dv]; 5 nb: array<f32> [chunks + 1, num_heads,
//   dqk]; 6 mb: array<f32> [chunks + 1, num_heads] (read_write). Index c of the boundary buffers
//   is the state before chunk c; this dispatch reads index c_begin and writes c_begin + 1 ..= c_end.
// Workgroup: 256 invocations = 8 subgroups of 32 (the host uses this kernel only where the
//   subgroup size is 32) own a 64 (dqk) x 64 (dv) tile of C for the whole chunk range, in f32
//   registers: invocation lid holds column lid % 64 of rows lid / 64 + 4 e (e < 16). A chunk (up
//   to 256 positions, one gate per invocation) is walked in slices of 64 positions: per slice,
//   subgroup sg stages columns 8 sg .. 8 sg + 7 of k ⊙ exp(a - m_k) and of v for positions
//   lane and lane + 32, transposed and converted to f16 ([64 columns][64 positions + 8]), so the
//   product loads its A operand row-major and its B operand column-major (the layouts
//   gemm_coop.wgsl uses); the next slice's k and v (with the next chunk's first, its gates) are
//   fetched into registers meanwhile. A chunk of <= 64 is one slice.
//   Subgroup sg multiplies rows 16 (sg % 4) .. + 16 x columns 32 (sg / 4) .. + 32 of
//   (K ⊙ ā)^T V (f32 accumulator fragments of FRAG x FRAG: 1 x 2 of 16x16 or 2 x 4 of 8x8, in
//   64 / FRAG steps per slice). The product
//   goes through f32 workgroup memory into the registers: C = exp(g + m_prev - m) C + P, stored
//   to the boundary. n sums the f32 k ⊙ ā over positions (subgroupAdd per column). Workgroup
//   memory: 37,136 bytes. Every workgroup variable is a multiple of 16 bytes: the driver may lay
//   them out in any order, and the matrix loads and stores need 16-byte aligned rows (a 4-byte
//   variable placed first shifted the stored product by one column on the H100).
// Grid: (ceil(dqk / 64), ceil(dv / 64), heads in the band); head = head0 + z.
// Precision: k ⊙ ā and v rounded to f16 for the product, f32 accumulation; C, n, m, the gates
//   and the decay in f32. Only the f16-weight mode uses it.
// Requires: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX with FRAG^3 f16 -> f32, and
//   37,136 bytes of workgroup memory.

enable f16;
enable wgpu_cooperative_matrix;

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

const LDS: u32 = 72u; // f16 row stride: 64 + 8 padding halves
const SLD: u32 = 68u; // f32 row stride of the product tile
const NEG: f32 = -3.4e38;

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
@group(0) @binding(4) var<storage, read_write> cb: array<f32>;
@group(0) @binding(5) var<storage, read_write> nb: array<f32>;
@group(0) @binding(6) var<storage, read_write> mb: array<f32>;

var<workgroup> kst: array<f16, 4608>; // [64 q][LDS]: (k ⊙ ā)^T (this tile's dqk rows x positions)
var<workgroup> vst: array<f16, 4608>; // [64 v][LDS]: v^T (this tile's dv columns x positions)
var<workgroup> pf: array<f32, 4352>; // [64 q][SLD]: the chunk's product
var<workgroup> nsum: array<f32, 64>; // sum over the chunk of k ⊙ ā, per q
var<workgroup> av: array<f32, 256>;  // i~_s - b_s (NEG past the chunk; chunk <= 256)
var<workgroup> glast: array<f32, 4>; // [0]: b at the chunk's last position (16 bytes, see above)

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

// Four consecutive columns c .. c + 3 of position s, transposed: [column][position].
fn put_kt(c: u32, s: u32, v: vec4<f32>) {
    kst[c * LDS + s] = f16(v.x);
    kst[(c + 1u) * LDS + s] = f16(v.y);
    kst[(c + 2u) * LDS + s] = f16(v.z);
    kst[(c + 3u) * LDS + s] = f16(v.w);
}

fn put_vt(c: u32, s: u32, v: vec4<f32>) {
    vst[c * LDS + s] = f16(v.x);
    vst[(c + 1u) * LDS + s] = f16(v.y);
    vst[(c + 2u) * LDS + s] = f16(v.z);
    vst[(c + 3u) * LDS + s] = f16(v.w);
}

// (naga's SPIR-V writer needs the store's offset and stride as plain values: function arguments)
fn store_pf(c: FragC, o: u32, stride: u32) {
    coopStoreT(c, &pf[o], stride);
}

fn c_index(c: u32, h: u32, q: u32, v: u32) -> u32 {
    return ((c * p.num_heads + h) * p.dqk + q) * p.dv + v;
}

// C[q, v] of boundary c (0 outside the matrix).
fn load_c(c: u32, h: u32, q: u32, v: u32) -> f32 {
    if ((q < p.dqk) & (v < p.dv)) {
        return cb[c_index(c, h, q, v)];
    }
    return 0.0;
}

// Rows q, q + 4, q + 8, q + 12 of column v: gbar * c + the product, stored at boundary `out`.
fn update4(c: vec4<f32>, gbar: f32, out: u32, h: u32, q: u32, ql: u32, v: u32, vl: u32) -> vec4<f32> {
    let pv = vec4<f32>(pf[ql * SLD + vl], pf[(ql + 4u) * SLD + vl], pf[(ql + 8u) * SLD + vl],
                       pf[(ql + 12u) * SLD + vl]);
    let r = fma(vec4<f32>(gbar), c, pv);
    if (v < p.dv) {
        for (var j = 0u; j < 4u; j++) {
            if (q + 4u * j < p.dqk) {
                cb[c_index(out, h, q + 4u * j, v)] = r[j];
            }
        }
    }
    return r;
}

// One 64-position slice of k and v in registers (the staging role below): positions lane and
// lane + 32 of the slice, columns cg .. cg + 7 of both tiles.
struct Slice64 {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// The slice of positions t .. t + 64 of which the first `valid` exist; kc / vc the columns, nk* /
// nv* their counts.
fn fetch(t: u32, valid: u32, lane: u32, kc: u32, vc: u32, nk0: u32, nk1: u32, nv0: u32, nv1: u32) -> Slice64 {
    let s1 = lane + 32u;
    let e0 = (t + lane) * p.proj_stride;
    let e1 = (t + s1) * p.proj_stride;
    var r: Slice64;
    r.k0 = ld_proj(e0 + kc, select(0u, nk0, lane < valid));
    r.k1 = ld_proj(e0 + kc + 4u, select(0u, nk1, lane < valid));
    r.k2 = ld_proj(e1 + kc, select(0u, nk0, s1 < valid));
    r.k3 = ld_proj(e1 + kc + 4u, select(0u, nk1, s1 < valid));
    r.v0 = ld_proj(e0 + vc, select(0u, nv0, lane < valid));
    r.v1 = ld_proj(e0 + vc + 4u, select(0u, nv1, lane < valid));
    r.v2 = ld_proj(e1 + vc, select(0u, nv0, s1 < valid));
    r.v3 = ld_proj(e1 + vc + 4u, select(0u, nv1, s1 < valid));
    return r;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let h = p.head0 + wid.z;
    let qt = wid.x * 64u;
    let vt = wid.y * 64u;
    let owns_n = (wid.y == 0u) & (lid < 64u);

    // State role: column vl of rows ql + 4 e (e < 16), in four vec4 of four rows each.
    let vl = lid % 64u;
    let ql = lid / 64u;
    let vcol = vt + vl;
    let qrow = qt + ql;
    var c0 = vec4<f32>(load_c(p.c_begin, h, qrow, vcol), load_c(p.c_begin, h, qrow + 4u, vcol),
                       load_c(p.c_begin, h, qrow + 8u, vcol), load_c(p.c_begin, h, qrow + 12u, vcol));
    var c1 = vec4<f32>(load_c(p.c_begin, h, qrow + 16u, vcol), load_c(p.c_begin, h, qrow + 20u, vcol),
                       load_c(p.c_begin, h, qrow + 24u, vcol), load_c(p.c_begin, h, qrow + 28u, vcol));
    var c2 = vec4<f32>(load_c(p.c_begin, h, qrow + 32u, vcol), load_c(p.c_begin, h, qrow + 36u, vcol),
                       load_c(p.c_begin, h, qrow + 40u, vcol), load_c(p.c_begin, h, qrow + 44u, vcol));
    var c3 = vec4<f32>(load_c(p.c_begin, h, qrow + 48u, vcol), load_c(p.c_begin, h, qrow + 52u, vcol),
                       load_c(p.c_begin, h, qrow + 56u, vcol), load_c(p.c_begin, h, qrow + 60u, vcol));
    var n = 0.0;
    if (owns_n & (qt + lid < p.dqk)) {
        n = nb[(p.c_begin * p.num_heads + h) * p.dqk + qt + lid];
    }
    var m_prev = mb[p.c_begin * p.num_heads + h];

    // Staging role (by subgroup): positions lane and lane + 32 of a 64-position slice, columns
    // cg .. cg + 7 of both tiles (two vec4 each: k0/k1 at lane, k2/k3 at lane + 32).
    let cg = sg * 8u;
    let nk0 = cnt(p.dqk, qt + cg);
    let nk1 = cnt(p.dqk, qt + cg + 4u);
    let nv0 = cnt(p.dv, vt + cg);
    let nv1 = cnt(p.dv, vt + cg + 4u);
    let kc = p.k_col + h * p.dqk + qt + cg;
    let vc = p.v_col + h * p.dv + vt + cg;
    let s1 = lane + 32u;

    // The first slice of the first chunk into registers, and that chunk's gates (one position
    // per invocation: chunk <= 256).
    var t0 = p.c_begin * p.chunk;
    var len = min(p.chunk, p.tokens - t0);
    var nx = fetch(t0, len, lane, kc, vc, nk0, nk1, nv0, nv1);
    var gbv = 0.0;
    var giv = 0.0;
    if (lid < len) {
        gbv = gb[h * p.tokens + t0 + lid];
        giv = gi[h * p.tokens + t0 + lid];
    }

    let qb = (sg % 4u) * 16u; // this subgroup's dqk rows
    let vp = (sg / 4u) * 32u; // and dv columns
    for (var ci = p.c_begin; ci < p.c_end; ci++) {
        let clen = len; // this chunk's length (len moves on to the next chunk's while fetching)
        let ct0 = t0;
        // Gate statistics of the chunk.
        av[lid] = select(NEG, giv - gbv, lid < clen);
        if (lid + 1u == clen) {
            glast[0] = gbv;
        }
        workgroupBarrier();
        let g = glast[0];
        var amax_part = max(av[lane], av[s1]);
        for (var e = 64u; e < clen; e += 32u) {
            amax_part = max(amax_part, av[e + lane]);
        }
        let amax = subgroupMax(amax_part);
        let m_new = max(g + m_prev, g + amax);
        let gbar = exp(g + m_prev - m_new);

        // P = (K ⊙ ā)^T V over the chunk's 64-position slices: A[q][s] = kst[q][s] (row-major),
        // B[s][v] = vst[v][s] (column-major); n sums the f32 k ⊙ ā (subgroupAdd per column).
        // Fragment pij at dqk rows qb + i FRAG, dv columns vp + j FRAG: p00 and p01 cover the
        // subgroup's 16 x 32 block at 16x16; at 8x8 the 2 x 4 fragments p00 .. p13 do. (Named
        // variables, not an array: drivers keep an array of fragments indexed in a loop in memory.)
        var p00 = FragC();
        var p01 = FragC();
        var p02 = FragC();
        var p03 = FragC();
        var p10 = FragC();
        var p11 = FragC();
        var p12 = FragC();
        var p13 = FragC();
        var ns0 = vec4<f32>();
        var ns1 = vec4<f32>();
        for (var sl = 0u; sl < clen; sl += 64u) {
            if (sl > 0u) {
                // The previous slice's product has read kst and vst.
                workgroupBarrier();
            }
            let cur = nx;
            let a0 = exp(g + av[sl + lane] - m_new);
            let a1 = exp(g + av[sl + s1] - m_new);
            let k0 = cur.k0 * a0;
            let k1 = cur.k1 * a0;
            let k2 = cur.k2 * a1;
            let k3 = cur.k3 * a1;
            put_kt(cg, lane, k0);
            put_kt(cg + 4u, lane, k1);
            put_kt(cg, s1, k2);
            put_kt(cg + 4u, s1, k3);
            put_vt(cg, lane, cur.v0);
            put_vt(cg + 4u, lane, cur.v1);
            put_vt(cg, s1, cur.v2);
            put_vt(cg + 4u, s1, cur.v3);
            ns0 += subgroupAdd(k0 + k2);
            ns1 += subgroupAdd(k1 + k3);
            workgroupBarrier();

            // The next slice (of this chunk, or the next chunk's first with its gates) into
            // registers while this one is multiplied.
            let sn = sl + 64u;
            if (sn < clen) {
                nx = fetch(ct0 + sn, clen - sn, lane, kc, vc, nk0, nk1, nv0, nv1);
            } else if (ci + 1u < p.c_end) {
                t0 = (ci + 1u) * p.chunk;
                len = min(p.chunk, p.tokens - t0);
                nx = fetch(t0, len, lane, kc, vc, nk0, nk1, nv0, nv1);
                if (lid < len) {
                    gbv = gb[h * p.tokens + t0 + lid];
                    giv = gi[h * p.tokens + t0 + lid];
                }
            }

            // FRAG-deep steps, four written out per iteration (one iteration at 16).
            for (var k4 = 0u; k4 < 64u; k4 += 4u * FRAG) {
                {
                    let o = k4;
                    let a0 = coopLoadT<FragA>(&kst[qb * LDS + o], LDS);
                    let b0 = coopLoad<FragB>(&vst[vp * LDS + o], LDS);
                    let b1 = coopLoad<FragB>(&vst[(vp + FRAG) * LDS + o], LDS);
                    p00 = coopMultiplyAdd(a0, b0, p00);
                    p01 = coopMultiplyAdd(a0, b1, p01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&kst[(qb + FRAG) * LDS + o], LDS);
                        let b2 = coopLoad<FragB>(&vst[(vp + 2u * FRAG) * LDS + o], LDS);
                        let b3 = coopLoad<FragB>(&vst[(vp + 3u * FRAG) * LDS + o], LDS);
                        p02 = coopMultiplyAdd(a0, b2, p02);
                        p03 = coopMultiplyAdd(a0, b3, p03);
                        p10 = coopMultiplyAdd(a1, b0, p10);
                        p11 = coopMultiplyAdd(a1, b1, p11);
                        p12 = coopMultiplyAdd(a1, b2, p12);
                        p13 = coopMultiplyAdd(a1, b3, p13);
                    }
                }
                {
                    let o = k4 + 1u * FRAG;
                    let a0 = coopLoadT<FragA>(&kst[qb * LDS + o], LDS);
                    let b0 = coopLoad<FragB>(&vst[vp * LDS + o], LDS);
                    let b1 = coopLoad<FragB>(&vst[(vp + FRAG) * LDS + o], LDS);
                    p00 = coopMultiplyAdd(a0, b0, p00);
                    p01 = coopMultiplyAdd(a0, b1, p01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&kst[(qb + FRAG) * LDS + o], LDS);
                        let b2 = coopLoad<FragB>(&vst[(vp + 2u * FRAG) * LDS + o], LDS);
                        let b3 = coopLoad<FragB>(&vst[(vp + 3u * FRAG) * LDS + o], LDS);
                        p02 = coopMultiplyAdd(a0, b2, p02);
                        p03 = coopMultiplyAdd(a0, b3, p03);
                        p10 = coopMultiplyAdd(a1, b0, p10);
                        p11 = coopMultiplyAdd(a1, b1, p11);
                        p12 = coopMultiplyAdd(a1, b2, p12);
                        p13 = coopMultiplyAdd(a1, b3, p13);
                    }
                }
                {
                    let o = k4 + 2u * FRAG;
                    let a0 = coopLoadT<FragA>(&kst[qb * LDS + o], LDS);
                    let b0 = coopLoad<FragB>(&vst[vp * LDS + o], LDS);
                    let b1 = coopLoad<FragB>(&vst[(vp + FRAG) * LDS + o], LDS);
                    p00 = coopMultiplyAdd(a0, b0, p00);
                    p01 = coopMultiplyAdd(a0, b1, p01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&kst[(qb + FRAG) * LDS + o], LDS);
                        let b2 = coopLoad<FragB>(&vst[(vp + 2u * FRAG) * LDS + o], LDS);
                        let b3 = coopLoad<FragB>(&vst[(vp + 3u * FRAG) * LDS + o], LDS);
                        p02 = coopMultiplyAdd(a0, b2, p02);
                        p03 = coopMultiplyAdd(a0, b3, p03);
                        p10 = coopMultiplyAdd(a1, b0, p10);
                        p11 = coopMultiplyAdd(a1, b1, p11);
                        p12 = coopMultiplyAdd(a1, b2, p12);
                        p13 = coopMultiplyAdd(a1, b3, p13);
                    }
                }
                {
                    let o = k4 + 3u * FRAG;
                    let a0 = coopLoadT<FragA>(&kst[qb * LDS + o], LDS);
                    let b0 = coopLoad<FragB>(&vst[vp * LDS + o], LDS);
                    let b1 = coopLoad<FragB>(&vst[(vp + FRAG) * LDS + o], LDS);
                    p00 = coopMultiplyAdd(a0, b0, p00);
                    p01 = coopMultiplyAdd(a0, b1, p01);
                    if (FRAG == 8u) {
                        let a1 = coopLoadT<FragA>(&kst[(qb + FRAG) * LDS + o], LDS);
                        let b2 = coopLoad<FragB>(&vst[(vp + 2u * FRAG) * LDS + o], LDS);
                        let b3 = coopLoad<FragB>(&vst[(vp + 3u * FRAG) * LDS + o], LDS);
                        p02 = coopMultiplyAdd(a0, b2, p02);
                        p03 = coopMultiplyAdd(a0, b3, p03);
                        p10 = coopMultiplyAdd(a1, b0, p10);
                        p11 = coopMultiplyAdd(a1, b1, p11);
                        p12 = coopMultiplyAdd(a1, b2, p12);
                        p13 = coopMultiplyAdd(a1, b3, p13);
                    }
                }
            }
        }
        // n: the column sums (this subgroup holds all the chunk's positions of its 8 columns).
        if (lane == 0u) {
            nsum[cg] = ns0.x;
            nsum[cg + 1u] = ns0.y;
            nsum[cg + 2u] = ns0.z;
            nsum[cg + 3u] = ns0.w;
            nsum[cg + 4u] = ns1.x;
            nsum[cg + 5u] = ns1.y;
            nsum[cg + 6u] = ns1.z;
            nsum[cg + 7u] = ns1.w;
        }
        store_pf(p00, qb * SLD + vp, SLD);
        store_pf(p01, qb * SLD + vp + FRAG, SLD);
        if (FRAG == 8u) {
            store_pf(p02, qb * SLD + vp + 2u * FRAG, SLD);
            store_pf(p03, qb * SLD + vp + 3u * FRAG, SLD);
            store_pf(p10, (qb + FRAG) * SLD + vp, SLD);
            store_pf(p11, (qb + FRAG) * SLD + vp + FRAG, SLD);
            store_pf(p12, (qb + FRAG) * SLD + vp + 2u * FRAG, SLD);
            store_pf(p13, (qb + FRAG) * SLD + vp + 3u * FRAG, SLD);
        }
        workgroupBarrier();

        // C = gbar C + P, published as the state before chunk ci + 1; n and m likewise.
        let out = ci + 1u;
        c0 = update4(c0, gbar, out, h, qrow, ql, vcol, vl);
        c1 = update4(c1, gbar, out, h, qrow + 16u, ql + 16u, vcol, vl);
        c2 = update4(c2, gbar, out, h, qrow + 32u, ql + 32u, vcol, vl);
        c3 = update4(c3, gbar, out, h, qrow + 48u, ql + 48u, vcol, vl);
        if (owns_n) {
            n = fma(gbar, n, nsum[lid]);
            if (qt + lid < p.dqk) {
                nb[(out * p.num_heads + h) * p.dqk + qt + lid] = n;
            }
        }
        if ((wid.x == 0u) & (wid.y == 0u) & (lid == 0u)) {
            mb[out * p.num_heads + h] = m_new;
        }
        m_prev = m_new;
    }
}
