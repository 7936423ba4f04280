//! Layers and tensor plumbing shared by mixers: initialised linear layers, norms, rotary
//! position embeddings, head split/merge, the causal mask and RWKV's token shift.

use tch::{nn, Kind, Tensor};

/// Linear layer `y = x Wᵀ + b` with weights N(0, std) and zero bias (Zoology's init).
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
}

impl Linear {
    /// FLOPs on one token: 2 per weight (a multiply-add each; the bias is not counted).
    pub fn flops(&self) -> f64 {
        2.0 * self.ws.numel() as f64
    }
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool, std: f64) -> Self {
        let ws = p.var("weight", &[d_out, d_in], nn::Init::Randn { mean: 0.0, stdev: std });
        let bs = bias.then(|| p.var("bias", &[d_out], nn::Init::Const(0.0)));
        Linear { ws, bs }
    }
    /// Works on any leading shape `[..., d_in]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.ws, self.bs.as_ref())
    }
}

/// RMS normalisation over the last dimension with a weight: `x / √(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let ms = x.square().mean_dim([-1i64].as_slice(), true, x.kind());
    x * (ms + eps).rsqrt() * w
}

/// L2 normalisation over the last dimension: `x / √(Σx² + eps)`.
pub fn l2_norm(x: &Tensor, eps: f64) -> Tensor {
    let ss = x.square().sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    x * (ss + eps).rsqrt()
}

/// `[B, L, H·h] → [B, H, L, h]`.
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    x.view([b, l, heads, d / heads]).transpose(1, 2)
}

/// `[B, H, L, h] → [B, L, H·h]`.
pub fn merge_heads(y: &Tensor) -> Tensor {
    let (b, h, l, e) = y.size4().unwrap();
    y.transpose(1, 2).contiguous().view([b, l, h * e])
}

/// Rotary position embedding (GPT-NeoX "rotate half") on `x: [B, H, L, h]` (h even) for the
/// absolute positions `offset .. offset + L`: with `θ_i = base^(−2i/h)`, `i < h/2`,
/// `[x₁, x₂] ↦ [x₁ cos(pθ) − x₂ sin(pθ), x₂ cos(pθ) + x₁ sin(pθ)]`.
pub fn rope(x: &Tensor, offset: i64, base: f64) -> Tensor {
    let (_, _, l, h) = x.size4().unwrap();
    let half = h / 2;
    let opts = (Kind::Float, x.device());
    let inv = (Tensor::arange(half, opts) * (-2.0 * base.ln() / h as f64)).exp();
    let pos = Tensor::arange_start(offset, offset + l, opts);
    let ang = pos.unsqueeze(1) * inv.unsqueeze(0); // [L, h/2]
    let (c, s) = (ang.cos().to_kind(x.kind()), ang.sin().to_kind(x.kind()));
    let (x1, x2) = (x.narrow(-1, 0, half), x.narrow(-1, half, half));
    Tensor::cat(&[&x1 * &c - &x2 * &s, &x2 * &c + &x1 * &s], -1)
}

/// Reference for [`rope`]: each position's rotation angles computed in f64 on the host and
/// applied pair by pair (`x[i]`, `x[i + h/2]`) with an explicit 2×2 rotation.
pub fn rope_reference(x: &Tensor, offset: i64, base: f64) -> Tensor {
    let (_, _, l, h) = x.size4().unwrap();
    let half = h / 2;
    let mut rows = Vec::with_capacity(l as usize);
    for t in 0..l {
        let p = (offset + t) as f64;
        let angles: Vec<f64> = (0..half).map(|i| p * base.powf(-2.0 * i as f64 / h as f64)).collect();
        let c: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let s: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        let c = Tensor::from_slice(&c).to_device(x.device()).to_kind(x.kind());
        let s = Tensor::from_slice(&s).to_device(x.device()).to_kind(x.kind());
        let xt = x.select(2, t);
        let (a, b) = (xt.narrow(-1, 0, half), xt.narrow(-1, half, half));
        rows.push(Tensor::cat(&[&a * &c - &b * &s, &a * &s + &b * &c], -1));
    }
    Tensor::stack(&rows, 2)
}

/// Causal mask `[L, L]` of booleans, true where attention is *not* allowed (s > t).
pub fn future_mask(l: i64, device: tch::Device) -> Tensor {
    Tensor::ones([l, l], (Kind::Bool, device)).triu(1)
}

/// Token shift (RWKV): `x_{t−1}` at position t, zeros at t = 0. `x: [B, L, D] → [B, L, D]`.
pub fn token_shift(x: &Tensor) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    let zero = Tensor::zeros([b, 1, d], (x.kind(), x.device()));
    Tensor::cat(&[zero, x.narrow(1, 0, l - 1)], 1)
}

/// RWKV token-shift interpolation `μ ⊙ x + (1 − μ) ⊙ x_prev` (any shape broadcasting with `μ`).
pub fn time_mix(x: &Tensor, x_prev: &Tensor, mu: &Tensor) -> Tensor {
    x * mu + x_prev * (1.0 - mu)
}
