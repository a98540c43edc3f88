// fill_random.wgsl — fills a weight matrix part with reproducible pseudo-random values, uniform in
// [-scale, scale], directly on the GPU (benchmarks of the 7B shape need no 14 GB file).
// Padding columns (col >= cols within each kp-wide row) are zero, as for loaded weights.
//
// Bindings (group 0): 0 uniform Params; 1 w: array<u32> (read_write), one f32 or two packed f16
//   per word (WEIGHT_F16).
// Workgroup: 256 invocations, one word each.
// Grid: (min(ceil(words / 256), 65535), ceil(words / (256 * 65535)), 1); word = x + y * 65535 * 256.
// Precision: values are generated in f32 and rounded to the storage format.

const WEIGHT_F16: bool = false;

struct Params {
    words: u32,
    seed: u32,
    scale: f32,
    kp: u32,
    cols: u32,
    first_element: u32, // element index of word 0 within the whole matrix (for seeding)
    _pad0: u32,
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
    if (WEIGHT_F16) {
        let e = p.first_element + word * 2u;
        w[word] = pack2x16float(vec2<f32>(value(e), value(e + 1u)));
    } else {
        w[word] = bitcast<u32>(value(p.first_element + word));
    }
}
