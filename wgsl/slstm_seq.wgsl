// slstm_seq.wgsl — the sLSTM cell over a whole sequence in ONE dispatch: a persistent workgroup
// per head loops over time with barriers (the recurrence is sequential in t, parallel over units),
// instead of one dispatch per token. Math of the xlstm package's sLSTM (reference/xlstm.md §3.4),
// gate order (i, f, z, o), per unit u of head h:
//   raw_g = wx[t, g, u] + bias[g, u] + sum_d R[h, g*DH + j, d] * y_{t-1}[h*DH + d]
//   m' = i_raw if first step else max(i_raw, m + logsigmoid(f_raw))
//   i = min(exp(i_raw - m'), 1), f = min(exp(m + logsigmoid(f_raw) - m'), 1)
//   c' = f c + i tanh(z_raw), n' = f n + i, y' = sigmoid(o_raw) c' / n'
//
// Bindings (group 0): 0 uniform Params; 1 wx: array<f32> [tokens, 4, E] input pre-activations,
//   gate-major per token (read); 2 bias: array<f32> [4, E] (read); 3 r: array<f32>
//   [NH, 4*DH, DH], the recurrent kernel in the vanilla layout (read); 4 state: array<f32>
//   [4, E] = (y, c, n, m), read at the start and written at the end (read_write);
//   5 hout: array<f32> [tokens, E], y at every step (read_write).
// Workgroup: 256 invocations for one head; invocation k computes the recurrent pre-activations
//   of (gate, unit) pairs k, k + 256, ... and, for k < DH, the state update of unit k.
//   Workgroup memory: y_{t-1} and the 4*DH pre-activations (at most 5 KiB for DH <= 256).
// Grid: (NH, 1, 1).
// Precision: f32.

struct Params {
    tokens: u32,
    num_heads: u32,
    head_dim: u32,
    first_step: u32, // 1: the state is fresh (the package's all(n == 0) rule applies at t = 0)
}

const MAX_DH: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> hout: array<f32>;

var<workgroup> y_prev: array<f32, MAX_DH>;
var<workgroup> raw: array<f32, 1024>; // [4][MAX_DH]

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
    let h = wid.x;
    let dh = p.head_dim;
    let e = p.num_heads * dh;
    let u = h * dh + lid; // the unit this invocation updates (lid < dh)
    let owns_unit = lid < dh;
    var c = 0.0;
    var n = 0.0;
    var m = 0.0;
    if (owns_unit) {
        y_prev[lid] = state[u];
        c = state[e + u];
        n = state[2u * e + u];
        m = state[3u * e + u];
    }
    workgroupBarrier();
    for (var t = 0u; t < p.tokens; t++) {
        for (var k = lid; k < 4u * dh; k += 256u) {
            let g = k / dh;
            let j = k % dh;
            let row = (h * 4u * dh + k) * dh;
            var acc = wx[(t * 4u + g) * e + h * dh + j] + bias[g * e + h * dh + j];
            for (var d = 0u; d < dh; d++) {
                acc = fma(r[row + d], y_prev[d], acc);
            }
            raw[g * MAX_DH + j] = acc;
        }
        workgroupBarrier();
        if (owns_unit) {
            let i_raw = raw[lid];
            let f_raw = raw[MAX_DH + lid];
            let z_raw = raw[2u * MAX_DH + lid];
            let o_raw = raw[3u * MAX_DH + lid];
            let lfm = m + log_sigmoid(f_raw);
            var m_new = max(i_raw, lfm);
            if (p.first_step != 0u && t == 0u) {
                m_new = i_raw;
            }
            let ig = min(exp(i_raw - m_new), 1.0);
            let fg = min(exp(lfm - m_new), 1.0);
            c = fg * c + ig * tanh(z_raw);
            n = fg * n + ig;
            m = m_new;
            let y = c / n / (1.0 + exp(-o_raw));
            y_prev[lid] = y;
            hout[t * e + u] = y;
        }
        workgroupBarrier();
    }
    if (owns_unit) {
        state[u] = y_prev[lid];
        state[e + u] = c;
        state[2u * e + u] = n;
        state[3u * e + u] = m;
    }
}
