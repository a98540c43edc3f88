// gemv_reduce_subgroup.wgsl — gemv.wgsl's lane reduction by subgroup operations, where the
// adapter's subgroups all have SG invocations and a lane group is LANES / SG whole subgroups
// (the host compiles this variant only then). Lanes are numbered from the subgroup builtins,
// not the invocation index, so the sums are right however the adapter lays subgroups out: each
// subgroup sums its lanes with no barrier, and lane groups of several subgroups add their
// subgroups' sums through workgroup memory (one barrier).

const SG: u32 = 32u;

var<private> subgroup: u32;
var<private> subgroup_lane: u32;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) sl: u32,
) {
    subgroup = sg;
    subgroup_lane = sl;
    let per_group = LANES / SG;
    gemv(wid.x, lid, (sg % per_group) * SG + sl, sg / per_group);
}

// One entry per subgroup (WG / SG <= 32).
var<workgroup> sub_lo: array<vec4<f32>, 32>;
var<workgroup> sub_hi: array<vec4<f32>, 32>;
var<workgroup> sub_sq: array<f32, 32>;

fn lane_sums(lid: u32, s: LaneSums) -> LaneSums {
    var t = LaneSums(subgroupAdd(s.lo), subgroupAdd(s.hi), subgroupAdd(s.sum_sq));
    if (LANES > SG) {
        if (subgroup_lane == 0u) {
            sub_lo[subgroup] = t.lo;
            sub_hi[subgroup] = t.hi;
            sub_sq[subgroup] = t.sum_sq;
        }
        workgroupBarrier();
        // The lane group's first subgroup adds the others' sums.
        let first = subgroup - subgroup % (LANES / SG);
        t = LaneSums(sub_lo[first], sub_hi[first], sub_sq[first]);
        for (var i = 1u; i < LANES / SG; i++) {
            t.lo += sub_lo[first + i];
            t.hi += sub_hi[first + i];
            t.sum_sq += sub_sq[first + i];
        }
    }
    return t;
}
