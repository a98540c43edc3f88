// sample.wgsl — draws the next token on the GPU from one row of logits, so sampled decoding keeps
// its ids on the GPU like greedy decoding does. Temperature, then top-k, then top-p (nucleus),
// then a draw from the renormalised distribution:
//   w_i = exp((l_i - max) / temperature) for the first `vocab` entries,
//   keep the k largest (top_k = 0: all), then the smallest set of largest w whose mass reaches
//   top_p of the kept mass (top_p >= 1: all), draw u ~ U[0, kept mass) and return the token whose
//   cumulative weight (in vocabulary order) first exceeds u.
// Thresholds are found by a 32-step bisection over the order-preserving integer image of the f32
// logits, so ties at a threshold are all kept (a top-k may then keep a few more than k).
// A NaN or an infinity among the `vocab` entries makes the draw meaningless: the id is then
// NON_FINITE_ID (0xffffffff), which the host reports as an error (the embedding kernel skips ids
// outside the vocabulary, so a decode batch that feeds it back stays in bounds).
// The random number is a hash of (seed, counter[0]); counter[0] is incremented by every call, so
// a replayed plan draws fresh numbers and a seeded session is reproducible.
//
// Bindings (group 0): 0 uniform Params; 1 logits: array<f32> (read); 2 out: array<u32>
//   (read_write; the id goes to out[first] and, unless second == 0xffffffff, out[second]);
//   3 counter: array<u32> (read_write; counter[0]).
// Workgroup: 256 invocations, one row; every reduction goes through workgroup memory.
// Grid: (1, 1, 1).
// Precision: f32 weights, f32 sums.

struct Params {
    vocab: u32,       // entries considered (the tokenizer's vocabulary)
    row_offset: u32,  // first logit of the row
    top_k: u32,
    seed: u32,
    temperature: f32,
    top_p: f32,
    first: u32,
    second: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> counter: array<u32>;

var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
// Set when any entry is NaN or infinite.
var<workgroup> non_finite: atomic<u32>;

const NON_FINITE_ID: u32 = 0xffffffffu;

// NaN or +-inf, tested on the bits: float comparisons may be compiled assuming neither occurs.
fn is_non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

fn hash(x_in: u32) -> u32 {
    var x = x_in;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// Order-preserving image of an f32 in u32 (larger float -> larger key).
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sum_f(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            red_f[lid] += red_f[lid + half];
        }
        workgroupBarrier();
    }
    let total = red_f[0];
    workgroupBarrier();
    return total;
}

fn max_f(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            red_f[lid] = max(red_f[lid], red_f[lid + half]);
        }
        workgroupBarrier();
    }
    let total = red_f[0];
    workgroupBarrier();
    return total;
}

fn sum_u(lid: u32, v: u32) -> u32 {
    red_u[lid] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            red_u[lid] += red_u[lid + half];
        }
        workgroupBarrier();
    }
    let total = red_u[0];
    workgroupBarrier();
    return total;
}

fn weight(i: u32, mx: f32) -> f32 {
    return exp((logits[p.row_offset + i] - mx) / p.temperature);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    // Cleared explicitly: the kernel must not depend on workgroup memory being zero-initialised.
    if (lid == 0u) {
        atomicStore(&non_finite, 0u);
    }
    workgroupBarrier();
    let n = p.vocab;
    var m = -3.4e38;
    var bad = false;
    for (var i = lid; i < n; i += 256u) {
        let v = logits[p.row_offset + i];
        bad = bad || is_non_finite(v);
        m = max(m, v);
    }
    if (bad) {
        atomicOr(&non_finite, 1u);
    }
    // (max_f's barriers also make the flag visible to every invocation.)
    let mx = max_f(lid, m);

    // Top-k: the largest key threshold that still keeps at least k entries.
    var kmin = 0u;
    if (p.top_k > 0u && p.top_k < n) {
        var lo = 0u;
        for (var bit = 31; bit >= 0; bit--) {
            let cand = lo | (1u << u32(bit));
            var c = 0u;
            for (var i = lid; i < n; i += 256u) {
                c += u32(key(logits[p.row_offset + i]) >= cand);
            }
            if (sum_u(lid, c) >= p.top_k) {
                lo = cand;
            }
        }
        kmin = lo;
    }

    // Top-p: the largest key threshold whose kept mass still reaches top_p of the top-k mass.
    var total = 0.0;
    for (var i = lid; i < n; i += 256u) {
        if (key(logits[p.row_offset + i]) >= kmin) {
            total += weight(i, mx);
        }
    }
    total = sum_f(lid, total);
    var tmin = kmin;
    if (p.top_p < 1.0) {
        var lo = kmin;
        for (var bit = 31; bit >= 0; bit--) {
            let cand = lo | (1u << u32(bit));
            var s = 0.0;
            for (var i = lid; i < n; i += 256u) {
                if (key(logits[p.row_offset + i]) >= cand) {
                    s += weight(i, mx);
                }
            }
            if (sum_f(lid, s) >= p.top_p * total) {
                lo = cand;
            }
        }
        tmin = lo;
    }

    // The draw: contiguous slices per invocation, an exclusive scan of their masses, and the slice
    // holding u scanned element by element.
    let per = (n + 255u) / 256u;
    let begin = min(lid * per, n);
    let end = min(begin + per, n);
    var mine = 0.0;
    for (var i = begin; i < end; i++) {
        if (key(logits[p.row_offset + i]) >= tmin) {
            mine += weight(i, mx);
        }
    }
    red_f[lid] = mine;
    workgroupBarrier();
    if (lid == 0u) {
        var acc = 0.0;
        for (var j = 0u; j < 256u; j++) {
            let v = red_f[j];
            red_f[j] = acc;
            acc += v;
        }
        let ctr = counter[0];
        let r = f32(hash(hash(p.seed) ^ hash(ctr + 0x9e3779b9u)) >> 8u) / 16777216.0;
        red_u[0] = bitcast<u32>(r * acc);
        red_u[1] = 0xffffffffu;
        counter[0] = ctr + 1u;
    }
    workgroupBarrier();
    let u = bitcast<f32>(red_u[0]);
    let start = red_f[lid];
    if (start <= u && u < start + mine) {
        var acc = start;
        var chosen = 0xffffffffu;
        for (var i = begin; i < end; i++) {
            if (key(logits[p.row_offset + i]) >= tmin) {
                acc += weight(i, mx);
                if (u < acc) {
                    chosen = i;
                    break;
                }
            }
        }
        if (chosen == 0xffffffffu) {
            chosen = end - 1u; // rounding at the slice's end
        }
        red_u[1] = chosen; // the slices' ranges are disjoint: one writer at most
    }
    workgroupBarrier();
    if (lid == 0u) {
        var id = red_u[1];
        if (atomicLoad(&non_finite) != 0u) {
            id = NON_FINITE_ID;
        } else if (id == 0xffffffffu) {
            // u fell past the last slice by rounding: the last kept entry.
            id = 0u;
            for (var i = n; i > 0u; i--) {
                if (key(logits[p.row_offset + i - 1u]) >= tmin) {
                    id = i - 1u;
                    break;
                }
            }
        }
        out[p.first] = id;
        if (p.second != 0xffffffffu) {
            out[p.second] = id;
        }
    }
}
