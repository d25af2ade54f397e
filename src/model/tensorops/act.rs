//! Activations and the ReLU backward rules on the tensor-op backend: the definitions of
//! [`crate::model::ops::act`] (the rule table of reference section 2) written as
//! comparisons, `where_cond` and elementwise arithmetic.

use candle_core::{DType, Tensor};

use super::{pick, Cache, Key};
use crate::error::Result;
use crate::model::ops::act::{Act, Family};
use crate::model::rule::Rule;

/// `on ? a : b` with `on` broadcast to `a`'s shape.
fn select(on: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(on.broadcast_as(a.shape())?.where_cond(a, b)?)
}

/// `g` where a broadcastable `on` holds, else 0.
fn keep_where(on: &Tensor, g: &Tensor) -> Result<Tensor> {
    select(on, g, &g.zeros_like()?)
}

/// The ReLU rule for gradient rows `g` against the ReLU output `y` of image `img` (or of
/// every row): `y > 0` exactly where the input was.
pub fn relu_rule(g: &Tensor, y: &Tensor, img: Option<usize>, rule: Rule) -> Result<Tensor> {
    let on = || -> Result<Tensor> { Ok(pick(y, img)?.gt(0f32)?) };
    match rule {
        Rule::Gradient => keep_where(&on()?, g),
        Rule::Deconv => Ok(g.relu()?),
        Rule::Guided => keep_where(&on()?, &g.relu()?),
        Rule::GuidedNeg => keep_where(&on()?, &g.minimum(0f32)?),
    }
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

fn erf(x: &Tensor) -> Result<Tensor> {
    Ok(x.erf()?)
}

/// `where x > 0 { x } else { slope * x }`, `slope` a number or a broadcastable tensor.
fn leaky(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    select(&x.gt(0f32)?, x, &x.broadcast_mul(slope)?)
}

fn scalar(x: &Tensor, v: f32) -> Result<Tensor> {
    Ok(Tensor::full(v, (), x.device())?)
}

/// The activation of `x`.
pub fn forward(x: &Tensor, a: Act) -> Result<Tensor> {
    Ok(match a {
        Act::Clip { min, max } => x.clamp(min, max)?,
        Act::LeakyRelu(s) => leaky(x, &scalar(x, s)?)?,
        Act::Sigmoid => sigmoid(x)?,
        Act::Tanh => x.tanh()?,
        Act::Hardsigmoid { alpha, beta } => {
            x.affine(alpha as f64, beta as f64)?.clamp(0f32, 1f32)?
        }
        Act::Hardswish => (x * (x + 3.0)?.clamp(0f32, 6f32)?)?.affine(1.0 / 6.0, 0.0)?,
        Act::Silu => (x * sigmoid(x)?)?,
        Act::Gelu => (x * (erf(&x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?)? + 1.0)?)?
            .affine(0.5, 0.0)?,
    })
}

/// The derivative of the activation at `x`.
fn derivative(x: &Tensor, a: Act) -> Result<Tensor> {
    let ones = || x.ones_like();
    Ok(match a {
        Act::Clip { min, max } => (x.gt(min)? * x.lt(max)?)?.to_dtype(DType::F32)?,
        Act::LeakyRelu(s) => select(&x.gt(0f32)?, &ones()?, &ones()?.affine(s as f64, 0.0)?)?,
        Act::Sigmoid => {
            let s = sigmoid(x)?;
            (&s * (1.0 - &s)?)?
        }
        Act::Tanh => (1.0 - x.tanh()?.sqr()?)?,
        Act::Hardsigmoid { alpha, beta } => {
            let v = x.affine(alpha as f64, beta as f64)?;
            (v.gt(0f32)? * v.lt(1f32)?)?
                .to_dtype(DType::F32)?
                .affine(alpha as f64, 0.0)?
        }
        Act::Hardswish => {
            let mid = x.affine(2.0 / 6.0, 3.0 / 6.0)?;
            let upper = select(&x.gt(3f32)?, &ones()?, &mid)?;
            select(&x.lt(-3f32)?, &x.zeros_like()?, &upper)?
        }
        Act::Silu => {
            let s = sigmoid(x)?;
            (&s * ((x * (1.0 - &s)?)? + 1.0)?)?
        }
        Act::Gelu => {
            let cdf =
                (erf(&x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?)? + 1.0)?.affine(0.5, 0.0)?;
            let pdf = x
                .sqr()?
                .affine(-0.5, 0.0)?
                .exp()?
                .affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
            (cdf + (x * pdf)?)?
        }
    })
}

/// The activation's backward for gradient rows `g` against its input `x` (image `img`'s, or
/// every row's), under `rule`: a rectifier follows the rule, a gate passes the gradient.
pub fn backward(g: &Tensor, x: &Tensor, img: Option<usize>, a: Act, rule: Rule) -> Result<Tensor> {
    let d = derivative(&pick(x, img)?, a)?;
    Ok(match (a.family(), rule) {
        (Family::Gate, _) | (Family::Rectifier, Rule::Gradient) => g.broadcast_mul(&d)?,
        (Family::Rectifier, Rule::Deconv) => g.relu()?,
        (Family::Rectifier, Rule::Guided) => g.relu()?.broadcast_mul(&d)?,
        (Family::Rectifier, Rule::GuidedNeg) => g.minimum(0f32)?.broadcast_mul(&d)?,
    })
}

/// PReLU slopes as a tensor broadcasting over inputs of rank `rank` (one per channel, or
/// one for all).
fn slopes(cache: &Cache, x: &Tensor, s: &[f32]) -> Result<Tensor> {
    let rank = x.rank();
    cache.get(
        Key::Slopes(s.iter().map(|v| v.to_bits()).collect(), rank),
        || {
            let mut dims = vec![1usize; rank];
            if rank > 1 {
                dims[1] = s.len();
            }
            crate::model::transfer::upload(s.to_vec(), dims, x.device())
        },
    )
}

pub fn prelu_forward(cache: &Cache, x: &Tensor, s: &[f32]) -> Result<Tensor> {
    leaky(x, &slopes(cache, x, s)?)
}

/// PReLU's backward: a leaky rectifier per channel.
pub fn prelu_backward(
    cache: &Cache,
    g: &Tensor,
    x: &Tensor,
    img: Option<usize>,
    s: &[f32],
    rule: Rule,
) -> Result<Tensor> {
    let x = pick(x, img)?;
    let d = select(
        &x.gt(0f32)?,
        &x.ones_like()?,
        &slopes(cache, &x, s)?
            .broadcast_as(x.shape())?
            .contiguous()?,
    )?;
    Ok(match rule {
        Rule::Gradient => g.broadcast_mul(&d)?,
        Rule::Deconv => g.relu()?,
        Rule::Guided => g.relu()?.broadcast_mul(&d)?,
        Rule::GuidedNeg => g.minimum(0f32)?.broadcast_mul(&d)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::act as host_act;
    use crate::model::tensorops::tests::host;
    use candle_core::Device;

    #[test]
    fn activations_and_rules_match_the_host_definitions() {
        let dev = Device::Cpu;
        let cache = Cache::default();
        let x = Tensor::randn(0f32, 3.0, (2, 3, 4, 4), &dev).unwrap();
        let g = Tensor::randn(0f32, 1.0, (5, 3, 4, 4), &dev).unwrap();
        let (xv, gv) = (host(&x), host(&g));
        let x1 = &xv[48..];
        let close = |a: &[f32], b: &[f32], what: &str| {
            let d = a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(d < 1e-5, "{what}: {d}");
        };
        let acts = [
            Act::Clip { min: 0.0, max: 6.0 },
            Act::Clip {
                min: -1.0,
                max: 1.0,
            },
            Act::LeakyRelu(0.1),
            Act::Sigmoid,
            Act::Tanh,
            Act::Hardsigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Act::Hardswish,
            Act::Silu,
            Act::Gelu,
        ];
        for a in acts {
            close(
                &host(&forward(&x, a).unwrap()),
                &host_act::forward(&xv, a),
                a.name(),
            );
            for rule in Rule::ALL {
                let got = backward(&g, &x, Some(1), a, rule).unwrap();
                let mut want = gv.clone();
                host_act::backward(&mut want, x1, a, rule);
                close(&host(&got), &want, &format!("{} {rule:?}", a.name()));
            }
        }
        let y = x.relu().unwrap();
        for rule in Rule::ALL {
            let got = relu_rule(&g, &y, Some(1), rule).unwrap();
            let mut want = gv.clone();
            crate::model::kernels::relu_rule(&mut want, &host(&y)[48..], rule);
            close(&host(&got), &want, &format!("relu {rule:?}"));
        }
        let s = [0.1f32, 0.2, 0.3];
        close(
            &host(&prelu_forward(&cache, &x, &s).unwrap()),
            &host_act::prelu_forward(&xv, &s, 16),
            "prelu",
        );
        for rule in Rule::ALL {
            let got = prelu_backward(&cache, &g, &x, Some(1), &s, rule).unwrap();
            let mut want = gv.clone();
            host_act::prelu_backward(&mut want, x1, &s, 16, rule);
            close(&host(&got), &want, &format!("prelu {rule:?}"));
        }
    }
}
