//! State mixers: the per-position part of a block. `identity` (Zoology's paper configs),
//! `mlp` (Linear d→4d, GELU, Linear 4d→d), `glu` (W₂ (σ(W_g x) ⊙ W₁ x), hidden 4d), `swiglu`
//! (Llama's feed-forward: `W₂ (silu(W₁ x) ⊙ W₃ x)`, no biases, hidden [`swiglu_hidden`]`(d)` =
//! 8d/3 rounded up to a multiple of 32, so that it has about the parameters of a 4d MLP) and
//! `rwkv_channel` (RWKV-4 channel mixing: token shift `x′ = μ x_t + (1−μ) x_{t−1}` with separate
//! μ for r and k, `out = σ(W_r x′_r) ⊙ W_v relu(W_k x′_k)²`, hidden 4d, no biases). Because of
//! the token shift `rwkv_channel` looks one token back (causally), so a recurrent decoder would
//! carry the last input: `d` elements per layer, counted by [`StateMixer::state_size`].

use crate::mixers::common::layers::{time_mix, token_shift, Linear};
use crate::mixers::BuildCtx;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StateMixerKind {
    Identity,
    #[default]
    Mlp,
    Glu,
    #[serde(rename = "swiglu")]
    SwiGlu,
    RwkvChannel,
}

/// Hidden width of the `swiglu` state mixer: `⌈8d/3⌉` rounded up to a multiple of 32 (Llama's
/// rule `2·4d/3` rounded up to `multiple_of`, here 32 rather than 256 because our models are
/// small): d = 128 → 352.
pub fn swiglu_hidden(d: i64) -> i64 {
    let h = (8 * d + 2) / 3;
    (h + 31) / 32 * 32
}

#[derive(Debug)]
pub enum StateMixer {
    Identity,
    Mlp { fc1: Linear, fc2: Linear },
    Glu { fc1: Linear, gate: Linear, fc2: Linear },
    SwiGlu { w1: Linear, w3: Linear, w2: Linear },
    RwkvChannel { key: Linear, value: Linear, receptance: Linear, mix_k: Tensor, mix_r: Tensor },
}

impl StateMixer {
    pub fn new(p: nn::Path, kind: StateMixerKind, d: i64, ctx: &BuildCtx) -> Self {
        let h = 4 * d;
        match kind {
            StateMixerKind::Identity => StateMixer::Identity,
            StateMixerKind::Mlp => StateMixer::Mlp {
                fc1: Linear::new(&p / "fc1", d, h, true, ctx.init_std),
                fc2: Linear::new(&p / "fc2", h, d, true, ctx.out_std),
            },
            StateMixerKind::Glu => StateMixer::Glu {
                fc1: Linear::new(&p / "fc1", d, h, true, ctx.init_std),
                gate: Linear::new(&p / "gate", d, h, true, ctx.init_std),
                fc2: Linear::new(&p / "fc2", h, d, true, ctx.out_std),
            },
            StateMixerKind::SwiGlu => {
                let h = swiglu_hidden(d);
                StateMixer::SwiGlu {
                    w1: Linear::new(&p / "w1", d, h, false, ctx.init_std),
                    w3: Linear::new(&p / "w3", d, h, false, ctx.init_std),
                    w2: Linear::new(&p / "w2", h, d, false, ctx.out_std),
                }
            }
            StateMixerKind::RwkvChannel => {
                // RWKV-4 init: μ_k = μ_r = (c/d)^{1 − layer/n}
                let (_, r1, ddd) = crate::mixers::rwkv::rwkv_ratios(ctx.layer_idx, ctx.n_layers, d, p.device());
                let mix = |name: &str| {
                    let t = p.var(name, &[d], nn::Init::Const(0.0));
                    tch::no_grad(|| t.shallow_clone().copy_(&ddd.pow_tensor_scalar(r1)));
                    t
                };
                StateMixer::RwkvChannel {
                    key: Linear::new(&p / "key", d, h, false, ctx.init_std),
                    value: Linear::new(&p / "value", h, d, false, ctx.out_std),
                    receptance: Linear::new(&p / "receptance", d, d, false, ctx.init_std),
                    mix_k: mix("time_mix_k"),
                    mix_r: mix("time_mix_r"),
                }
            }
        }
    }

    /// Elements a recurrent decoder would carry per sequence for this state mixer.
    pub fn state_size(&self) -> i64 {
        match self {
            StateMixer::RwkvChannel { receptance, .. } => receptance.ws.size()[0],
            _ => 0,
        }
    }

    /// FLOPs per token ([`crate::flops`] convention: its Linears; activations and the token
    /// shift are element-wise, not counted): `identity` 0, `mlp` `16·d²`, `glu` `24·d²`,
    /// `swiglu` `6·d·h`, `rwkv_channel` `18·d²`.
    pub fn flops_per_token(&self) -> f64 {
        match self {
            StateMixer::Identity => 0.0,
            StateMixer::Mlp { fc1, fc2 } => fc1.flops() + fc2.flops(),
            StateMixer::Glu { fc1, gate, fc2 } => fc1.flops() + gate.flops() + fc2.flops(),
            StateMixer::SwiGlu { w1, w3, w2 } => w1.flops() + w3.flops() + w2.flops(),
            StateMixer::RwkvChannel { key, value, receptance, .. } => key.flops() + value.flops() + receptance.flops(),
        }
    }

    pub fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        match self {
            StateMixer::Identity => x.shallow_clone(),
            StateMixer::Mlp { fc1, fc2 } => fc2.forward(&fc1.forward(x).gelu("none")),
            StateMixer::Glu { fc1, gate, fc2 } => fc2.forward(&(gate.forward(x).sigmoid() * fc1.forward(x))),
            StateMixer::SwiGlu { w1, w3, w2 } => w2.forward(&(w1.forward(x).silu() * w3.forward(x))),
            StateMixer::RwkvChannel { key, value, receptance, mix_k, mix_r } => {
                let prev = token_shift(x);
                let k = key.forward(&time_mix(x, &prev, mix_k)).relu().square();
                receptance.forward(&time_mix(x, &prev, mix_r)).sigmoid() * value.forward(&k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// rwkv_channel looks one token back and never forward: perturbing positions > t leaves
    /// outputs ≤ t unchanged, and changes output t+1 (through the token shift).
    #[test]
    fn rwkv_channel_is_causal_and_sees_the_previous_token() {
        let _rng = crate::mixers::testing::seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let d = 8;
        let m = StateMixer::new(vs.root(), StateMixerKind::RwkvChannel, d, &BuildCtx::new(0, 2, 16));
        assert_eq!(m.state_size(), d);
        let l = 10;
        let x = Tensor::randn([2, l, d], (Kind::Float, Device::Cpu));
        for t in [0i64, 4, 8] {
            let x2 = x.copy();
            let _ = x2
                .narrow(1, t + 1, l - t - 1)
                .g_add_(&(Tensor::randn([2, l - t - 1, d], (Kind::Float, Device::Cpu)) * 3.0));
            let (y1, y2) = tch::no_grad(|| (m.forward(&x, false), m.forward(&x2, false)));
            let before = (y1.narrow(1, 0, t + 1) - y2.narrow(1, 0, t + 1)).abs().max().double_value(&[]);
            assert_eq!(before, 0.0, "outputs up to t={t} changed");
            // output t+1 sees x_t only through the token shift
            let x3 = x.copy();
            let _ = x3.narrow(1, t, 1).g_add_(&Tensor::ones([2, 1, d], (Kind::Float, Device::Cpu)));
            let y3 = tch::no_grad(|| m.forward(&x3, false));
            let next = (y1.select(1, t + 1) - y3.select(1, t + 1)).abs().max().double_value(&[]);
            assert!(next > 0.0, "output t+1 does not depend on x_t: no token shift");
        }
    }
}
