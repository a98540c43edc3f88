// gated_act.wgsl — the hidden layer of the original xLSTM's gated feed-forward:
//   out[t, j] = act(u[t, j]) * u[t, f + j]   for j < f,
// u holding the fused [gate | up] projection. ACT (specialised): 0 exact GELU x * Phi(x) (erf
// form), 1 ReLU, 2 ReLU^2, 3 sigmoid, 4 swish (SiLU), 5 SELU. Rows of u start at
// u_offset + t * u_stride, rows of out at out_offset + t * out_stride.
//
// Bindings (group 0): 0 uniform Params; 1 u: array<f32> (read_write, only read); 2 out:
//   array<f32> (read_write). out may alias u's gate half element for element (each value is
//   read before it is written by the same invocation).
// Workgroup: 256 invocations, one element each.
// Grid: tokens * ceil(f / 256) workgroups, linear index wid.x + wid.y * grid_x (grid_x <= 65535).
// Precision: f32. erf via erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2) (Numerical Recipes
//   erfcc, relative error < 1.2e-7 for every z >= 0) with an exactly split z^2, so GELU keeps
//   ~1e-7 relative accuracy (plus the adapter's exp error) also in its negative tail; SELU's
//   exp(x) - 1 uses a Taylor series for |x| < 0.5.

const ACT: u32 = 0u;

struct Params {
    tokens: u32,
    f: u32,
    u_offset: u32,
    u_stride: u32,
    out_offset: u32,
    out_stride: u32,
    col_groups: u32,
    grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// GELU x * Phi(x) = x * erfc(-x / sqrt(2)) / 2, through erfc(z) = t exp(-z^2 + P(t)) for z = |x| / sqrt(2).
// The Gaussian factor exp(-x^2 / 2) is computed as exp(-ah^2 / 2) exp(-(a - ah)(a + ah) / 2) with ah
// the top 12 significant bits of a = |x|, so ah^2 is exact and rounding x^2 (or x / sqrt(2)) costs
// nothing in the tail.
fn gelu(x: f32) -> f32 {
    let a = abs(x);
    let z = a * 0.70710678118654752;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let ah = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    let e = t * exp(-0.5 * (ah * ah)) * exp(poly - 0.5 * ((a - ah) * (a + ah)));
    if (x >= 0.0) {
        return 0.5 * x * (2.0 - e);
    }
    return 0.5 * x * e;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// exp(x) - 1, accurate near 0.
fn expm1(x: f32) -> f32 {
    if (abs(x) < 0.5) {
        return x * (1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0
            * (1.0 + x / 7.0 * (1.0 + x / 8.0 * (1.0 + x / 9.0))))))));
    }
    return exp(x) - 1.0;
}

fn act(x: f32) -> f32 {
    switch (ACT) {
        case 0u: {
            return gelu(x);
        }
        case 1u: {
            return max(x, 0.0);
        }
        case 2u: {
            let r = max(x, 0.0);
            return r * r;
        }
        case 3u: {
            return sigmoid(x);
        }
        case 4u: {
            return x * sigmoid(x);
        }
        default: {
            let alpha = 1.6732632423543772;
            let scale = 1.0507009873554805;
            if (x > 0.0) {
                return scale * x;
            }
            return scale * alpha * expm1(x);
        }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * p.grid_x;
    let t = w / p.col_groups;
    let j = (w % p.col_groups) * 256u + lid;
    if (t >= p.tokens || j >= p.f) {
        return;
    }
    let ub = p.u_offset + t * p.u_stride;
    let v = act(u[ub + j]) * u[ub + p.f + j];
    out[p.out_offset + t * p.out_stride + j] = v;
}
