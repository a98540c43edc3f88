// mlstm_gates.wgsl — per-chunk gate preparation for the chunkwise mLSTM (mlstm_kernels native
// chunkwise, reference/xlstm.md §2.4):
//   i~[h, t] = cap * tanh((P[t, i_col + h] + bias_i[h]) / cap)
//   b[h, t]  = inclusive cumsum over the chunk of logsigmoid(cap * tanh((P[t, f_col + h] + bias_f[h]) / cap))
// A soft_cap <= 0 means no cap (the gate pre-activation as is: the original xLSTM's mLSTM).
//
// Bindings (group 0): 0 uniform Params; 1 proj: array<f32> [tokens, proj_stride] (read);
//   2 bias: array<f32> [2 * num_heads], input-gate biases then forget-gate biases (read);
//   3 gi: array<f32> [num_heads, tokens] (read_write); 4 gb: array<f32> [num_heads, tokens] (read_write).
// Workgroup: 256 invocations, one per chunk position (chunk <= 256); the cumsum is a serial loop
//   of at most 256 adds by one invocation, which is negligible next to the chunk kernels.
// Grid: (number of chunks, num_heads, 1).
// Precision: f32.

struct Params {
    tokens: u32,
    chunk: u32,
    num_heads: u32,
    proj_stride: u32,
    i_col: u32,
    f_col: u32,
    soft_cap: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> gi: array<f32>;
@group(0) @binding(4) var<storage, read_write> gb: array<f32>;

var<workgroup> flog: array<f32, 256>;

fn soft_cap(v: f32, cap: f32) -> f32 {
    if (cap <= 0.0) {
        return v;
    }
    return cap * tanh(v / cap);
}

// log(1 + z) for z in [0, 1], accurate also for tiny z where 1 + z rounds to 1.
fn log1p_small(z: f32) -> f32 {
    if (z < 1e-4) {
        return z * (1.0 - z * (0.5 - z / 3.0));
    }
    return log(1.0 + z);
}

fn log_sigmoid(v: f32) -> f32 {
    return min(v, 0.0) - log1p_small(exp(-abs(v)));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) s: u32) {
    let c = wid.x;
    let h = wid.y;
    let t = c * p.chunk + s;
    let in_chunk = s < p.chunk && t < p.tokens;
    if (in_chunk) {
        let row = t * p.proj_stride;
        gi[h * p.tokens + t] = soft_cap(proj[row + p.i_col + h] + bias[h], p.soft_cap);
        flog[s] = log_sigmoid(soft_cap(proj[row + p.f_col + h] + bias[p.num_heads + h], p.soft_cap));
    }
    workgroupBarrier();
    if (s == 0u) {
        var acc = 0.0;
        let len = min(p.chunk, p.tokens - c * p.chunk);
        for (var j = 0u; j < len; j++) {
            acc += flog[j];
            gb[h * p.tokens + c * p.chunk + j] = acc;
        }
    }
}
