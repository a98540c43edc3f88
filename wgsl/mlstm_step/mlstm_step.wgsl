// mlstm_step.wgsl — one recurrent mLSTM step (decode, and the `recurrent` prefill strategy),
// exactly mlstm_kernels' native step (reference/xlstm.md §2.3):
//   i~, f~ = soft-capped gate pre-activations (cap * tanh(x / cap); soft_cap <= 0: no cap, the
//            original xLSTM's mLSTM);  m' = max(logsigmoid(f~) + m, i~)
//   C' = exp(logsigmoid(f~) + m - m') C + exp(i~ - m') k v^T,   n' likewise with v = 1
//   h  = (q^T C') / (max(|q^ . n'|, exp(-m')) + eps),  q^ = q / sqrt(dqk)
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<f32>, row `row` holds q, k, v, raw i, raw f
//   at their column offsets (read); 2 bias: array<f32> [2 * num_heads] (read);
//   3 c: array<f32> [num_heads, dqk, dv], updated in place (read_write);
//   4 n: array<f32> [2, num_heads, dqk]; 5 m: array<f32> [2, num_heads] (read_write): n and m are
//   double-buffered by `parity` because every dv tile reads the old n while tile 0 writes the new;
//   6 hout: array<f32>, h written at out_offset + head * dv (read_write).
// Workgroup: 256 invocations = TILE_V dv columns x (256 / TILE_V) row groups; row-group partials
//   reduce in workgroup memory; each invocation loads UNROLL rows of its column before using
//   them (memory-level parallelism). Narrow tiles give enough workgroups to keep a large GPU busy
//   (7B: 32 tiles x 8 heads) while each row of a tile is still one contiguous read.
// Grid: (ceil(dv / TILE_V), num_heads, 1).
// Precision: f32 state and gate math.

const TILE_V: u32 = 16u;
const GROUPS: u32 = 16u; // 256 / TILE_V
const UNROLL: u32 = 8u; // C rows per invocation with loads in flight together

struct Params {
    num_heads: u32,
    dqk: u32,
    dv: u32,
    row: u32,
    proj_stride: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    i_col: u32,
    f_col: u32,
    parity: u32,
    out_offset: u32,
    scale: f32,
    eps: f32,
    soft_cap: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> n: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> hout: array<f32>;

var<workgroup> red: array<f32, 256>;

fn log1p_small(z: f32) -> f32 {
    if (z < 1e-4) {
        return z * (1.0 - z * (0.5 - z / 3.0));
    }
    return log(1.0 + z);
}

fn log_sigmoid(v: f32) -> f32 {
    return min(v, 0.0) - log1p_small(exp(-abs(v)));
}

fn soft_cap(v: f32, cap: f32) -> f32 {
    if (cap <= 0.0) {
        return v;
    }
    return cap * tanh(v / cap);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let vl = lid % TILE_V;
    let rg = lid / TILE_V;
    let v = wid.x * TILE_V + vl;
    let row = p.row * p.proj_stride;
    let src = p.parity;
    let dst = 1u - p.parity;

    let ig = soft_cap(proj[row + p.i_col + h] + bias[h], p.soft_cap);
    let fg = soft_cap(proj[row + p.f_col + h] + bias[p.num_heads + h], p.soft_cap);
    let m_old = m[src * p.num_heads + h];
    let flog = log_sigmoid(fg);
    let m_new = max(flog + m_old, ig);
    let fp = exp(flog + m_old - m_new);
    let ip = exp(ig - m_new);

    // q^ . n' over all of dqk (every tile needs it); tile 0 also stores n'.
    var qn = 0.0;
    for (var q = lid; q < p.dqk; q += 256u) {
        let kq = proj[row + p.k_col + h * p.dqk + q];
        let nn = fp * n[src * p.num_heads * p.dqk + h * p.dqk + q] + ip * kq;
        qn = fma(proj[row + p.q_col + h * p.dqk + q] * p.scale, nn, qn);
        if (wid.x == 0u) {
            n[dst * p.num_heads * p.dqk + h * p.dqk + q] = nn;
        }
    }
    red[lid] = qn;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    let qdotn = red[0];
    workgroupBarrier();

    // UNROLL rows per pass, all their C loads issued before any is used: decode reads and writes
    // the whole C state every token, and one load in flight per invocation leaves the memory
    // system mostly idle.
    var acc = 0.0;
    if (v < p.dv) {
        let vv = proj[row + p.v_col + h * p.dv + v];
        for (var q0 = rg; q0 < p.dqk; q0 += GROUPS * UNROLL) {
            var cv: array<f32, UNROLL>;
            for (var j = 0u; j < UNROLL; j++) {
                let q = q0 + j * GROUPS;
                if (q < p.dqk) {
                    cv[j] = c[(h * p.dqk + q) * p.dv + v];
                }
            }
            for (var j = 0u; j < UNROLL; j++) {
                let q = q0 + j * GROUPS;
                if (q < p.dqk) {
                    let cn = fp * cv[j] + ip * proj[row + p.k_col + h * p.dqk + q] * vv;
                    c[(h * p.dqk + q) * p.dv + v] = cn;
                    acc = fma(proj[row + p.q_col + h * p.dqk + q] * p.scale, cn, acc);
                }
            }
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var half = 128u; half >= TILE_V; half /= 2u) {
        if (lid < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    if (rg == 0u && v < p.dv) {
        let num = red[vl];
        hout[p.out_offset + h * p.dv + v] = num / (max(abs(qdotn), exp(-m_new)) + p.eps);
    }
    if (wid.x == 0u && lid == 0u) {
        m[dst * p.num_heads + h] = m_new;
    }
}
