//! AdamW (decoupled weight decay, Loshchilov & Hutter; PyTorch's `torch.optim.AdamW` update),
//! written over tch tensors so that its state (m, v, step) can be checkpointed exactly.
//!
//! ```text
//! p ← p·(1 − lr·wd)                         (only for decayed parameters)
//! m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
//! p ← p − lr · (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
//! ```

use tch::{Kind, Tensor};

pub struct AdamW {
    pub params: Vec<(String, Tensor)>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub decay: Vec<bool>,
    pub t: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// `params` sorted by name; `no_decay_1d` exempts 1-D parameters (norm weights, biases).
    pub fn new(
        mut params: Vec<(String, Tensor)>,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        no_decay_1d: bool,
    ) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like().detach()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like().detach()).collect();
        let decay = params.iter().map(|(_, p)| !(no_decay_1d && p.dim() <= 1)).collect();
        AdamW { params, m, v, decay, t: 0, beta1, beta2, eps, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Global L2 norm of the gradients; scales them to `max_norm` when larger (if > 0).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .params
                .iter()
                .filter_map(|(_, p)| {
                    let g = p.grad();
                    g.defined().then(|| g.pow_tensor_scalar(2).sum(Kind::Float))
                })
                .collect();
            if norms.is_empty() {
                return 0.0;
            }
            let total = Tensor::stack(&norms, 0).sum(Kind::Float).sqrt().double_value(&[]);
            if max_norm > 0.0 && total > max_norm {
                let s = max_norm / (total + 1e-6);
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(s);
                    }
                }
            }
            total
        })
    }

    pub fn step(&mut self, lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.decay[i] && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let m = &mut self.m[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let v = &mut self.v[i];
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.addcmul_(&g, &g.g_mul_scalar(1.0 - self.beta2));
                let denom = (&*v / bc2).sqrt() + self.eps;
                let upd = &*m / &denom * (lr / bc1);
                let _ = p.g_sub_(&upd);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic_and_decays_weights() {
        let x = Tensor::from_slice(&[3.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("x".into(), x.shallow_clone())], 0.0, 0.9, 0.999, 1e-8, false);
        for _ in 0..500 {
            opt.zero_grad();
            let loss = (&x * &x).sum(Kind::Float);
            loss.backward();
            opt.step(0.05);
        }
        assert!(x.abs().max().double_value(&[]) < 1e-2, "{x:?}");
        // First step of Adam moves each coordinate by ≈ lr (sign of the gradient).
        let y = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut o2 = AdamW::new(vec![("y".into(), y.shallow_clone())], 0.5, 0.9, 0.999, 1e-8, false);
        (&y * 2.0).sum(Kind::Float).backward();
        o2.step(0.1);
        // decay: 1·(1 − 0.1·0.5) = 0.95, then − 0.1 → 0.85
        assert!((y.double_value(&[0]) - 0.85).abs() < 1e-5, "{}", y.double_value(&[0]));
    }
}
