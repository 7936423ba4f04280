//! PyTorch's default initialisations, for mixers whose source keeps them (S4, GSS).

use super::layers::Linear;
use tch::nn;

/// PyTorch's Linear init: weight (and bias) U(±1/√fan_in).
pub fn torch_linear(p: nn::Path, d_in: i64, d_out: i64, bias: bool) -> Linear {
    let lin = Linear::new(p, d_in, d_out, bias, 0.02);
    let b = 1.0 / (d_in as f64).sqrt();
    tch::no_grad(|| {
        let _ = lin.ws.shallow_clone().uniform_(-b, b);
        if let Some(bs) = &lin.bs {
            let _ = bs.shallow_clone().uniform_(-b, b);
        }
    });
    lin
}
