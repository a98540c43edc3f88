// slstm_seq.wgsl — the sLSTM cell over many tokens in ONE dispatch: a persistent workgroup per
// head loops over time with barriers (the recurrence is sequential in t, parallel over units),
// instead of one dispatch per token. The host runs a long sequence as a few such dispatches of
// Params.tokens steps each (ops/slstm.rs: lavapipe silently ends all loops of an invocation after
// 65535 iterations in total, and it bounds the length of one dispatch). Math of the xlstm package's sLSTM (reference/xlstm.md §3.4),
// gate order (i, f, z, o), per unit u of head h:
//   raw_g = wx[t, g, u] + bias[g, u] + sum_d R[h, g*DH + j, d] * y_{t-1}[h*DH + d]
//   m' = i_raw if first step else max(i_raw, m + logsigmoid(f_raw))
//   (first step: the package's all(n == 0) rule. It is checked here on the head's own n at the
//   dispatch's first step: after any step n > 0 for every unit, because one of the gates i, f is
//   exp(0) = 1 and n' = f n + i, so for every reachable state the head's n is all zero exactly
//   when the whole layer's is, and after one step the rule never applies again. Exact for
//   restored states too.)
//   i = min(exp(i_raw - m'), 1), f = min(exp(m + logsigmoid(f_raw) - m'), 1)
//   c' = f c + i tanh(z_raw), n' = f n + i, y' = sigmoid(o_raw) c' / n'
//
// Bindings (group 0): 0 uniform Params; 1 wx: array<f32> [T, 4, E] input pre-activations,
//   gate-major per token, rows t0 .. t0 + tokens read; 2 bias: array<f32> [4, E] (read); 3 r: array<f32>
//   [NH, 4*DH, DH], the recurrent kernel in the vanilla layout (read); 4 state: array<f32>
//   [4, E] = (y, c, n, m), read at the start and written at the end (read_write);
//   5 hout: array<f32> [T, E], y at every step, rows t0 .. t0 + tokens written (read_write).
// Workgroup: 256 invocations for one head; invocation k computes the recurrent pre-activations
//   of (gate, unit) pairs k, k + 256, ... and, for k < DH, the state update of unit k.
//   Workgroup memory: y_{t-1}, the 4*DH pre-activations and one flag (about 5 KiB).
// Grid: (NH, 1, 1).
// Precision: f32.

struct Params {
    tokens: u32, // steps of this dispatch
    num_heads: u32,
    head_dim: u32,
    t0: u32, // first token: rows t0 .. t0 + tokens of wx and hout
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
var<workgroup> n_nonzero: atomic<u32>; // some unit of the head has n != 0 (not the first step)

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
    if (lid == 0u) {
        atomicStore(&n_nonzero, 0u);
    }
    workgroupBarrier();
    if (owns_unit) {
        y_prev[lid] = state[u];
        c = state[e + u];
        n = state[2u * e + u];
        m = state[3u * e + u];
        if (n != 0.0) {
            atomicOr(&n_nonzero, 1u);
        }
    }
    workgroupBarrier();
    let fresh = atomicLoad(&n_nonzero) == 0u;
    for (var i = 0u; i < p.tokens; i++) {
        let t = p.t0 + i;
        for (var k = lid; k < 4u * dh; k += 256u) {
            let g = k / dh;
            let j = k % dh;
            let row = (h * 4u * dh + k) * dh;
            // Four independent sums (fewer loop iterations, more parallelism), then the tail.
            var a = vec4<f32>(0.0);
            var d = 0u;
            for (; d + 4u <= dh; d += 4u) {
                let rv = vec4<f32>(r[row + d], r[row + d + 1u], r[row + d + 2u], r[row + d + 3u]);
                let yv = vec4<f32>(y_prev[d], y_prev[d + 1u], y_prev[d + 2u], y_prev[d + 3u]);
                a = fma(rv, yv, a);
            }
            var acc = wx[(t * 4u + g) * e + h * dh + j] + bias[g * e + h * dh + j];
            acc += (a.x + a.y) + (a.z + a.w);
            for (; d < dh; d++) {
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
            if (fresh && i == 0u) {
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
