// slstm_step.wgsl — ONE time step of the sLSTM cell, spread over many workgroups (the per-token
// path for wide heads: a step's 4·NH·DH² recurrent multiply-adds run on the whole GPU instead of
// one workgroup per head). Math of the xlstm package's sLSTM (reference/xlstm.md §3.4), gate
// order (i, f, z, o), per unit u = h*DH + j of head h:
//   raw_g = wx[t, g, u] + bias[g, u] + sum_d R[h, g*DH + j, d] * y_{t-1}[h*DH + d]
//   m' = i_raw if first step else max(i_raw, m + logsigmoid(f_raw))
//   i = min(exp(i_raw - m'), 1), f = min(exp(m + logsigmoid(f_raw) - m'), 1)
//   c' = f c + i tanh(z_raw), n' = f n + i, y' = sigmoid(o_raw) c' / n'
// First step: the package's all(n == 0) rule, checked here on the head's own n when
// Params.check_first is set (the host sets it on the first step of each call; every later step
// of a call reads a state this kernel wrote). After any step n > 0 for every unit (one of the
// gates i, f is exp(0) = 1 and n' = f n + i), so for every reachable state the head's n is all
// zero exactly when the whole layer's is; exact for states restored mid-sequence too.
//
// Bindings (group 0): 0 uniform Params; 1 wx: array<f32> [tokens, 4, E] input pre-activations,
//   gate-major per token, row Params.t is read (read); 2 bias: array<f32> [4, E] (read);
//   3 r: array<f32> [NH, 4*DH, DH], the recurrent kernel in the vanilla layout (read);
//   4 s_in: array<f32> [4, E] = (y, c, n, m) before the step (only read; declared read_write so
//   it may share a buffer with hout or s_out's neighbours); 5 s_out: array<f32> [4, E], the state
//   after the step (read_write; must not overlap s_in); 6 hout: array<f32> [tokens, E], y of the
//   step written to row Params.t (read_write). The host ping-pongs s_in / s_out between two
//   buffers from step to step.
// Workgroup: 256 invocations = 4*UNITS rows of R (the 4 gates of UNITS consecutive units j of one
//   head) x LANES invocations per row. The LANES invocations of a row read it with stride LANES
//   (coalesced) against y_{t-1} staged in workgroup memory in tiles of YT values (any DH), their
//   partial sums are added in workgroup memory (no subgroup operations), then invocation k < UNITS
//   updates unit j0 + k. LANES is specialised by the host (8, 16 or 32; UNITS = 64 / LANES).
//   Workgroup memory: YT + 256 + 64 floats and one flag (about 5.3 KiB).
// Grid: (ceil(DH / UNITS), NH, 1).
// Precision: f32 throughout (state, gates, accumulation).

struct Params {
    num_heads: u32,
    head_dim: u32,
    t: u32,           // the token: row of wx read and row of hout written
    check_first: u32, // 1: apply the all(n == 0) first-step check to s_in
}

const LANES: u32 = 16u;
const UNITS: u32 = 64u / LANES;
const YT: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> s_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> s_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> hout: array<f32>;

var<workgroup> ys: array<f32, YT>;
var<workgroup> partial: array<f32, 256>;
var<workgroup> raw: array<f32, 64>; // [4][UNITS] (LANES >= 4)
var<workgroup> n_nonzero: atomic<u32>;

fn log_sigmoid(v: f32) -> f32 {
    let z = exp(-abs(v));
    var l = log(1.0 + z);
    if (z < 1e-4) {
        l = z * (1.0 - z * (0.5 - z / 3.0));
    }
    return min(v, 0.0) - l;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let dh = p.head_dim;
    let e = p.num_heads * dh;
    let j0 = wid.x * UNITS;
    let head0 = h * dh;
    // This invocation's row of R: gate g of unit j, lane `lane` of LANES.
    let k = lid / LANES;
    let lane = lid % LANES;
    let g = k / UNITS;
    let j = j0 + k % UNITS;
    let row = ((h * 4u + g) * dh + j) * dh;
    let check = p.check_first != 0u;

    if (lid == 0u) {
        atomicStore(&n_nonzero, 0u);
    }
    var acc = 0.0;
    for (var d0 = 0u; d0 < dh; d0 += YT) {
        let len = min(YT, dh - d0);
        workgroupBarrier(); // the previous tile is consumed (and the flag reset is visible)
        for (var d = lid; d < len; d += 256u) {
            ys[d] = s_in[head0 + d0 + d];
            if (check && s_in[2u * e + head0 + d0 + d] != 0.0) {
                atomicOr(&n_nonzero, 1u);
            }
        }
        workgroupBarrier();
        if (j < dh) {
            let base = row + d0;
            for (var d = lane; d < len; d += LANES) {
                acc = fma(r[base + d], ys[d], acc);
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lid < 4u * UNITS) {
        let gk = lid / UNITS;
        let jk = j0 + lid % UNITS;
        if (jk < dh) {
            var sum = 0.0;
            for (var l = 0u; l < LANES; l++) {
                sum += partial[lid * LANES + l];
            }
            let u = head0 + jk;
            raw[lid] = sum + wx[(p.t * 4u + gk) * e + u] + bias[gk * e + u];
        }
    }
    workgroupBarrier();
    let fresh = check && atomicLoad(&n_nonzero) == 0u;
    let ju = j0 + lid;
    if (lid < UNITS && ju < dh) {
        let u = head0 + ju;
        let i_raw = raw[lid];
        let f_raw = raw[UNITS + lid];
        let z_raw = raw[2u * UNITS + lid];
        let o_raw = raw[3u * UNITS + lid];
        let c = s_in[e + u];
        let n = s_in[2u * e + u];
        let m = s_in[3u * e + u];
        let lfm = m + log_sigmoid(f_raw);
        var m_new = max(i_raw, lfm);
        if (fresh) {
            m_new = i_raw;
        }
        let ig = min(exp(i_raw - m_new), 1.0);
        let fg = min(exp(lfm - m_new), 1.0);
        let c_new = fg * c + ig * tanh(z_raw);
        let n_new = fg * n + ig;
        let y = c_new / n_new / (1.0 + exp(-o_raw));
        s_out[u] = y;
        s_out[e + u] = c_new;
        s_out[2u * e + u] = n_new;
        s_out[3u * e + u] = m_new;
        hout[p.t * e + u] = y;
    }
}
