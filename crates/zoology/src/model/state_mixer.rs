//! State mixers: the per-position part of a block. `identity` (Zoology's paper configs),
//! `mlp` (Linear d→4d, GELU, Linear 4d→d) and `glu` (W₂ (σ(W_g x) ⊙ W₁ x), hidden 4d).

use crate::mixers::common::Linear;
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
}

#[derive(Debug)]
pub enum StateMixer {
    Identity,
    Mlp { fc1: Linear, fc2: Linear },
    Glu { fc1: Linear, gate: Linear, fc2: Linear },
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
        }
    }

    pub fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        match self {
            StateMixer::Identity => x.shallow_clone(),
            StateMixer::Mlp { fc1, fc2 } => fc2.forward(&fc1.forward(x).gelu("none")),
            StateMixer::Glu { fc1, gate, fc2 } => fc2.forward(&(gate.forward(x).sigmoid() * fc1.forward(x))),
        }
    }
}
