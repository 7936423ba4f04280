//! Test statistics shared by the tasks' distribution tests: χ² goodness of fit and two-sample
//! homogeneity with pooled sparse cells, and the Wilson–Hilferty χ² quantile. Every test that
//! uses them fixes its seeds, so its outcome is deterministic; the thresholds give a known
//! false-failure rate over seeds.

/// Upper `alpha` quantile of χ²(k) by the Wilson–Hilferty approximation (relative error
/// well under 1% for k ≥ 10 at these tail probabilities). `z` is the standard normal upper
/// quantile of `alpha`.
pub(crate) fn chi2_quantile(k: f64, z: f64) -> f64 {
    let c = 2.0 / (9.0 * k);
    k * (1.0 - c + z * c.sqrt()).powi(3)
}
/// z for α = 1e-4: each χ² test below fails a correct generator with probability 1e-4
/// (over seeds; the seeds are fixed, so the outcome is deterministic).
pub(crate) const Z_1E4: f64 = 3.719;

/// Goodness of fit of `obs` to probabilities `p` (cells with expected count < 5 pooled).
/// Returns (statistic, degrees of freedom).
pub(crate) fn chi2_gof(obs: &[f64], p: &[f64]) -> (f64, f64) {
    let n: f64 = obs.iter().sum();
    let (mut stat, mut cells, mut pool_o, mut pool_e) = (0.0, 0.0, 0.0, 0.0);
    for (o, q) in obs.iter().zip(p) {
        let e = n * q;
        if e < 5.0 {
            pool_o += o;
            pool_e += e;
        } else {
            stat += (o - e).powi(2) / e;
            cells += 1.0;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e.max(1e-12);
        cells += 1.0;
    }
    (stat, cells - 1.0)
}

/// Two-sample χ² homogeneity test of two count vectors over the same cells (cells with
/// fewer than 10 observations in both samples together are pooled).
pub(crate) fn chi2_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (na, nb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    let (ka, kb) = ((nb / na).sqrt(), (na / nb).sqrt());
    let (mut stat, mut cells, mut pa, mut pb) = (0.0, 0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        if x + y < 10.0 {
            pa += x;
            pb += y;
        } else {
            stat += (x * ka - y * kb).powi(2) / (x + y);
            cells += 1.0;
        }
    }
    if pa + pb > 0.0 {
        stat += (pa * ka - pb * kb).powi(2) / (pa + pb);
        cells += 1.0;
    }
    (stat, cells - 1.0)
}

/// Asserts that counts `obs` fit probabilities `p` (χ² goodness of fit at α = 1e-4).
pub(crate) fn assert_fits(obs: &[f64], p: &[f64], what: &str) {
    let (stat, df) = chi2_gof(obs, p);
    let crit = chi2_quantile(df.max(1.0), Z_1E4);
    assert!(stat < crit, "{what}: χ² {stat:.1} ≥ {crit:.1} (df {df}); counts {obs:?}");
}

/// Asserts that two count vectors over the same cells come from one distribution (two-sample
/// χ² at α = 1e-4).
pub(crate) fn assert_same_distribution(a: &[f64], b: &[f64], what: &str) {
    let (stat, df) = chi2_two_sample(a, b);
    let crit = chi2_quantile(df.max(1.0), Z_1E4);
    assert!(stat < crit, "{what}: two-sample χ² {stat:.1} ≥ {crit:.1} (df {df})\n  a {a:?}\n  b {b:?}");
}

/// Uniform probabilities over `k` cells.
pub(crate) fn uniform(k: usize) -> Vec<f64> {
    vec![1.0 / k as f64; k]
}

/// Counts of `values` in `0..k` as f64 cells (values outside are a test failure).
pub(crate) fn histogram(values: impl IntoIterator<Item = usize>, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; k];
    for v in values {
        assert!(v < k, "value {v} outside 0..{k}");
        c[v] += 1.0;
    }
    c
}
