// fill_random.wgsl — fills a weight matrix part with reproducible pseudo-random values, uniform in
// [-scale, scale], directly on the GPU (benchmarks of the 7B shape need no 14 GB file).
// Padding columns (col >= cols within each kp-wide row) are zero, as for loaded weights.
//
// Quantized formats (q8, q4) get random codes and one scale (and bias) for every group that
// spans [-scale, scale] (q8: codes in [-127, 127] times scale / 127; q4: codes in [0, 15] times
// 2 scale / 15 minus scale); the layout is matmul/weight_formats.wgsl's.
//
// Bindings (group 0): 0 uniform Params; 1 w: array<u32> (read_write): one f32, two packed f16,
//   four i8 or eight 4-bit codes per word (WEIGHT_FORMAT), the group scales after values_words.
// Workgroup: 256 invocations, one word each.
// Grid: (min(ceil(words / 256), 65535), ceil(words / (256 * 65535)), 1); word = x + y * 65535 * 256.
// Precision: values are generated in f32 and rounded to the storage format.

const WEIGHT_FORMAT: u32 = 1u; // 0 f32, 1 f16, 2 q8, 3 q4

struct Params {
    words: u32,
    seed: u32,
    scale: f32,
    kp: u32,
    cols: u32,
    first_element: u32, // element index of word 0 within the whole matrix (for seeding)
    values_words: u32, // words holding values; the group scales follow (q8, q4)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;

// A 32-bit integer hash (lowbias32); good enough for benchmark weights.
fn hash(x_in: u32) -> u32 {
    var x = x_in;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn value(e: u32) -> f32 {
    if (e % p.kp >= p.cols) {
        return 0.0;
    }
    let h = hash(e ^ hash(p.seed));
    return (f32(h >> 8u) / 8388608.0 - 1.0) * p.scale; // 24 bits -> [-1, 1)
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let word = gid.x + gid.y * 65535u * 256u;
    if (word >= p.words) {
        return;
    }
    switch (WEIGHT_FORMAT) {
        case 0u: {
            w[word] = bitcast<u32>(value(p.first_element + word));
        }
        case 1u: {
            let e = p.first_element + word * 2u;
            w[word] = pack2x16float(vec2<f32>(value(e), value(e + 1u)));
        }
        default: {
            if (word >= p.values_words) {
                if (WEIGHT_FORMAT == 2u) {
                    let d = p.scale / 127.0;
                    w[word] = pack2x16float(vec2<f32>(d, d));
                } else {
                    w[word] = pack2x16float(vec2<f32>(2.0 * p.scale / 15.0, -p.scale));
                }
                return;
            }
            var bits = hash(word ^ hash(p.seed ^ p.first_element));
            if (WEIGHT_FORMAT == 2u) {
                // No code -128: q8 is symmetric.
                let b = (vec4<u32>(bits) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
                let c = select(b, vec4<u32>(129u), b == vec4<u32>(128u));
                bits = c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
            }
            w[word] = bits;
        }
    }
}
