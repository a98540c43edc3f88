// gemv_reduce_shared.wgsl — gemv.wgsl's lane reduction through workgroup memory (any adapter, any
// subgroup size): every lane group's RPL row sums (and mode 1's sum of squares) are reduced by
// all WG invocations together, log2(LANES) halving steps.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    gemv(wid.x, lid, lid % LANES, lid / LANES);
}

// [lane group][value][lane]; values: the RPL rows, then sum(x^2).
var<workgroup> red: array<f32, 2304>; // WG * (RPL + 1) at most: 256 * 9

// The sums over the lanes of invocation `lid`'s lane group (valid in its lane 0).
fn lane_sums(lid: u32, s: LaneSums) -> LaneSums {
    let nv = RPL + 1u;
    let lane = lid % LANES;
    let base = (lid / LANES) * nv * LANES;
    for (var i = 0u; i < RPL; i++) {
        red[base + i * LANES + lane] = select(s.lo[i % 4u], s.hi[i % 4u], i >= 4u);
    }
    red[base + RPL * LANES + lane] = s.sum_sq;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        for (var e = lid; e < (WG / LANES) * nv * half; e += WG) {
            let v = e / half;
            let l = e % half;
            red[v * LANES + l] += red[v * LANES + l + half];
        }
        workgroupBarrier();
    }
    var t = LaneSums();
    for (var i = 0u; i < RPL; i++) {
        let v = red[base + i * LANES];
        if (i < 4u) {
            t.lo[i] = v;
        } else {
            t.hi[i - 4u] = v;
        }
    }
    t.sum_sq = red[base + RPL * LANES];
    return t;
}
