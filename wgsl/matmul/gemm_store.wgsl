// gemm_store.wgsl — the tiled GEMMs' epilogue (appended to gemm.wgsl and gemm_8x8.wgsl): one
// output y[t, r] with the residual add (accumulate != 0) and the logit soft cap (soft_cap > 0),
// outputs outside the tokens or rows dropped.

fn store_y(t: u32, r: u32, acc: f32) {
    if (t >= p.tokens || r >= p.n) {
        return;
    }
    let o = p.y_offset + t * p.y_stride + r;
    var v = acc;
    if (p.accumulate != 0u) {
        v += y[o];
    }
    if (p.soft_cap > 0.0) {
        v = p.soft_cap * tanh(v / p.soft_cap);
    }
    y[o] = v;
}

// Four consecutive rows r0 .. r0 + 3 of token t.
fn store_row(t: u32, r0: u32, acc: vec4<f32>) {
    store_y(t, r0, acc.x);
    store_y(t, r0 + 1u, acc.y);
    store_y(t, r0 + 2u, acc.z);
    store_y(t, r0 + 3u, acc.w);
}
