// argmax.wgsl — greedy token choice: the index of the largest logit of each row (first on ties).
// The result is written to out[first + row] and, when second != 0xffffffff, also to
// out[second + row], so a decode step can feed its own output back as the next step's input
// while also recording it in a history.
//
// A row with a NaN or an infinity among the entries considered has no meaningful choice: its id
// is NON_FINITE_ID (0xffffffff) instead, which the host reports as an error (the embedding kernel
// skips ids outside the vocabulary, so a decode batch that feeds it back stays in bounds).
//
// Only the first `vocab` entries of each row are considered (a model's padded vocabulary rows that
// the tokenizer cannot decode are skipped); rows are `stride` apart (0 = vocab).
// Bindings (group 0): 0 uniform Params; 1 logits: array<f32> [rows, stride] (read);
//   2 out: array<u32> (read_write).
// Workgroup: 256 invocations per row; (value, index) pairs reduce in workgroup memory.
// Grid: (rows, 1, 1).
// Precision: f32 comparisons.

struct Params {
    vocab: u32,
    first: u32,
    second: u32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;
// Set when any entry of the row is NaN or infinite.
var<workgroup> non_finite: atomic<u32>;

const NON_FINITE_ID: u32 = 0xffffffffu;

// NaN or +-inf, tested on the bits: float comparisons may be compiled assuming neither occurs.
fn is_non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Cleared explicitly: the kernel must not depend on workgroup memory being zero-initialised.
    if (lid == 0u) {
        atomicStore(&non_finite, 0u);
    }
    workgroupBarrier();
    let base = wid.x * select(p.vocab, p.stride, p.stride != 0u);
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    var bad = false;
    for (var i = lid; i < p.vocab; i += 256u) {
        let v = logits[base + i];
        bad = bad || is_non_finite(v);
        if (v > bv) {
            bv = v;
            bi = i;
        }
    }
    if (bad) {
        atomicOr(&non_finite, 1u);
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            let ov = best_v[lid + half];
            let oi = best_i[lid + half];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        var id = best_i[0];
        if (atomicLoad(&non_finite) != 0u || id == 0xffffffffu) {
            id = NON_FINITE_ID;
        }
        out[p.first + wid.x] = id;
        if (p.second != 0xffffffffu) {
            out[p.second + wid.x] = id;
        }
    }
}
