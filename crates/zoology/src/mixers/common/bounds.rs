//! Range checks for mixer hyperparameters: every check names the field and says what is
//! allowed, so that a config either validates or fails with a message, never panics later
//! (an absurd size would otherwise surface as an allocation failure or a shape panic deep in
//! libtorch).

use crate::error::{config_err, Result};

/// Upper bound for any width, state size, filter length or chunk length a mixer accepts.
/// Far above every paper setting (the largest is d_state = L = 1024) and small enough that
/// products of two such sizes stay well inside i64 and allocation limits are reported here.
pub const MAX_SIZE: i64 = 1 << 16;

/// `lo ≤ v ≤ hi`, else an error for `{field}.{key}` that quotes `e.g.` as an example value.
pub fn int_in(field: &str, key: &str, v: i64, lo: i64, hi: i64, eg: &str) -> Result<()> {
    if v < lo || v > hi {
        return Err(config_err(
            format!("{field}.{key}"),
            format!("must be an integer in [{lo}, {hi}], e.g. {eg} (got {v})"),
        ));
    }
    Ok(())
}

/// A finite float in the open interval `(lo, hi)` (use `f64::INFINITY` for no upper bound).
pub fn float_in(field: &str, key: &str, v: f64, lo: f64, hi: f64, eg: &str) -> Result<()> {
    if !(v.is_finite() && v > lo && v < hi) {
        let range = if hi.is_infinite() { format!("> {lo}") } else { format!("in ({lo}, {hi})") };
        return Err(config_err(
            format!("{field}.{key}"),
            format!("must be a finite number {range}, e.g. {eg} (got {v})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_field_and_reject_nan() {
        assert!(int_in("m", "k", 3, 1, 4, "3").is_ok());
        let e = int_in("model.mixer", "d_state", 0, 1, 8, "16").unwrap_err().to_string();
        assert!(e.contains("model.mixer.d_state") && e.contains("[1, 8]") && e.contains("got 0"), "{e}");
        assert!(int_in("m", "k", 9, 1, 8, "3").is_err());
        assert!(float_in("m", "w", 1.0, 0.0, f64::INFINITY, "1").is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = float_in("model.mixer", "w", bad, 0.0, f64::INFINITY, "1").unwrap_err().to_string();
            assert!(e.contains("model.mixer.w"), "{e}");
        }
        assert!(float_in("m", "t", 1.0, 0.0, 1.0, "0.01").is_err());
    }
}

/// The key/value widths of a gated linear-attention mixer (GLA, RWKV-6): `expand_k` and
/// `expand_v` in (0, MAX_EXPAND] with at least one channel each, and `num_heads` dividing both
/// widths `(kd, vd)`.
pub fn expand_and_heads(
    field: &str,
    d: i64,
    expand_k: f64,
    expand_v: f64,
    heads: i64,
    widths: (i64, i64),
) -> Result<()> {
    use crate::mixers::linear_attention::MAX_EXPAND;
    for (name, e) in [("expand_k", expand_k), ("expand_v", expand_v)] {
        if !(e > 0.0 && e <= MAX_EXPAND && (d as f64 * e).floor() >= 1.0) {
            return Err(config_err(
                format!("{field}.{name}"),
                format!(
                    "must be a finite number in (0, {MAX_EXPAND}] with ⌊d_model·{name}⌋ ≥ 1 (d_model {d}, got {e})"
                ),
            ));
        }
    }
    let (kd, vd) = widths;
    if heads < 1 || kd % heads != 0 || vd % heads != 0 {
        return Err(config_err(
            format!("{field}.num_heads"),
            format!(
                "must be ≥ 1 and divide the key width {kd} (d_model {d} × expand_k {expand_k}) and the value width {vd} (× expand_v {expand_v}); got {heads}"
            ),
        ));
    }
    Ok(())
}
