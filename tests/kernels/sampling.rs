//! Choosing tokens on the GPU (`ops::sampling`): argmax and sampling with temperature, top-k, top-p.

use super::*;

#[test]
pub(crate) fn argmax_first_index_wins() {
    for c in modes() {
        for vocab in [1, 7, 1000, 50304] {
            let mut r = rng(&[vocab, 4]);
            let mut rows: Vec<Vec<f32>> = (0..5).map(|_| r.uniform_vec(vocab, -10.0, 10.0)).collect();
            if vocab > 1 {
                // Ties: in different lanes (first at the higher lane), and in the same lane.
                let a = vocab / 3 + 1;
                let b = (a + 257).min(vocab - 1);
                rows[1][a] = 50.0;
                rows[1][b] = 50.0;
                rows[1][vocab - 1] = 50.0;
                let lane_a = 3usize.min(vocab - 1);
                rows[2][lane_a] = 60.0;
                rows[2][(lane_a + 256).min(vocab - 1)] = 60.0;
                rows[2][vocab - 1] = 60.0;
                // The maximum at the very end, and a NaN: the row has no meaningful choice.
                rows[3][vocab - 1] = 70.0;
                rows[3][0] = f32::NAN;
            } else {
                // An infinity is non-finite too.
                rows[3][0] = f32::INFINITY;
            }
            // All equal: index 0.
            rows[4] = vec![-1.0; vocab];
            let flat: Vec<f32> = rows.concat();
            let lb = c.buf(&flat);
            let (first, second) = (2, 11);
            let ob = c.buf_u32(&[u32::MAX; 20]);
            c.run(|pb| {
                ops::argmax(
                    pb,
                    &c.ops_f32,
                    &s(&lb),
                    rows.len(),
                    vocab,
                    &ops::TokenOut {
                        buf: &s(&ob),
                        first,
                        second: Some(second),
                    },
                )
            });
            let got = c.read_u32(&ob, 0, 20);
            let want: Vec<u32> = rows.iter().map(|row| cpu::argmax_or_non_finite(row)).collect();
            assert_eq!(want[3], ops::NON_FINITE_ID, "the reference marks the non-finite row");
            assert_eq!(&got[first..first + 5], &want[..], "argmax vocab {vocab} (first)");
            assert_eq!(&got[second..second + 5], &want[..], "argmax vocab {vocab} (second)");
            assert!(
                got[..first]
                    .iter()
                    .chain(&got[first + 5..second])
                    .chain(&got[second + 5..])
                    .all(|&v| v == u32::MAX),
                "argmax wrote elsewhere: {got:?}"
            );
            // Without a second destination only `first` is written.
            let ob2 = c.buf_u32(&[u32::MAX; 8]);
            c.run(|pb| {
                ops::argmax(
                    pb,
                    &c.ops_f32,
                    &s(&lb),
                    rows.len(),
                    vocab,
                    &ops::TokenOut {
                        buf: &s(&ob2),
                        first: 0,
                        second: None,
                    },
                )
            });
            let got = c.read_u32(&ob2, 0, 8);
            assert_eq!(&got[..5], &want[..], "argmax vocab {vocab} (no second)");
            assert_eq!(&got[5..], &[u32::MAX; 3]);
        }
    }
}

/// `draws` samples from one row of logits, each a separate dispatch advancing the draw counter.
pub(crate) fn gpu_samples(c: &Ctx, logits: &[f32], cfg: &xlstm_wgpu::SamplerConfig, draws: usize) -> Vec<u32> {
    let lb = c.buf(logits);
    let out = c.buf_u32(&vec![u32::MAX; draws]);
    let counter = c.buf_u32(&[0]);
    c.run(|pb| {
        for i in 0..draws {
            ops::sample(
                pb,
                c.ops(WeightDtype::F32),
                &s(&lb),
                0..logits.len(),
                cfg,
                &s(&counter),
                &ops::TokenOut {
                    buf: &s(&out),
                    first: i,
                    second: None,
                },
            )?;
        }
        Ok(())
    });
    c.read_u32(&out, 0, draws)
}

#[test]
pub(crate) fn gpu_sampling_marks_rows_with_nan_or_inf_as_non_finite() {
    for c in modes() {
        let cfg = xlstm_wgpu::SamplerConfig {
            temperature: 0.8,
            top_k: 5,
            top_p: 0.9,
            seed: 1,
        };
        let mut r = rng(&[1000, 6]);
        let finite = r.uniform_vec(1000, -5.0, 5.0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 517, 999] {
                let mut logits = finite.clone();
                logits[at] = bad;
                assert_eq!(
                    gpu_samples(c, &logits, &cfg, 2),
                    vec![ops::NON_FINITE_ID; 2],
                    "{bad} at {at}"
                );
            }
        }
        assert!(gpu_samples(c, &finite, &cfg, 4).iter().all(|&t| t < 1000));
    }
}

#[test]
pub(crate) fn gpu_sampling_respects_temperature_top_k_and_top_p() {
    let cfg = |temperature: f32, top_k: usize, top_p: f32, seed: u64| xlstm_wgpu::SamplerConfig {
        temperature,
        top_k,
        top_p,
        seed,
    };
    for c in modes() {
        let mut r = rng(&[1000, 5]);
        let logits = r.uniform_vec(1000, -5.0, 5.0);
        // top-k = 1 is greedy.
        let best = cpu::argmax(&logits) as u32;
        assert!(gpu_samples(c, &logits, &cfg(1.0, 1, 1.0, 3), 20)
            .iter()
            .all(|&t| t == best));
        // top-k = 5 never leaves the five largest.
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
        let got = gpu_samples(c, &logits, &cfg(2.0, 5, 1.0, 4), 300);
        assert!(got.iter().all(|t| top5.contains(t)), "outside the top 5: {got:?}");
        assert!(
            top5.iter().filter(|t| got.contains(t)).count() >= 3,
            "top-5 draws not spread: {got:?}"
        );
        // A nucleus of one: p(0) = 0.525 already reaches top-p 0.5.
        let mut two = vec![-30.0f32; 50];
        two[7] = 10.0;
        two[3] = 9.9;
        assert!(gpu_samples(c, &two, &cfg(1.0, 0, 0.5, 5), 100).iter().all(|&t| t == 7));
        // Frequencies follow the softmax; the vocabulary limit excludes the padded tail.
        let probs = [0.5f32, 0.3, 0.2];
        let mut padded: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        padded.extend([50.0, 50.0]); // beyond `count`: must never be drawn
        let lb = c.buf(&padded);
        let draws = 3000;
        let out = c.buf_u32(&vec![u32::MAX; draws]);
        let counter = c.buf_u32(&[0]);
        let sc = cfg(1.0, 0, 1.0, 6);
        c.run(|pb| {
            for i in 0..draws {
                ops::sample(
                    pb,
                    c.ops(WeightDtype::F32),
                    &s(&lb),
                    0..3,
                    &sc,
                    &s(&counter),
                    &ops::TokenOut {
                        buf: &s(&out),
                        first: i,
                        second: None,
                    },
                )?;
            }
            Ok(())
        });
        let got = c.read_u32(&out, 0, draws);
        for (t, p) in probs.iter().enumerate() {
            let f = got.iter().filter(|&&g| g as usize == t).count() as f32 / draws as f32;
            assert!((f - p).abs() < 0.035, "token {t}: frequency {f} vs probability {p}");
        }
        assert!(got.iter().all(|&g| g < 3));
        // The same seed reproduces the same draws; another seed does not.
        let a = gpu_samples(c, &logits, &cfg(1.5, 0, 0.9, 11), 50);
        assert_eq!(a, gpu_samples(c, &logits, &cfg(1.5, 0, 0.9, 11), 50));
        assert_ne!(a, gpu_samples(c, &logits, &cfg(1.5, 0, 0.9, 12), 50));
    }
}
