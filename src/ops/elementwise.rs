//! Element-wise kernels: the embedding gather (`wgsl/elementwise/embed.wgsl`), SwiGLU
//! (`wgsl/elementwise/swiglu.wgsl`) and the random weight fill of synthetic models
//! (`wgsl/elementwise/fill_random.wgsl`).
//!
//! Reference: `xlstm_reference::ops::swiglu` (embed is a row copy); tests: `tests/kernels/elementwise.rs`.

use super::{check_len, check_weights, groups, u, Ops};
use crate::error::Result;
use crate::gpu::GpuMatrix;
use crate::gpu::{PlanBuilder, Slice};

params! {
    struct EmbedParams for ["embed"] {
        tokens: u32,
        dim: u32,
        kp: u32,
        row0: u32,
        rows: u32,
        ids_offset: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// out[t, :] = table[ids[ids_offset + t], :] for t < tokens.
pub fn embed(
    pb: &mut PlanBuilder,
    ops: &Ops,
    ids: &Slice,
    ids_offset: usize,
    tokens: usize,
    table: &GpuMatrix,
    out: &Slice,
) -> Result<()> {
    check_len("embed ids", ids, ids_offset.saturating_add(tokens))?;
    check_len("embed out", out, tokens.saturating_mul(table.cols))?;
    check_weights("embed", table)?;
    for (i, part) in table.parts.iter().enumerate() {
        let p = EmbedParams {
            tokens: u(tokens),
            dim: u(table.cols),
            kp: u(table.kp),
            row0: u(part.row0),
            rows: u(part.rows),
            ids_offset: u(ids_offset),
            _pad0: 0,
            _pad1: 0,
        };
        pb.dispatch(
            "embed",
            &ops.weight_kernels(table.dtype)?.embed,
            &p,
            &[ids.clone(), table.part_slice(i), out.clone()],
            [groups(table.cols, 512), u(tokens), 1],
        )?;
        // The tokens' rows, spread over the parts; the output rows in f32.
        let row = table.dtype.row_bytes(table.kp);
        pb.cost((tokens * (row + 4 * table.cols)) as f64 / table.parts.len() as f64, 0.0);
    }
    Ok(())
}

params! {
    struct SwigluParams for ["swiglu"] {
        tokens: u32,
        ffn: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// y[t, f] = silu(u[t, f]) * u[t, ffn + f].
pub fn swiglu(pb: &mut PlanBuilder, ops: &Ops, u_in: &Slice, tokens: usize, ffn: usize, y: &Slice) -> Result<()> {
    check_len("swiglu u", u_in, tokens.saturating_mul(ffn).saturating_mul(2))?;
    check_len("swiglu y", y, tokens.saturating_mul(ffn))?;
    let p = SwigluParams {
        tokens: u(tokens),
        ffn: u(ffn),
        _pad0: 0,
        _pad1: 0,
    };
    pb.dispatch(
        "swiglu",
        &ops.swiglu,
        &p,
        &[u_in.clone(), y.clone()],
        [groups(ffn, 256), u(tokens), 1],
    )?;
    // Two inputs and one output per value; silu is an exp, an add, a divide and two multiplies.
    pb.cost(12.0 * (tokens * ffn) as f64, 5.0 * (tokens * ffn) as f64);
    Ok(())
}

params! {
    struct FillParams for ["fill_random"] {
        words: u32,
        seed: u32,
        scale: f32,
        kp: u32,
        cols: u32,
        first_element: u32,
        values_words: u32,
        _pad1: u32,
    }
}

/// Fills every part of `w` with uniform values in [-scale, scale] (zero padding columns).
pub fn fill_random(pb: &mut PlanBuilder, ops: &Ops, w: &GpuMatrix, seed: u32, scale: f32) -> Result<()> {
    check_weights("fill_random", w)?;
    let pipeline = &ops.weight_kernels(w.dtype)?.fill_random;
    for (i, part) in w.parts.iter().enumerate() {
        let layout = w.part_layout(i);
        let values_words = layout.scales_at(0) as usize / 4;
        let words = values_words + (part.rows * layout.scales).div_ceil(4);
        let p = FillParams {
            words: u(words),
            seed,
            scale,
            kp: u(w.kp),
            cols: u(w.cols),
            first_element: u(part.row0 * w.kp),
            values_words: u(values_words),
            _pad1: 0,
        };
        let wg = words.div_ceil(256);
        let grid = [wg.min(65535) as u32, wg.div_ceil(65535) as u32, 1];
        pb.dispatch("fill_random", pipeline, &p, &[w.part_slice(i)], grid)?;
        pb.cost(4.0 * words as f64, 0.0);
    }
    Ok(())
}
