//! [`super::MixerKind::memory`] against built mixers: every parameter count a mixer states is
//! the number of elements its constructor really creates, for every registered mixer and suite
//! variant, at two widths, two maximum lengths and both layers of a two-layer model.

use super::testing::seeded;
use super::{memory_table, registry, BuildCtx};
use tch::{nn, Device};

#[test]
fn stated_parameter_counts_equal_the_built_mixers() {
    let (mut checked, mut unstated, mut wrong) = (vec![], vec![], vec![]);
    for e in registry() {
        for (vi, table) in (e.suite_variants)().into_iter().enumerate() {
            for (d, max_len) in [(16i64, 48i64), (32, 20)] {
                for layer in 0..2usize {
                    let ctx = BuildCtx::new(layer, 2, max_len);
                    let built = seeded(1, || {
                        let vs = nn::VarStore::new(Device::Cpu);
                        (e.build)(vs.root() / "mixer", d, &table, &ctx, "model.mixer").map(|_| vs)
                    });
                    let Ok(vs) = built else { continue }; // a variant made for another width
                    let real: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
                    let label = format!("{}#{vi} d={d} L={max_len} layer {layer}", e.name);
                    match memory_table(&table, d, &ctx, max_len).unwrap().params {
                        Some(p) if p == real as f64 => checked.push(label),
                        Some(p) => wrong.push(format!("{label}: states {p}, builds {real}")),
                        None => unstated.push(label),
                    }
                }
            }
        }
    }
    println!("parameter counts checked: {}", checked.len());
    println!("mixers that state no count (the memory estimate counts none for them): {unstated:?}");
    assert!(!checked.is_empty());
    assert!(wrong.is_empty(), "MixerKind::memory states wrong parameter counts:\n  {}", wrong.join("\n  "));
}

/// Attention's scores are in the estimate: B·H·L² floats per layer kept, one more while the
/// softmax runs; the sliding window's band is smaller than the full square once w < L.
#[test]
fn attention_states_its_quadratic_scores() {
    let t = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
    let ctx = BuildCtx::new(0, 2, 4096);
    let a = memory_table(&t("name = \"attention\"\nnum_heads = 2"), 64, &ctx, 4096).unwrap();
    assert_eq!(a.transient_per_seq, 2.0 * 4096.0 * 4096.0);
    assert!(a.saved_per_seq >= 2.0 * 4096.0 * 4096.0);
    let w = memory_table(&t("name = \"sliding_window\"\nnum_heads = 2\nwindow = 64"), 64, &ctx, 4096).unwrap();
    assert!(w.transient_per_seq < a.transient_per_seq / 10.0, "{w:?}");
    assert_eq!(w.params, a.params);
}
