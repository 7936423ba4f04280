//! FLOP formulas ([`Mixer::flops`]) against independent counts.
//!
//! Each mixer's formula is a closed form in its own file. Here each is checked against a tally
//! written op by op from the shapes the mixer's fast form (and step form) runs, every op's work
//! enumerated by loops: a `[m, k] × [k, n]` matmul adds 2 per (i, j, k) visited, a real FFT of
//! length n adds 5 per butterfly of each radix-2 stage, a triangular solve 2 per (row, earlier
//! row, column), a recurrence its per-element constant per element visited. Both follow the
//! convention of [`crate::flops`], so they must agree to rounding (relative 1e-9), on two shapes
//! per mixer (chunked forms at a length that is not a multiple of the chunk).
//!
//! Scaling is checked by ratios at two lengths for every registered mixer and suite variant
//! (quadratic, L·log L or linear), and the decode cost against the state size (a decode step
//! costs more at a longer context exactly when the state grows).

use super::testing::seeded;
use super::{build_table, registry, BuildCtx, Mixer};
use crate::flops::MixerFlops;

/// FLOPs counted by enumerating the work of each op.
#[derive(Default, Clone, Copy, Debug)]
struct Tally(f64);

impl Tally {
    /// `[m, k] × [k, n]`.
    fn mm(&mut self, m: i64, k: i64, n: i64) {
        for _ in 0..m {
            for _ in 0..n {
                for _ in 0..k {
                    self.0 += 2.0;
                }
            }
        }
    }
    /// `count` element operations of `flops` each.
    fn each(&mut self, count: i64, flops: f64) {
        for _ in 0..count {
            self.0 += flops;
        }
    }
    /// A real FFT of length n (a power of two): half of the complex radix-2 FFT, whose log₂n
    /// stages have n/2 butterflies of 10 FLOPs.
    fn rfft(&mut self, n: i64) {
        let mut span = 1;
        while span < n {
            self.each(n / 2, 5.0);
            span *= 2;
        }
        assert_eq!(span, n, "the tally's FFT needs a power-of-two length");
    }
    /// Causal FFT convolution padded to 2L: transform, inverse, complex product over L+1 bins.
    fn fft_conv(&mut self, channels: i64, l: i64) {
        for _ in 0..channels {
            self.rfft(2 * l);
            self.rfft(2 * l);
            self.each(l + 1, 6.0);
        }
    }
    /// Unit lower-triangular solve `[c, c]` against `m` right-hand sides (forward substitution).
    fn solve(&mut self, c: i64, m: i64) {
        for i in 0..c {
            for _ in 0..i {
                self.each(m, 2.0);
            }
        }
    }
}

fn tally(f: impl FnOnce(&mut Tally)) -> Tally {
    let mut t = Tally::default();
    f(&mut t);
    t
}

fn build(inline: &str, d: i64, max_len: i64, layer: usize) -> Box<dyn Mixer> {
    let t: toml::Table = toml::from_str(&format!("m = {inline}")).unwrap();
    let m = t["m"].as_table().unwrap().clone();
    seeded(0, || {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        build_table(vs.root(), &m, d, &BuildCtx::new(layer, 2, max_len), "m").unwrap()
    })
}

fn close(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{what}: formula {got} vs independent count {want}");
}

/// What the tally expects: forward per sequence, per batch, the step at each context, and the
/// prefill when it is not the step form's `Σ decode`.
struct Expect {
    fwd: Tally,
    batch: Tally,
    decode: Box<dyn Fn(i64) -> Tally>,
    prefill: Option<Tally>,
}

fn check(inline: &str, d: i64, l: i64, e: Expect) {
    let m = build(inline, d, l, 1);
    let f = m.flops(l);
    let at = format!("{inline} d={d} L={l}");
    close(&format!("{at} forward_per_seq"), f.forward_per_seq, e.fwd.0);
    close(&format!("{at} forward_per_batch"), f.forward_per_batch, e.batch.0);
    close(&format!("{at} decode_per_token"), f.decode_per_token, (e.decode)(l).0);
    let prefill = e.prefill.map(|p| p.0).unwrap_or_else(|| (1..=l).map(|t| (e.decode)(t).0).sum());
    close(&format!("{at} prefill_per_seq"), f.prefill_per_seq, prefill);
    close(&format!("{at} train"), f.train(4), 3.0 * (4.0 * e.fwd.0 + e.batch.0));
}

/// Power-of-two shapes (the tally's FFTs need them), and shapes whose length is not a multiple
/// of the chunks used below.
const FFT_SHAPES: [(i64, i64); 2] = [(8, 8), (16, 16)];
const SHAPES: [(i64, i64); 2] = [(8, 8), (16, 11)];

fn stepwise(fwd: Tally, batch: Tally, decode: impl Fn(i64) -> Tally + 'static) -> Expect {
    Expect { fwd, batch, decode: Box::new(decode), prefill: None }
}

/// A prefill by the parallel form (its forward and per-batch work) plus `extra`.
fn parallel(fwd: Tally, batch: Tally, extra: Tally, decode: impl Fn(i64) -> Tally + 'static) -> Expect {
    Expect { fwd, batch, decode: Box::new(decode), prefill: Some(Tally(fwd.0 + batch.0 + extra.0)) }
}

#[test]
fn attention_and_sliding_window_match_the_tally() {
    for (d, l) in SHAPES {
        let (h, heads) = (d / 2, 2);
        let step = move |t: i64| {
            tally(|c| {
                c.mm(1, d, 3 * d);
                for _ in 0..heads {
                    c.mm(1, h, t);
                    c.mm(1, t, h);
                }
                c.mm(1, d, d);
            })
        };
        let full = tally(|c| {
            c.mm(l, d, 3 * d);
            for _ in 0..heads {
                c.mm(l, h, l); // the whole masked score matrix
                c.mm(l, l, h);
            }
            c.mm(l, d, d);
        });
        check(r#"{ name = "attention", num_heads = 2 }"#, d, l, stepwise(full, Tally::default(), step));
        check(
            r#"{ name = "sliding_window", num_heads = 2, window = 64, window_convention = "exact" }"#,
            d,
            l,
            stepwise(full, Tally::default(), step),
        );
        let n = 3;
        let banded = tally(|c| {
            c.mm(l, d, 3 * d);
            for _ in 0..(l + n - 1) / n {
                for _ in 0..heads {
                    c.mm(n, h, 2 * n); // a block's queries against its own and the previous block's keys
                    c.mm(n, 2 * n, h);
                }
            }
            c.mm(l, d, d);
        });
        check(
            r#"{ name = "sliding_window", num_heads = 2, window = 3, window_convention = "exact" }"#,
            d,
            l,
            stepwise(banded, Tally::default(), move |t| step(t.min(n))),
        );
    }
}

#[test]
fn convolutions_match_the_tally() {
    for (d, l) in FFT_SHAPES {
        // short gated convolution
        let tok = tally(|c| {
            c.mm(1, d, d);
            c.mm(1, 3, d);
        });
        check(
            r#"{ name = "base_conv", kernel_size = 3 }"#,
            d,
            l,
            stepwise(tally(|c| c.each(l, tok.0)), Tally::default(), move |_| tok),
        );
        // long gated convolution, implicit (MLP 3 → 16 → d over the L_max = l filter positions) and explicit
        let fwd = tally(|c| {
            c.mm(l, d, d);
            c.fft_conv(d, l);
        });
        let filter_fft = tally(|c| (0..d).for_each(|_| c.rfft(2 * l)));
        let mlp = tally(|c| {
            c.mm(l, 3, 16);
            c.mm(l, 16, d);
        });
        let cache = move |t: i64| {
            tally(|c| {
                c.mm(1, d, d);
                c.mm(1, t, d);
            })
        };
        check(r#"{ name = "base_conv", kernel_size = -1 }"#, d, l, stepwise(fwd, Tally(filter_fft.0 + mlp.0), cache));
        check(
            r#"{ name = "base_conv", kernel_size = -1, long_filter = "explicit" }"#,
            d,
            l,
            stepwise(fwd, filter_fft, cache),
        );
        // long_conv: explicit, and s4d (N = 4: 2 complex modes per channel) with the GLU output
        check(
            r#"{ name = "long_conv", filter = "explicit" }"#,
            d,
            l,
            stepwise(tally(|c| c.fft_conv(d, l)), filter_fft, move |t| tally(|c| c.mm(1, t, d))),
        );
        let fwd = tally(|c| {
            c.fft_conv(d, l);
            c.mm(l, d, 2 * d);
        });
        let batch = tally(|c| {
            (0..d).for_each(|_| c.rfft(2 * l));
            c.each(d * 2 * l, 8.0);
        });
        let step = tally(|c| {
            c.each(d * 2, 12.0);
            c.mm(1, d, 2 * d);
        });
        check(
            r#"{ name = "long_conv", filter = "s4d", d_state = 4, output = "glu" }"#,
            d,
            l,
            stepwise(fwd, batch, move |_| step),
        );
    }
}

#[test]
fn hyena_family_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let tok = tally(|c| {
            c.mm(1, d, 3 * d);
            c.mm(1, 3, 3 * d);
            c.mm(1, d, d);
        });
        let fwd = tally(|c| {
            c.each(l, tok.0);
            c.fft_conv(d, l);
        });
        let filter_fft = tally(|c| (0..d).for_each(|_| c.rfft(2 * l)));
        // hyena: filter FFN 3 → 8 → (8 → 8) → d over L_max = l positions
        let ffn = tally(|c| {
            c.mm(l, 3, 8);
            c.mm(l, 8, 8);
            c.mm(l, 8, d);
        });
        let decode = move |t| {
            tally(|c| {
                c.each(1, tok.0);
                c.mm(1, t, d); // the cached filter against every cached input
            })
        };
        check(
            r#"{ name = "hyena", filter_order = 8, num_inner_mlps = 1 }"#,
            d,
            l,
            parallel(fwd, Tally(ffn.0 + filter_fft.0), Tally::default(), decode),
        );
        // stripedhyena: P = 2 poles
        let kernel = tally(|c| c.each(d * 2 * l, 8.0));
        let step = tally(|c| {
            c.each(1, tok.0);
            c.each(d * 2, 12.0); // the modal step
        });
        // prefill: the parallel form plus the closed-form final state (a kernel's worth)
        check(
            r#"{ name = "stripedhyena" }"#,
            d,
            l,
            parallel(fwd, Tally(kernel.0 + filter_fft.0), kernel, move |_| step),
        );
        // h3: N = 4, p = 2, H = d/2 heads, the diagonal SSM on d·p channels
        let (n, p, heads) = (4, 2, d / 2);
        let fwd = tally(|c| {
            (0..4).for_each(|_| c.mm(l, d, d));
            (0..heads).for_each(|_| c.mm(l, p, p)); // readout Σ_i q_i s_ij per head
            c.fft_conv(d, l);
            c.fft_conv(d * p, l);
        });
        let batch = tally(|c| {
            c.mm(d, n, n); // shift kernel: a depthwise conv1d of N taps over N outputs
            (0..d).for_each(|_| c.rfft(2 * l));
            c.each(heads * (n / 2) * l, 8.0);
            (0..d * p).for_each(|_| c.rfft(2 * l));
        });
        let step = tally(|c| {
            (0..4).for_each(|_| c.mm(1, d, d));
            (0..heads).for_each(|_| c.mm(1, p, p));
            c.mm(1, n, d);
            c.each(d * p * (n / 2), 12.0);
        });
        check(r#"{ name = "h3", d_state = 4, head_dim = 2 }"#, d, l, stepwise(fwd, batch, move |_| step));
    }
}

#[test]
fn mega_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let (h, z, hd) = (2, 4, 2 * d);
        let tok = tally(|c| {
            c.mm(1, d, hd);
            c.mm(1, d, 2 * d + z + hd);
            c.mm(1, hd, d);
        });
        let batch = tally(|c| {
            c.each(d * h * l, 8.0);
            (0..d).for_each(|_| c.rfft(2 * l));
        });
        for chunk in [0, 3] {
            let cs = if chunk == 0 { l } else { chunk };
            let fwd = tally(|c| {
                c.each(l, tok.0);
                c.fft_conv(d, l);
                for _ in 0..(l + cs - 1) / cs {
                    c.mm(cs, z, cs);
                    c.mm(cs, cs, hd);
                }
            });
            let step = move |t: i64| {
                let cached = if chunk == 0 { t } else { (t - 1) % chunk + 1 };
                tally(|c| {
                    c.each(1, tok.0);
                    c.each(d * h, 5.0);
                    c.mm(1, z, cached);
                    c.mm(1, cached, hd);
                })
            };
            check(
                &format!(r#"{{ name = "mega", ndim = 2, z_dim = 4, h_mult = 2, chunk_size = {chunk} }}"#),
                d,
                l,
                stepwise(fwd, batch, step),
            );
        }
    }
}

/// The chunked linear-attention core per head and chunk: scores, their decay (`gate`: 0 none,
/// 1 per head, k per key channel), the intra-chunk mix, the inter-chunk readout and update.
fn linear_core(c: &mut Tally, chunk: i64, k: i64, v: i64, gate: i64) {
    match gate {
        0 => c.mm(chunk, k, chunk),
        1 => {
            c.mm(chunk, k, chunk);
            c.each(chunk * chunk, 1.0);
        }
        _ => c.each(chunk * chunk * k, 3.0), // q_tk · k_sk · decay_tsk, summed over k
    }
    c.mm(chunk, chunk, v);
    c.mm(chunk, k, v);
    c.mm(k, chunk, v);
}

fn linear_step(c: &mut Tally, k: i64, v: i64, gate: i64) {
    if gate > 0 {
        c.each(k * v, 1.0);
    }
    c.mm(k, 1, v); // k vᵀ added to S
    c.mm(1, k, v); // Sᵀ q
}

#[test]
fn linear_attention_family_matches_the_tally() {
    for (d, l) in SHAPES {
        let (heads, chunk) = (2, 3);
        let chunks = (l + chunk - 1) / chunk;
        // (config, per-token projections, K, V, gate)
        let cases: Vec<(String, Tally, i64, i64, i64)> = vec![
            (
                format!(r#"{{ name = "linear_attention", feature_dim = 4, num_heads = 2, chunk_size = {chunk} }}"#),
                tally(|c| {
                    c.mm(1, d, 2 * 4);
                    c.mm(1, d, 2 * 4);
                    c.mm(1, d, d);
                    c.mm(1, d, d);
                }),
                4,
                d / 2 + 1,
                0,
            ),
            (
                format!(r#"{{ name = "based", feature_dim = 2, num_heads = 2, chunk_size = {chunk} }}"#),
                tally(|c| {
                    c.mm(1, d, 2 * 2);
                    c.mm(1, d, 2 * 2);
                    c.mm(1, d, d);
                    c.mm(1, d, d);
                }),
                1 + 2 + 4,
                d / 2 + 1,
                0,
            ),
            (
                format!(r#"{{ name = "retnet", num_heads = 2, chunk_size = {chunk} }}"#),
                tally(|c| (0..5).for_each(|_| c.mm(1, d, d))),
                d / 2,
                d / 2,
                1,
            ),
            (
                format!(r#"{{ name = "gla", num_heads = 2, chunk_size = {chunk}, scan = "chunked" }}"#),
                tally(|c| {
                    c.mm(1, d, d / 2);
                    c.mm(1, d, d / 2);
                    c.mm(1, d, d);
                    c.mm(1, d, d);
                    c.mm(1, d, 16);
                    c.mm(1, 16, d / 2);
                    c.mm(1, d, d);
                }),
                d / 4,
                d / 2,
                d / 4,
            ),
        ];
        for (cfg, tok, k, v, gate) in cases {
            let fwd = tally(|c| {
                c.each(l, tok.0);
                for _ in 0..chunks * heads {
                    linear_core(c, chunk, k, v, gate);
                }
            });
            let step = tally(|c| {
                c.each(1, tok.0);
                (0..heads).for_each(|_| linear_step(c, k, v, gate));
            });
            check(&cfg, d, l, stepwise(fwd, Tally::default(), move |_| step));
            if cfg.contains("\"gla\"") {
                // the fused scan: the recurrent step at every position
                let fwd = tally(|c| {
                    c.each(l, tok.0);
                    (0..l * heads).for_each(|_| linear_step(c, k, v, gate));
                });
                let fused = cfg.replace("\"chunked\"", "\"fused\"");
                check(&fused, d, l, stepwise(fwd, Tally::default(), move |_| step));
            }
        }
    }
}

#[test]
fn delta_rules_match_the_tally() {
    for (d, l) in SHAPES {
        let (heads, chunk) = (2, 3);
        let chunks = (l + chunk - 1) / chunk;
        for gated in [false, true] {
            let vd = if gated { 2 * d } else { d }; // Gated DeltaNet's default expand_v = 2
            let (k, v) = (d / heads, vd / heads);
            let tok = tally(|c| {
                c.mm(1, d, d);
                c.mm(1, d, d);
                c.mm(1, d, vd);
                c.mm(1, d, heads); // β
                if gated {
                    c.mm(1, d, heads); // α
                }
                c.mm(1, vd, d);
                for ch in [d, d, vd] {
                    c.mm(1, 4, ch); // short convs, 4 taps
                }
            });
            let fwd = tally(|c| {
                c.each(l, tok.0);
                for _ in 0..chunks * heads {
                    c.mm(chunk, k, chunk); // K Kᵀ
                    c.solve(chunk, k); // W
                    c.solve(chunk, v); // Ũ
                    c.mm(chunk, k, chunk); // Q Kᵀ
                    c.mm(chunk, chunk, v); // P U
                    c.mm(chunk, k, v); // W S₀
                    c.mm(chunk, k, v); // Q S₀
                    c.mm(k, chunk, v); // Kᵀ U
                }
            });
            let step = tally(|c| {
                c.each(1, tok.0);
                for _ in 0..heads {
                    if gated {
                        c.each(k * v, 1.0);
                    }
                    c.mm(1, k, v); // Sᵀ k
                    c.mm(k, 1, v); // rank-1 update
                    c.mm(1, k, v); // readout
                }
            });
            let name = if gated { "gated_delta_net" } else { "delta_net" };
            check(
                &format!(r#"{{ name = "{name}", num_heads = 2, chunk_size = {chunk} }}"#),
                d,
                l,
                stepwise(fwd, Tally::default(), move |_| step),
            );
        }
    }
}

#[test]
fn rwkv_and_mamba_match_the_tally() {
    for (d, l) in SHAPES {
        let chunk = 3;
        let padded = (l + chunk - 1) / chunk * chunk;
        let tok = tally(|c| (0..4).for_each(|_| c.mm(1, d, d)));
        let fwd = tally(|c| {
            c.each(l, tok.0);
            c.each(padded * chunk * d, 4.0); // numerator and denominator over each (i, j) of a block
            c.each(padded * d, 4.0); // the carried state's column
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            c.each(d, 12.0);
        });
        check(
            &format!(r#"{{ name = "rwkv", chunk_size = {chunk}, scan = "chunked" }}"#),
            d,
            l,
            stepwise(fwd, Tally::default(), move |_| step),
        );
        // the fused wkv: the stabilised step's 12 per channel at each position
        let fwd = tally(|c| {
            c.each(l, tok.0);
            c.each(l * d, 12.0);
        });
        check(
            &format!(r#"{{ name = "rwkv", chunk_size = {chunk}, scan = "fused" }}"#),
            d,
            l,
            stepwise(fwd, Tally::default(), move |_| step),
        );

        let (e, n, r, k) = (2 * d, 4, (d + 15) / 16, 4);
        let tok = tally(|c| {
            c.mm(1, d, 2 * e);
            c.mm(1, k, e);
            c.mm(1, e, r + 2 * n);
            c.mm(1, r, e);
            c.mm(1, e, d);
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            c.each(e * n, 9.0);
        });
        // the chunked scan runs over the padded length, the fused one over L
        for (scan, scanned) in [("chunked", padded), ("fused", l)] {
            let fwd = tally(|c| {
                c.each(l, tok.0);
                c.each(scanned * e * n, 9.0);
            });
            check(
                &format!(r#"{{ name = "mamba", d_state = 4, chunk_size = {chunk}, scan = "{scan}" }}"#),
                d,
                l,
                stepwise(fwd, Tally::default(), move |_| step),
            );
        }
    }
}

#[test]
fn hybrid_reports_each_layers_mixer() {
    let hybrid = r#"{ name = "hybrid", layers = [{ name = "base_conv", kernel_size = 3 }, { name = "attention" }] }"#;
    for (layer, alone) in [(0, r#"{ name = "base_conv", kernel_size = 3 }"#), (1, r#"{ name = "attention" }"#)] {
        let (a, b) = (build(hybrid, 8, 16, layer).flops(16), build(alone, 8, 16, layer).flops(16));
        assert_eq!(a, b, "hybrid layer {layer}");
    }
    assert_ne!(build(hybrid, 8, 16, 0).flops(16), build(hybrid, 8, 16, 1).flops(16));
}

/// Every registered mixer and suite variant, built at d = 8 for `max_len`.
fn every_variant(max_len: i64) -> Vec<(String, Box<dyn Mixer>)> {
    let mut out = vec![];
    for e in registry() {
        for t in (e.suite_variants)() {
            let ctx = BuildCtx::new(1, 2, max_len);
            let m = seeded(0, || {
                let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                (e.build)(vs.root(), 8, &t, &ctx, "m")
            });
            out.push((toml::Value::Table(t).to_string().replace('\n', ", "), m.unwrap()));
        }
    }
    out
}

#[test]
fn every_mixer_reports_finite_positive_flops() {
    for (name, m) in every_variant(64) {
        let f: MixerFlops = m.flops(64);
        for (what, v) in
            [("forward", f.forward_per_seq), ("prefill", f.prefill_per_seq), ("decode", f.decode_per_token)]
        {
            assert!(v.is_finite() && v > 0.0, "{name}: {what} = {v}");
        }
        assert!(f.forward_per_batch.is_finite() && f.forward_per_batch >= 0.0, "{name}");
        assert_eq!(f.train(2), 3.0 * (2.0 * f.forward_per_seq + f.forward_per_batch), "{name}");
    }
}

/// A decode step costs more at a longer context exactly when the state grows (and less when it
/// shrinks: Mega's chunked KV cache empties at chunk boundaries).
#[test]
fn decode_cost_grows_exactly_when_the_state_does() {
    for (name, m) in every_variant(64) {
        let (s1, s2) = (m.state_size(40), m.state_size(64));
        let (f1, f2) = (m.flops(40).decode_per_token, m.flops(64).decode_per_token);
        assert_eq!(s1 == s2, f1 == f2, "{name}: state {s1} → {s2}, decode {f1} → {f2}");
        assert_eq!(s2 > s1, f2 > f1, "{name}: state {s1} → {s2}, decode {f1} → {f2}");
    }
}

/// Forward FLOPs per sequence at 2L over L, at d = 8 where the sequence terms dominate:
/// 4 (less the projections' share) for full attention, 2·(1 + 1/log₂(2L)) for FFT
/// convolutions, 2 for recurrent, chunked, windowed and short-conv mixers.
#[test]
fn forward_flops_scale_with_the_length_as_the_math_says() {
    let l = 1024;
    for (name, m) in every_variant(2 * l) {
        let r = m.flops(2 * l).forward_per_seq / m.flops(l).forward_per_seq;
        // the §5 lookups compute every position's attention lookup, selected or not
        let quadratic = name.contains("\"attention\"")
            || (name.contains("\"mega\"") && name.contains("chunk_size = 0"))
            || ["\"selective_lookups\"", "\"sigmoid_lookups\"", "\"sma_lookups\""].iter().any(|n| name.contains(n));
        // Mega's EMA is an FFT convolution; chunked, its attention is linear in L
        let fft = (name.contains("\"base_conv\"") && name.contains("-1"))
            || (name.contains("\"mega\"") && !quadratic)
            || ["\"long_conv\"", "\"hyena\"", "\"h3\"", "\"stripedhyena\""].iter().any(|n| name.contains(n));
        // issue 22's FFT-convolution SSMs
        let fft = fft
            || ["\"s4\"", "\"liquid_s4\"", "\"gss\"", "\"bigs\"", "\"monarch_mixer\""].iter().any(|n| name.contains(n));
        if name.contains("\"hybrid\"") {
            continue; // a hybrid is its layers' mixers, checked on their own
        }
        // Monarch Mixer's DFTs as two block factors: 8·n·(b₁ + b₂) with b ≈ √(2L), i.e. L^1.5
        if name.contains("\"monarch_mixer\"") && name.contains("\"monarch\"") {
            assert!((2.4..3.0).contains(&r), "{name}: L^1.5, ratio {r}");
            continue;
        }
        if name.contains("\"nystromformer\"") {
            // O(L·d² + L²·d/c): landmarks of fixed-length segments grow with L; the Razavi
            // inverse adds O(I·(L/c)³), four products of the n × n landmark kernel per iteration
            let top = if name.contains("use_razavi_pinverse = true") { 8.0 } else { 4.0 };
            assert!(r > 2.1 && r <= top, "{name}: between linear and n³ (n = L/c landmarks), ratio {r}");
            continue;
        }
        if name.contains("\"native_sparse_attention\"") {
            // linear (selected blocks, window, compression) plus the compressed branch's and the
            // selection's L × L/b score matrices: between linear and quadratic
            assert!(r > 2.05 && r < 4.0, "{name}: linear + L²/b, ratio {r}");
        } else if quadratic {
            assert!((3.6..=4.0).contains(&r), "{name}: quadratic, ratio {r}");
        } else if fft {
            assert!((2.02..2.25).contains(&r), "{name}: L·log L, ratio {r}");
        } else {
            // exactly 2 but for the padding of the last chunk or window block
            assert!((r - 2.0).abs() < 0.01, "{name}: linear, ratio {r}");
        }
    }
}

/// Performer: the projections, the random projections ω·q' and ω·k' per head (m/2 rows when
/// hyperbolic), then the chunked linear core with K = m, V = d_v + 1 and a decay per key channel
/// (the rescaling to the running key maximum of each feature); the step rescales, updates and
/// reads `[S | z]` per head.
#[test]
fn performer_matches_the_tally() {
    for (d, l) in SHAPES {
        let (heads, chunk, f) = (2, 3, 4);
        let chunks = (l + chunk - 1) / chunk;
        for (m, hyperbolic) in [(6i64, false), (10, true)] {
            let rows = if hyperbolic { m / 2 } else { m };
            let tok = tally(|c| {
                c.mm(1, d, heads * f);
                c.mm(1, d, heads * f);
                c.mm(1, d, d);
                c.mm(1, d, d);
                for _ in 0..2 * heads {
                    c.mm(1, f, rows);
                }
            });
            let v = d / heads + 1;
            let fwd = tally(|c| {
                c.each(l, tok.0);
                for _ in 0..chunks * heads {
                    linear_core(c, chunk, m, v, 2);
                }
            });
            let step = tally(|c| {
                c.each(1, tok.0);
                (0..heads).for_each(|_| linear_step(c, m, v, 2));
            });
            let cfg = format!(
                r#"{{ name = "performer", feature_dim = {f}, num_features = {m}, hyperbolic = {hyperbolic}, num_heads = {heads}, chunk_size = {chunk} }}"#
            );
            check(&cfg, d, l, stepwise(fwd, Tally::default(), move |_| step));
        }
    }
}

/// BigBird: projections; per query block and head the scores and mix over the gathered keys
/// (window blocks, global tokens, r random blocks when some block has one), masked entries
/// included; the step scores the keys its token sees, counted by enumerating the rule
/// (window or global) plus b per random block held.
#[test]
fn bigbird_matches_the_tally() {
    let (b, nw, g, r, heads) = (4i64, 1i64, 1i64, 2i64, 2i64);
    for (d, l) in [(8i64, 8i64), (16, 21), (8, 3)] {
        let h = d / heads;
        let n = (l + b - 1) / b;
        let c = if l < b { l } else { b };
        let cols = (nw + 1).min(n) * c + (g * b).min(l) + if n > nw + 1 + g { r * b } else { 0 };
        let fwd = tally(|t| {
            t.mm(l, d, 3 * d);
            t.mm(l, d, d);
            for _ in 0..n * heads {
                t.mm(c, h, cols);
                t.mm(c, cols, h);
            }
        });
        let step = move |tl: i64| {
            let t = tl - 1;
            let seen =
                (0..=t).filter(|&s| s >= t - nw * b || s < g * b).count() as i64 + b * r.min((t / b - nw - g).max(0));
            tally(|c| {
                c.mm(1, d, 3 * d);
                c.mm(1, d, d);
                for _ in 0..heads {
                    c.mm(1, h, seen);
                    c.mm(1, seen, h);
                }
            })
        };
        let cfg = format!(
            r#"{{ name = "bigbird", block_size = {b}, num_window_blocks = {nw}, num_global_blocks = {g}, num_random_blocks = {r}, num_heads = {heads} }}"#
        );
        check(&cfg, d, l, stepwise(fwd, Tally::default(), step));
    }
}

/// Nyströmformer (segments of 3, two heads, a 4-tap conv skip), with the Razavi inverse (2
/// iterations) and with the exact solve: per token the projections and the depthwise conv; per
/// head the landmark kernel K2, the landmark → key scores and mix (K3, K3·V), the inverse (four
/// n × n products per iteration and Z·G, or the triangular solve), and the query → landmark
/// scores and mix for the rows that see a landmark; the step reads the landmarks and, at a
/// segment's last token, adds its K3 row over the whole cache and its H row (through K2's
/// leading block and its inverse, or through its K2 row and the earlier H rows).
#[test]
fn nystromformer_matches_the_tally() {
    let (seg, heads, taps) = (3i64, 2i64, 4i64);
    for razavi in [Some(2i64), None] {
        for (d, l) in [(8i64, 8i64), (16, 11), (8, 2)] {
            let h = d / heads;
            let n = l / seg;
            let tok = tally(|c| {
                c.mm(1, d, 3 * d);
                c.mm(1, d, d);
                c.each(d * taps, 2.0);
            });
            let fwd = tally(|c| {
                c.each(l, tok.0);
                if n > 0 {
                    let rows = l - seg + 1;
                    for _ in 0..heads {
                        c.mm(n, h, n);
                        c.mm(n, h, l);
                        c.mm(n, l, h);
                        match razavi {
                            Some(it) => {
                                for _ in 0..4 * it {
                                    c.mm(n, n, n);
                                }
                                c.mm(n, n, h);
                            }
                            None => c.solve(n, h),
                        }
                        c.mm(rows, h, n);
                        c.mm(rows, n, h);
                    }
                }
            });
            let step = move |ctx: i64| {
                let j = ctx / seg;
                tally(|c| {
                    c.each(1, tok.0);
                    for _ in 0..heads {
                        c.mm(1, h, j);
                        c.mm(1, j, h);
                        if ctx % seg == 0 {
                            c.mm(1, h, ctx);
                            c.mm(1, ctx, h);
                            match razavi {
                                Some(it) => {
                                    c.mm(j, h, j);
                                    for _ in 0..4 * it {
                                        c.mm(j, j, j);
                                    }
                                    c.mm(1, j, h);
                                }
                                None => {
                                    c.mm(1, h, j);
                                    c.mm(1, j - 1, h);
                                }
                            }
                        }
                    }
                })
            };
            let inverse = match razavi {
                Some(it) => format!("inv_iterations = {it}"),
                None => "use_razavi_pinverse = false".to_string(),
            };
            let cfg = format!(
                r#"{{ name = "nystromformer", segment_size = {seg}, num_heads = {heads}, conv_kernel_size = {taps}, {inverse} }}"#
            );
            check(&cfg, d, l, stepwise(fwd, Tally::default(), step));
        }
    }
    // one token per segment (the default num_landmarks over short sequences): causal softmax
    // attention, L × L scores and mix per head, no landmarks
    for (d, l) in [(8i64, 8i64), (16, 11)] {
        let h = d / heads;
        let tok = tally(|c| {
            c.mm(1, d, 3 * d);
            c.mm(1, d, d);
        });
        let fwd = tally(|c| {
            c.each(l, tok.0);
            for _ in 0..heads {
                c.mm(l, h, l);
                c.mm(l, l, h);
            }
        });
        let step = move |ctx: i64| {
            tally(|c| {
                c.each(1, tok.0);
                for _ in 0..heads {
                    c.mm(1, h, ctx);
                    c.mm(1, ctx, h);
                }
            })
        };
        let cfg = format!(r#"{{ name = "nystromformer", num_landmarks = 64, num_heads = {heads} }}"#);
        check(&cfg, d, l, stepwise(fwd, Tally::default(), step));
    }
}

/// ScatterBrain (window 3, m = 6 hyperbolic features from 3 directions, two heads, chunk 4):
/// projections and the random projections of q and k per token; the window part in blocks of
/// w + 1 queries against twice as many keys; the delayed low-rank part as the chunked linear
/// core with a decay per key channel (the running key maximum; only when some token is farther
/// than the window); the step scores the window, reads the low-rank state and, once a token
/// leaves the window, projects its key, rescales the state and adds it.
#[test]
fn scatterbrain_matches_the_tally() {
    let (w, m, heads, chunk) = (3i64, 6i64, 2i64, 4i64);
    let rows = m / 2;
    for (d, l) in [(8i64, 8i64), (16, 11), (8, 3)] {
        let h = d / heads;
        let v = h + 1;
        let n = (w + 1).min(l);
        let blocks = (l + n - 1) / n;
        let fwd = tally(|c| {
            for _ in 0..l {
                c.mm(1, d, 3 * d);
                c.mm(1, d, d);
                for _ in 0..2 * heads {
                    c.mm(1, h, rows);
                }
            }
            for _ in 0..blocks * heads {
                c.mm(n, h, 2 * n);
                c.mm(n, 2 * n, h);
            }
            if l > w + 1 {
                for _ in 0..((l + chunk - 1) / chunk) * heads {
                    linear_core(c, chunk, m, v, 2);
                }
            }
        });
        let step = move |ctx: i64| {
            let keys = ctx.min(w + 1);
            tally(|c| {
                c.mm(1, d, 3 * d);
                c.mm(1, d, d);
                for _ in 0..heads {
                    c.mm(1, h, rows);
                    c.mm(1, h, keys);
                    c.mm(1, keys, h);
                    c.mm(1, m, v);
                    if ctx > w {
                        c.mm(1, h, rows);
                        c.each(m * v, 1.0); // the state rescaled to the new running key maximum
                        c.mm(m, 1, v);
                    }
                }
            })
        };
        let cfg = format!(
            r#"{{ name = "scatterbrain", window_size = {w}, feature_dim = {m}, num_heads = {heads}, chunk_size = {chunk} }}"#
        );
        check(&cfg, d, l, stepwise(fwd, Tally::default(), step));
    }
}

/// `selective_lookups`, `sigmoid_lookups`, `sma_lookups`: attention's work (every position's
/// lookup is computed, selected or not) plus the selection layer d → 1 (SMA: d → 2).
#[test]
fn selective_lookups_match_the_tally() {
    for (d, l) in SHAPES {
        for (name, c) in [("selective_lookups", 1), ("sigmoid_lookups", 1), ("sma_lookups", 2)] {
            let (h, heads) = (d / 2, 2);
            let fwd = tally(|t| {
                t.mm(l, d, 3 * d);
                for _ in 0..heads {
                    t.mm(l, h, l);
                    t.mm(l, l, h);
                }
                t.mm(l, d, d);
                t.mm(l, d, c);
            });
            let step = move |ctx: i64| {
                tally(|t| {
                    t.mm(1, d, 3 * d);
                    for _ in 0..heads {
                        t.mm(1, h, ctx);
                        t.mm(1, ctx, h);
                    }
                    t.mm(1, d, d);
                    t.mm(1, d, c);
                })
            };
            for eval in ["top_k", "soft"] {
                let inline = format!(r#"{{ name = "{name}", num_heads = 2, eval_selection = "{eval}" }}"#);
                check(&inline, d, l, stepwise(fwd, Tally::default(), step));
            }
        }
    }
}

/// `native_sparse_attention`: projections, the compression MLPs per full block, the masked
/// compressed-attention matrix, the f64 selection scores, then up to L = 512 one dense `L × L`
/// score matrix mixed twice (branches 2 and 3), beyond it per query the gathered selected +
/// own blocks and the window band; the step at each context, with the compression of the
/// block a token completes.
#[test]
fn native_sparse_attention_matches_the_tally() {
    let cases = [
        (r#"{ name = "native_sparse_attention" }"#, 2, 16, 8, 4, 1, 1.0),
        (
            r#"{ name = "native_sparse_attention", num_heads = 2, sliding_window_size = 4, compress_block_size = 3, selection_block_size = 3, num_selected_blocks = 2, num_compressed_mem_kv = 2, compress_mlp_expand_factor = 0.5 }"#,
            2,
            4,
            3,
            2,
            2,
            0.5,
        ),
    ];
    for (inline, heads, w, b, n, m, e) in cases {
        for (d, l) in [(8i64, 8i64), (16, 11), (16, 40), (4, 515)] {
            let h = d / heads;
            let hid = (e * (b * h) as f64).floor() as i64;
            let nb = l / b;
            let n_eff = n.min(nb);
            let fwd = tally(|t| {
                t.mm(l, d, 3 * d);
                t.mm(l, d, 3 * heads);
                for _ in 0..heads {
                    for _ in 0..2 {
                        t.mm(nb, b * h, hid); // keys, then values: compression MLP
                        t.mm(nb, hid, h);
                    }
                    t.mm(l, h, m + nb); // compressed scores, masked in full
                    t.mm(l, m + nb, h);
                    if n_eff > 0 {
                        t.mm(l, h, nb); // selection scores
                    }
                    if l <= 512 {
                        t.mm(l, h, l); // shared scores of branches 2 and 3
                        t.mm(l, l, h); // selected + own blocks
                        t.mm(l, l, h); // window
                    }
                    for _ in 0..if l <= 512 { 0 } else { l } {
                        t.mm(1, h, (n_eff + 1) * b); // selected blocks + own block
                        t.mm(1, (n_eff + 1) * b, h);
                        t.mm(1, h, w + 1); // window band
                        t.mm(1, w + 1, h);
                    }
                }
                t.mm(l, d, d);
            });
            let step = move |ctx: i64| {
                let p = ctx - 1;
                let nv = p / b;
                let n2 = n.min(nv);
                tally(|t| {
                    t.mm(1, d, 3 * d);
                    t.mm(1, d, 3 * heads);
                    for _ in 0..heads {
                        t.mm(1, h, m + nv);
                        t.mm(1, m + nv, h);
                        if n2 > 0 {
                            t.mm(1, h, nv);
                        }
                        let keys = n2 * b + p % b + 1;
                        t.mm(1, h, keys);
                        t.mm(1, keys, h);
                        let win = w.min(p) + 1;
                        t.mm(1, h, win);
                        t.mm(1, win, h);
                        if ctx % b == 0 {
                            for _ in 0..2 {
                                t.mm(1, b * h, hid);
                                t.mm(1, hid, h);
                            }
                        }
                    }
                    t.mm(1, d, d);
                })
            };
            check(inline, d, l, stepwise(fwd, Tally::default(), step));
        }
    }
}

/// RWKV-5: five Linears, the chunked decayed-linear core with a decay per key channel (the
/// query read one step late), and the bonus `(r ⊙ u)·k` times `v` per position and head.
#[test]
fn rwkv5_matches_the_tally() {
    for (d, l) in SHAPES {
        let (n, chunk) = (4, 3);
        let heads = d / n;
        let chunks = (l + chunk - 1) / chunk;
        let tok = tally(|c| (0..5).for_each(|_| c.mm(1, d, d)));
        let bonus = |c: &mut Tally| {
            c.mm(1, n, 1); // (r ⊙ u)·k
            c.mm(1, 1, n); // times v
        };
        let fwd = tally(|c| {
            c.each(l, tok.0);
            for _ in 0..chunks * heads {
                linear_core(c, chunk, n, n, n);
            }
            for _ in 0..l * heads {
                bonus(c);
            }
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            for _ in 0..heads {
                linear_step(c, n, n, n);
                bonus(c);
            }
        });
        let cfg = format!(r#"{{ name = "rwkv5", head_size = {n}, chunk_size = {chunk}, scan = "chunked" }}"#);
        check(&cfg, d, l, stepwise(fwd, Tally::default(), move |_| step));
        // the fused scan (the default): the decode step at every position
        let fused = tally(|c| (0..l).for_each(|_| c.each(1, step.0)));
        check(&cfg.replace("\"chunked\"", "\"fused\""), d, l, stepwise(fused, Tally::default(), move |_| step));
    }
}

/// RWKV-6: the ddlerp (a d → 5·r_p Linear, five r_p → d maps), r, k, v, g, the decay LoRA and
/// o per token; the RWKV-5 core (decay per key channel) and bonus on K/H × V/H heads.
#[test]
fn rwkv6_matches_the_tally() {
    for (d, l) in SHAPES {
        let (heads, rp, rw, chunk) = (2, 3, 5, 3);
        let (kd, vd) = (d / 2, d);
        let (k, v) = (kd / heads, vd / heads);
        let chunks = (l + chunk - 1) / chunk;
        let tok = tally(|c| {
            c.mm(1, d, 5 * rp);
            (0..5).for_each(|_| c.mm(1, rp, d));
            c.mm(1, d, kd); // r
            c.mm(1, d, rw); // decay LoRA
            c.mm(1, rw, kd);
            c.mm(1, d, kd); // k
            c.mm(1, d, vd); // v
            c.mm(1, d, vd); // g
            c.mm(1, vd, d); // o
        });
        let bonus = move |c: &mut Tally| {
            c.mm(1, k, 1);
            c.mm(1, 1, v);
        };
        let fwd = tally(|c| {
            c.each(l, tok.0);
            for _ in 0..chunks * heads {
                linear_core(c, chunk, k, v, k);
            }
            for _ in 0..l * heads {
                bonus(c);
            }
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            for _ in 0..heads {
                linear_step(c, k, v, k);
                bonus(c);
            }
        });
        let cfg = format!(
            r#"{{ name = "rwkv6", num_heads = {heads}, proj_low_rank_dim = {rp}, gate_low_rank_dim = {rw}, chunk_size = {chunk}, scan = "chunked" }}"#
        );
        check(&cfg, d, l, stepwise(fwd, Tally::default(), move |_| step));
        // the fused scan (the default): the decode step at every position
        let fused = tally(|c| (0..l).for_each(|_| c.each(1, step.0)));
        check(&cfg.replace("\"chunked\"", "\"fused\""), d, l, stepwise(fused, Tally::default(), move |_| step));
    }
}

/// RWKV-7: r, k, v, o and three LoRAs per token, the `r_k` bonus, and the chunked DPLR core per
/// chunk and head (four pair-score products, two triangular-solve right-hand sides, the
/// intra-chunk mixes, the carried state's reads and updates); decode the dense-free step.
#[test]
fn rwkv7_matches_the_tally() {
    for (d, l) in SHAPES {
        let (n, rw, rg, ra, chunk) = (4, 3, 5, 2, 3);
        let heads = d / n;
        let chunks = (l + chunk - 1) / chunk;
        let tok = tally(|c| {
            (0..4).for_each(|_| c.mm(1, d, d));
            for r in [rw, rg, ra] {
                c.mm(1, d, r);
                c.mm(1, r, d);
            }
            for _ in 0..heads {
                c.mm(1, n, 1); // (r ⊙ k)·r_k
                c.mm(1, 1, n); // times v
            }
        });
        let fwd = tally(|c| {
            c.each(l, tok.0);
            for _ in 0..chunks * heads {
                (0..4).for_each(|_| c.mm(chunk, n, chunk)); // M_αβ, M_αk, P_rβ, P_rk
                c.mm(chunk, chunk, n); // M_αk V
                c.solve(chunk, 2 * n); // [W | Ũ]
                c.mm(chunk, chunk, n); // P_rβ U
                c.mm(chunk, chunk, n); // P_rk V
                c.mm(chunk, n, n); // W S₀
                c.mm(chunk, n, n); // (R e^b) S₀
                c.mm(n, chunk, n); // (β e^{b_C − b})ᵀ U
                c.mm(n, chunk, n); // (k e^{b_C − b})ᵀ V
            }
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            for _ in 0..heads {
                c.mm(1, n, n); // αᵀ S
                c.each(n * n, 1.0); // decay
                c.mm(n, 1, n); // β (αᵀS)
                c.mm(n, 1, n); // k vᵀ
                c.mm(1, n, n); // Sᵀ r
            }
        });
        check(
            &format!(
                r#"{{ name = "rwkv7", head_dim = {n}, decay_low_rank_dim = {rw}, gate_low_rank_dim = {rg}, a_low_rank_dim = {ra}, chunk_size = {chunk} }}"#
            ),
            d,
            l,
            stepwise(fwd, Tally::default(), move |_| step),
        );
    }
}

/// TTT-Linear and TTT-MLP: q, k, v, o and the learning-rate gate per token; per mini-batch and
/// head the dual form (the inner forward on k, the backward to the pre-activations, the
/// `tril(·)`-masked mixes, the readout on q and the weight hand-off); decode the primal step.
#[test]
fn ttt_matches_the_tally() {
    for (d, l) in SHAPES {
        let (heads, mbs) = (2, 3);
        let n = d / heads;
        let chunks = (l + mbs - 1) / mbs;
        let tok = tally(|c| {
            (0..4).for_each(|_| c.mm(1, d, d));
            c.mm(1, d, heads); // λ gate
        });
        for mlp in [false, true] {
            let f = 4 * n;
            let fwd = tally(|c| {
                c.each(l, tok.0);
                for _ in 0..chunks * heads {
                    if mlp {
                        c.mm(mbs, n, f); // Z₁ = K W₁
                        c.mm(mbs, f, n); // Z₂ = X₂ W₂
                        c.mm(mbs, n, f); // ∇Z₁ = ∇Z₂ W₂ᵀ
                        c.mm(mbs, n, mbs); // tril(Q Kᵀ)
                        c.mm(mbs, mbs, f); // (E ⊙ A₁) ∇Z₁
                        c.mm(mbs, mbs, f); // E ∇Z₁
                        c.mm(mbs, n, f); // Q W₁
                        c.mm(mbs, f, mbs); // tril(X̄₂ X₂ᵀ)
                        c.mm(mbs, mbs, n); // (E ⊙ A₂) ∇Z₂
                        c.mm(mbs, mbs, n); // E ∇Z₂
                        c.mm(mbs, f, n); // X̄₂ W₂
                        c.mm(n, mbs, f); // W₁ update
                        c.mm(1, mbs, f); // b₁ update
                        c.mm(f, mbs, n); // W₂ update
                        c.mm(1, mbs, n); // b₂ update
                    } else {
                        c.mm(mbs, n, n); // Z = K W
                        c.mm(mbs, n, mbs); // tril(Q Kᵀ)
                        c.mm(mbs, mbs, n); // (E ⊙ A) ∇Z
                        c.mm(mbs, mbs, n); // E ∇Z
                        c.mm(mbs, n, n); // Q W
                        c.mm(n, mbs, n); // W update
                        c.mm(1, mbs, n); // b update
                    }
                }
            });
            let step = tally(|c| {
                c.each(1, tok.0);
                for _ in 0..heads {
                    if mlp {
                        c.mm(1, n, f); // Z₁ at W_m
                        c.mm(1, f, n); // Z₂
                        c.mm(1, n, f); // ∇Z₁
                        c.mm(n, 1, f); // Σ λ kᵀ∇Z₁
                        c.mm(1, 1, f); // Σ λ ∇Z₁
                        c.mm(f, 1, n); // Σ λ X₂ᵀ∇Z₂
                        c.mm(1, 1, n); // Σ λ ∇Z₂
                        c.each(n * f + f + f * n + n, 2.0); // W_t = W_m − τ Σ
                        c.mm(1, n, f); // q W₁,t
                        c.mm(1, f, n); // X̄₂ W₂,t
                    } else {
                        c.mm(1, n, n); // Z at W_m
                        c.mm(n, 1, n); // Σ λ kᵀ∇Z
                        c.mm(1, 1, n); // Σ λ ∇Z
                        c.each(n * n + n, 2.0); // W_t = W_m − τ Σ
                        c.mm(1, n, n); // q W_t
                    }
                }
            });
            let name = if mlp { "ttt_mlp" } else { "ttt_linear" };
            check(
                &format!(r#"{{ name = "{name}", num_heads = {heads}, mini_batch_size = {mbs} }}"#),
                d,
                l,
                stepwise(fwd, Tally::default(), move |_| step),
            );
        }
    }
}

#[test]
fn mamba2_matches_the_tally() {
    for (d, l) in SHAPES {
        let (e, n, g, p, k, chunk) = (2 * d, 4, 2, 4, 4, 3);
        let (h, cd, c) = (e / p, e + 2 * g * n, chunk.min(l));
        let padded = (l + c - 1) / c * c;
        let tok = tally(|t| {
            t.mm(1, d, e + cd + h); // z, xBC, dt
            t.mm(1, k, cd); // depthwise conv over x, B, C
            t.mm(1, e, d);
        });
        let fwd = tally(|t| {
            t.each(l, tok.0);
            for _ in 0..h {
                for _ in 0..padded / c {
                    t.mm(c, n, c); // C·Bᵀ within the chunk
                    t.each(c * c, 1.0); // its pairwise decay
                    t.mm(c, c, p); // scores × Δx
                    t.mm(c, n, p); // readout of the carried state
                    t.mm(n, c, p); // the chunk's state update
                }
            }
        });
        let step = tally(|t| {
            t.each(1, tok.0);
            t.each(h * n * p, 5.0); // decay, update, readout
        });
        let cfg = format!(
            r#"{{ name = "mamba2", d_state = {n}, headdim = {p}, ngroups = {g}, chunk_size = {chunk}, scan = "chunked" }}"#
        );
        check(&cfg, d, l, stepwise(fwd, Tally::default(), move |_| step));
        // the fused scan (the default): the decode step at every position
        let fused = tally(|t| (0..l).for_each(|_| t.each(1, step.0)));
        check(&cfg.replace("\"chunked\"", "\"fused\""), d, l, stepwise(fused, Tally::default(), move |_| step));
    }
}

/// S4's DPLR kernel as the tally sees it: per channel the Cauchy matrix over `⌊L/2⌋ + 1`
/// bins and N full modes (8 per entry), its four weighted sums (a complex multiply-add, 8,
/// per entry and sum), the Woodbury combination (24 per bin) and the inverse FFT of length L.
fn dplr_kernel_tally(c: &mut Tally, d: i64, n: i64, l: i64) {
    for _ in 0..d {
        let bins = l / 2 + 1;
        c.each(bins * n, 8.0);
        c.each(bins * n * 4, 8.0);
        c.each(bins, 24.0);
        c.rfft(l);
    }
}

/// One dense real SSM step per channel: `Ā x` (`[N, N] × [N, 1]`), `B̄ u` and the readout.
fn dense_step_tally(c: &mut Tally, d: i64, n: i64) {
    for _ in 0..d {
        c.mm(n, n, 1);
        c.each(n, 2.0);
        c.mm(1, n, 1);
    }
}

#[test]
fn s4_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let n = 4;
        let fwd = tally(|c| {
            c.fft_conv(d, l);
            c.mm(l, d, 2 * d); // output Linear before the GLU
        });
        let batch = tally(|c| {
            (0..d).for_each(|_| c.rfft(2 * l)); // the kernel's transform in the convolution
            dplr_kernel_tally(c, d, n, l); // L_max = l here
        });
        let step = tally(|c| {
            dense_step_tally(c, d, n);
            c.mm(1, d, 2 * d);
        });
        check(&format!(r#"{{ name = "s4", d_state = {n} }}"#), d, l, stepwise(fwd, batch, move |_| step));
    }
}

/// Liquid-S4 counts as S4: its correlation terms are element-wise on `[L, d]` activations.
#[test]
fn liquid_s4_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let n = 4;
        let fwd = tally(|c| {
            c.fft_conv(d, l);
            c.mm(l, d, 2 * d);
        });
        let batch = tally(|c| {
            (0..d).for_each(|_| c.rfft(2 * l));
            dplr_kernel_tally(c, d, n, l);
        });
        let step = tally(|c| {
            dense_step_tally(c, d, n);
            c.mm(1, d, 2 * d);
        });
        for kind in ["polyb", "kb"] {
            check(
                &format!(r#"{{ name = "liquid_s4", d_state = {n}, liquid_kernel = "{kind}", liquid_degree = 3 }}"#),
                d,
                l,
                stepwise(fwd, batch, move |_| step),
            );
        }
    }
}

#[test]
fn gss_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let (f, h, n) = (2 * d, 4, 3);
        let tok = tally(|c| {
            c.mm(1, d, f); // gate branch
            c.mm(1, d, h); // reduced SSM branch
            c.mm(1, h, f); // W_g
            c.mm(1, f, d); // W_o
        });
        let fwd = tally(|c| {
            c.each(l, tok.0);
            c.fft_conv(h, l);
        });
        let batch = tally(|c| {
            (0..h).for_each(|_| c.rfft(2 * l));
            c.each(h * n * l, 8.0); // the DSS kernel's modal sum
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            c.each(h * n, 12.0); // modal step
        });
        check(
            &format!(r#"{{ name = "gss", dim_expansion_factor = 2.0, dss_kernel_h = {h}, dss_kernel_n = {n} }}"#),
            d,
            l,
            stepwise(fwd, batch, move |_| step),
        );
    }
}

#[test]
fn bigs_matches_the_tally() {
    for (d, l) in FFT_SHAPES {
        let (e, n) = (2 * d, 5);
        let tok = tally(|c| {
            c.mm(1, d, e); // v
            c.mm(1, d, d); // u
            c.mm(1, d, d); // uc
            c.mm(1, d, e); // dol
            c.mm(1, e, d); // do
        });
        let fwd = tally(|c| {
            c.each(l, tok.0);
            c.fft_conv(d, l);
        });
        let batch = tally(|c| {
            c.rfft(2 * l); // one shared kernel
            c.each(n * l, 8.0);
        });
        let step = tally(|c| {
            c.each(1, tok.0);
            c.each(d * n, 12.0);
        });
        check(
            &format!(r#"{{ name = "bigs", expand = 2, num_ssm = {n}, scaling = "lin" }}"#),
            d,
            l,
            stepwise(fwd, batch, move |_| step),
        );
    }
}

#[test]
fn monarch_mixer_matches_the_tally() {
    for (d, l) in [(8i64, 8i64), (16, 11)] {
        let (e, f) = (3, 16);
        let tok = tally(|c| {
            c.mm(1, d, 3 * d);
            c.mm(1, 3, 3 * d); // depthwise FIR, 3 taps
            c.mm(1, d, d);
        });
        let ffn = tally(|c| {
            c.mm(l, e, f);
            c.mm(l, f, f);
            c.mm(l, f, f);
            c.mm(l, f, d);
        });
        // the Monarch DFT of length n = b1·b2 per channel: [b1, b1] × [b1, b2], twiddle, [b1, b2] × [b2, b2]
        let (b1, b2) = super::monarch_mixer::monarch_sizes(l);
        let n = b1 * b2;
        let dft = tally(|c| {
            c.each(b1 * b1 * b2, 8.0);
            c.each(n, 6.0);
            c.each(b1 * b2 * b2, 8.0);
        });
        for residual in [false, true] {
            let k = if residual { 2 } else { 1 };
            let fwd = tally(|c| {
                c.each(l, tok.0);
                for _ in 0..k * d {
                    c.each(2, dft.0); // input and inverse
                    c.each(n, 6.0); // product
                }
            });
            let batch = tally(|c| {
                for _ in 0..k {
                    c.each(d, dft.0);
                    c.each(1, ffn.0);
                }
            });
            let step = move |t: i64| {
                tally(|c| {
                    c.each(1, tok.0);
                    (0..k).for_each(|_| c.mm(1, t, d));
                })
            };
            check(
                &format!(r#"{{ name = "monarch_mixer", residual_long_conv = {residual} }}"#),
                d,
                l,
                stepwise(fwd, batch, step),
            );
        }
        // seq_mixing = "fft" counts as the other FFT convolutions
        if l.count_ones() == 1 {
            let fwd = tally(|c| {
                c.each(l, tok.0);
                c.fft_conv(d, l);
            });
            let batch = tally(|c| {
                (0..d).for_each(|_| c.rfft(2 * l));
                c.each(1, ffn.0);
            });
            let step = move |t: i64| {
                tally(|c| {
                    c.each(1, tok.0);
                    c.mm(1, t, d);
                })
            };
            check(r#"{ name = "monarch_mixer", seq_mixing = "fft" }"#, d, l, stepwise(fwd, batch, step));
        }
    }
}
