//! Elementwise activations other than ReLU, and how each backward rule treats them
//! (reference section 8): rectifiers get the rule, gates and squashers keep their true
//! gradient under every rule.

use rayon::prelude::*;

use crate::model::rule::Rule;

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// `min(max(x, min), max)`; a rectifier when `min == 0` (ReLU6), else a squasher.
    Clip {
        min: f32,
        max: f32,
    },
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Hardsigmoid {
        alpha: f32,
        beta: f32,
    },
    Hardswish,
    Silu,
    Gelu,
}

/// Which row of the reference's activation table an activation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ReLU, ReLU6 and the smooth rectifiers: the rule decides.
    Rectifier,
    /// Gates and squashers: the true gradient under every rule.
    Gate,
}

impl Act {
    pub fn name(&self) -> &'static str {
        match self {
            Act::Clip { .. } => "clip",
            Act::LeakyRelu(_) => "leaky_relu",
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
            Act::Hardsigmoid { .. } => "hardsigmoid",
            Act::Hardswish => "hardswish",
            Act::Silu => "silu",
            Act::Gelu => "gelu",
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Act::Clip { min, .. } if *min == 0.0 => Family::Rectifier,
            Act::LeakyRelu(_) | Act::Hardswish | Act::Silu | Act::Gelu => Family::Rectifier,
            _ => Family::Gate,
        }
    }

    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Act::Clip { min, max } => x.max(min).min(max),
            Act::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::Sigmoid => sigmoid(x),
            Act::Tanh => x.tanh(),
            Act::Hardsigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Act::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Act::Silu => x * sigmoid(x),
            Act::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        }
    }

    /// The true derivative at `x` (PyTorch's convention at the kinks: the open interval).
    pub fn derivative(&self, x: f32) -> f32 {
        match *self {
            Act::Clip { min, max } => f32::from(x > min && x < max),
            Act::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Act::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Act::Tanh => 1.0 - x.tanh().powi(2),
            Act::Hardsigmoid { alpha, beta } => {
                let v = alpha * x + beta;
                if v > 0.0 && v < 1.0 {
                    alpha
                } else {
                    0.0
                }
            }
            Act::Hardswish => {
                if x < -3.0 {
                    0.0
                } else if x > 3.0 {
                    1.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }
            Act::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + erf(x / std::f32::consts::SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
                cdf + x * pdf
            }
        }
    }

    /// The gradient passed down for `g` arriving at an output whose input was `x`.
    pub fn backward(&self, g: f32, x: f32, rule: Rule) -> f32 {
        let d = self.derivative(x);
        match (self.family(), rule) {
            (Family::Gate, _) | (Family::Rectifier, Rule::Gradient) => g * d,
            (Family::Rectifier, Rule::Deconv) => g.max(0.0),
            (Family::Rectifier, Rule::Guided) => g.max(0.0) * d,
            (Family::Rectifier, Rule::GuidedNeg) => g.min(0.0) * d,
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The error function (Abramowitz-Stegun 7.1.26 is too coarse for a 1e-4 bar; this is the
/// float64 series / continued-fraction pair, rounded once).
pub fn erf(x: f32) -> f32 {
    erf64(x as f64) as f32
}

fn erf64(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), accurate for |x| >= 2.5
        let mut f = ax;
        let mut c = ax;
        let mut d = 0.0;
        for k in 1..60 {
            let a = k as f64 * 0.5;
            d = ax + a * d;
            d = if d == 0.0 { 1e-300 } else { 1.0 / d };
            c = ax + a / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt())
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// `act` over `x`, in parallel.
pub fn forward(x: &[f32], act: Act) -> Vec<f32> {
    let mut y = x.to_vec();
    y.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|v| *v = act.apply(*v)));
    y
}

/// The backward of `act` on gradient rows `g` against one image's input `x` (shared by
/// every row) or every row's own. In place.
pub fn backward(g: &mut [f32], x: &[f32], act: Act, rule: Rule) {
    crate::model::kernels::for_rows_of(g, x, |gv, xv| *gv = act.backward(*gv, xv, rule));
}

/// PReLU over `x` (`[.., c, plane]`): `x` where positive, else `slopes[c] * x` (one slope
/// for every channel when `slopes` has one).
pub fn prelu_forward(x: &[f32], slopes: &[f32], plane: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    y.par_chunks_mut(plane).enumerate().for_each(|(p, yp)| {
        let a = Act::LeakyRelu(slopes[p % slopes.len()]);
        yp.iter_mut().for_each(|v| *v = a.apply(*v));
    });
    y
}

/// The backward of [`prelu_forward`] under `rule` (the LeakyReLU row of section 8) on
/// gradient rows `g` against one image's input `x` (shared by every row) or every row's
/// own. In place.
pub fn prelu_backward(g: &mut [f32], x: &[f32], slopes: &[f32], plane: usize, rule: Rule) {
    g.par_chunks_mut(plane).enumerate().for_each(|(p, gp)| {
        let a = Act::LeakyRelu(slopes[p % slopes.len()]);
        let at = (p * plane) % x.len();
        for (gv, xv) in gp.iter_mut().zip(&x[at..at + plane]) {
            *gv = a.backward(*gv, *xv, rule);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f64, 0.0f64),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.5, -0.966_105_146_475_310_7),
        ] {
            assert!((erf64(x) - want).abs() < 1e-12, "erf({x}) = {}", erf64(x));
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let acts = [
            Act::Clip { min: 0.0, max: 6.0 },
            Act::LeakyRelu(0.1),
            Act::Sigmoid,
            Act::Tanh,
            Act::Hardsigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            Act::Hardswish,
            Act::Silu,
            Act::Gelu,
        ];
        for act in acts {
            for &x in &[-4.1f32, -2.0, -0.7, 0.3, 1.9, 5.2, 7.0] {
                let h = 1e-3f64;
                let f = |v: f64| act.apply(v as f32) as f64;
                let fd = (f(x as f64 + h) - f(x as f64 - h)) / (2.0 * h);
                let d = act.derivative(x) as f64;
                assert!((fd - d).abs() < 2e-3, "{} at {x}: {d} vs {fd}", act.name());
            }
        }
    }

    #[test]
    fn gates_keep_their_gradient_under_every_rule() {
        let s = Act::Sigmoid;
        for rule in Rule::ALL {
            assert_eq!(s.backward(-2.0, 0.5, rule), -2.0 * s.derivative(0.5));
        }
        let r6 = Act::Clip { min: 0.0, max: 6.0 };
        assert_eq!(r6.backward(-1.0, 3.0, Rule::Guided), 0.0);
        assert_eq!(r6.backward(-1.0, 3.0, Rule::GuidedNeg), -1.0);
        assert_eq!(r6.backward(2.0, 7.0, Rule::Deconv), 2.0);
        assert_eq!(r6.backward(2.0, 7.0, Rule::Gradient), 0.0);
    }
}
