//! Elementwise kernels (`ops::elementwise`): embed (rows gathered across weight parts) and swiglu.

use super::*;

#[test]
pub(crate) fn embed_gathers_rows_across_parts() {
    for c in modes() {
        let vocab = 37;
        for dtype in DTYPES {
            for dim in [1, 13, 40] {
                for part_rows in [None, Some(5), Some(1)] {
                    let mut r = rng(&[dim, vocab]);
                    let table = r.uniform_vec(vocab * dim, -2.0, 2.0);
                    let stored = weights_as_stored(&table, vocab, dim, dtype);
                    let m = c.matrix(&table, vocab, dim, dtype, part_rows);
                    if let Some(p) = part_rows {
                        assert_eq!(m.parts.len(), vocab.div_ceil(p));
                    }
                    // ids start at an offset inside the id buffer; include 0, V-1, part edges, repeats.
                    let ids_offset = 3;
                    let ids: Vec<u32> = vec![0, 36, 4, 5, 9, 10, 0, 36, 17, 1, 35, 20, 20];
                    let mut id_buf = vec![999u32; ids_offset];
                    id_buf.extend(&ids);
                    let id_buf = c.buf_u32(&id_buf);
                    let tokens = ids.len();
                    let out = c.buf(&vec![SENTINEL; tokens * dim + 5]);
                    c.run(|pb| ops::embed(pb, c.ops(dtype), &s(&id_buf), ids_offset, tokens, &m, &s(&out)));
                    let got = c.read(&out, 0, tokens * dim + 5);
                    let want: Vec<f32> = ids
                        .iter()
                        .flat_map(|&id| stored[id as usize * dim..][..dim].iter().copied())
                        .collect();
                    // Dequantizing may fuse d * q + b into one rounding on the GPU.
                    let tol = if dtype.is_quantized() { 1e-6 } else { 0.0 };
                    check(
                        &format!("embed {dtype:?} dim {dim} parts {part_rows:?}"),
                        &got[..tokens * dim],
                        &want,
                        tol,
                        tol,
                    );
                    assert!(
                        got[tokens * dim..].iter().all(|&v| v == SENTINEL),
                        "embed wrote past the output"
                    );
                }
            }
        }
    }
}

#[test]
pub(crate) fn swiglu_matches_reference() {
    for c in modes() {
        let mut worst = Worst("swiglu", 0.0, "x scale");
        let tokens = 3;
        for ffn in [1, 7, 300] {
            let mut r = rng(&[ffn, 3]);
            let u = r.uniform_vec(tokens * 2 * ffn, -6.0, 6.0);
            let (ub, yb) = (c.buf(&u), c.buf(&vec![SENTINEL; tokens * ffn + 2]));
            c.run(|pb| ops::swiglu(pb, &c.ops_f32, &s(&ub), tokens, ffn, &s(&yb)));
            let got = c.read(&yb, 0, tokens * ffn + 2);
            assert_eq!(&got[tokens * ffn..], &[SENTINEL; 2], "swiglu wrote past the output");
            let (gate, up): (Vec<f32>, Vec<f32>) = (
                u.chunks_exact(2 * ffn).flat_map(|row| row[..ffn].to_vec()).collect(),
                u.chunks_exact(2 * ffn).flat_map(|row| row[ffn..].to_vec()).collect(),
            );
            worst.add(close(
                &format!("swiglu ffn {ffn}"),
                &got[..tokens * ffn],
                &cpu::swiglu(&gate, &up),
                1e-5,
            ));
        }
    }
}
