//! Elementwise binary layers with broadcasting: `add`, `sub`, `mul`, `div` of two
//! activations or of an activation and a constant tensor (reference section 8: each side
//! gets its true gradient, the product rule for `mul` and `div`, summed over the axes it was
//! broadcast along; no backward rule applies, as for the other linear ops).

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::shape::Shape;
use crate::model::spec::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn name(&self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
        }
    }

    /// Whether the backward needs the operands' values (the product rule).
    pub fn needs_operands(&self) -> bool {
        matches!(self, BinOp::Mul | BinOp::Div)
    }
}

/// A binary layer: its op, and the constant operand (`[1, ..]`, broadcastable to the
/// input) with the side it is on, when the layer takes one activation.
#[derive(Clone)]
pub struct Binary {
    pub op: BinOp,
    pub constant: Option<(Tensor, Side)>,
}

/// Per-axis dimensions of a shape (`[c, h, w]` or `[n]`).
fn dims_of(s: Shape) -> Vec<usize> {
    match s {
        Shape::Spatial { c, h, w } => vec![c, h, w],
        Shape::Flat(n) => vec![n],
    }
}

/// The shape two operands broadcast to (NumPy's rule on each axis: equal, or one of them
/// 1); `None` when they do not.
pub fn broadcast(a: Shape, b: Shape) -> Option<Shape> {
    let (da, db) = (dims_of(a), dims_of(b));
    if da.len() != db.len() {
        return None;
    }
    let d: Option<Vec<usize>> = da
        .iter()
        .zip(&db)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, _) => Some(y),
            (_, 1) => Some(x),
            _ => None,
        })
        .collect();
    Some(match (a, d?.as_slice()) {
        (Shape::Spatial { .. }, [c, h, w]) => Shape::Spatial {
            c: *c,
            h: *h,
            w: *w,
        },
        (_, [n]) => Shape::Flat(*n),
        _ => return None,
    })
}

/// A constant's dims (`[c, h, w]`, `[n]`, or fewer, right-aligned as NumPy does) as a
/// `[1, ..]` shape of the input's rank that broadcasts into `input`; an error naming both
/// otherwise.
pub fn constant_dims(dims: &[usize], input: Shape) -> std::result::Result<Vec<usize>, String> {
    let want = dims_of(input);
    if dims.len() > want.len() {
        return Err(format!(
            "a constant of shape {dims:?} does not broadcast to the input {input}"
        ));
    }
    let mut full = vec![1; want.len() - dims.len()];
    full.extend_from_slice(dims);
    if full.iter().zip(&want).any(|(&c, &x)| c != 1 && c != x) {
        return Err(format!(
            "a constant of shape {dims:?} does not broadcast to the input {input} (each axis must match or be 1)"
        ));
    }
    full.insert(0, 1);
    Ok(full)
}

fn apply(op: BinOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(match op {
        BinOp::Add => a.broadcast_add(b)?,
        BinOp::Sub => a.broadcast_sub(b)?,
        BinOp::Mul => a.broadcast_mul(b)?,
        BinOp::Div => a.broadcast_div(b)?,
    })
}

/// Sums `g` (`[rows, ..]`) over the axes (after the first) where `target` (`[1 or rows,
/// ..]`) is 1, so it takes the operand's shape with one row per gradient row.
fn reduce_to(g: Tensor, target: &[usize]) -> Result<Tensor> {
    let mut g = g;
    for (axis, &t) in target.iter().enumerate().skip(1) {
        if t == 1 && g.dims()[axis] != 1 {
            g = g.sum_keepdim(axis)?;
        }
    }
    Ok(g)
}

impl Binary {
    /// The operands `(a, b)` in order, from the layer's tensor inputs `xs`.
    fn operands<'a>(&'a self, xs: &[&'a Tensor]) -> Result<(&'a Tensor, &'a Tensor)> {
        match (&self.constant, xs) {
            (Some((c, Side::Left)), [x]) => Ok((c, x)),
            (Some((c, Side::Right)), [x]) => Ok((x, c)),
            (None, [a, b]) => Ok((a, b)),
            _ => Err(Error::Shape(format!(
                "{} takes two operands, given {} input(s){}",
                self.op.name(),
                xs.len(),
                if self.constant.is_some() {
                    " and a constant"
                } else {
                    ""
                }
            ))),
        }
    }

    pub fn forward(&self, xs: &[&Tensor]) -> Result<Tensor> {
        let (a, b) = self.operands(xs)?;
        apply(self.op, a, b)
    }

    /// The gradient for each tensor input of gradient rows `g`. `dims` are the tensor
    /// inputs' shapes (`[1, ..]`); `xs` their forward values (one image's `[1, ..]` shared by
    /// every row, or every row's own), needed by `mul` and `div` only (empty for the others).
    pub fn backward(&self, g: &Tensor, xs: &[&Tensor], dims: &[Vec<usize>]) -> Result<Vec<Tensor>> {
        let product = || -> Result<(&Tensor, &Tensor)> { self.operands(xs) };
        let ga = || -> Result<Tensor> {
            Ok(match self.op {
                BinOp::Add | BinOp::Sub => g.clone(),
                BinOp::Mul => g.broadcast_mul(product()?.1)?,
                BinOp::Div => g.broadcast_div(product()?.1)?,
            })
        };
        let gb = || -> Result<Tensor> {
            Ok(match self.op {
                BinOp::Add => g.clone(),
                BinOp::Sub => g.neg()?,
                BinOp::Mul => g.broadcast_mul(product()?.0)?,
                // d(a / b)/db = -a / b^2
                BinOp::Div => {
                    let (a, b) = product()?;
                    g.broadcast_mul(&a.broadcast_div(&b.sqr()?)?.neg()?)?
                }
            })
        };
        let want = match &self.constant {
            Some(_) => 1,
            None => 2,
        };
        if dims.len() != want {
            return Err(Error::Shape(format!(
                "{} backward for {} input shape(s), expected {want}",
                self.op.name(),
                dims.len()
            )));
        }
        Ok(match &self.constant {
            Some((_, Side::Left)) => vec![reduce_to(gb()?, &dims[0])?],
            Some((_, Side::Right)) => vec![reduce_to(ga()?, &dims[0])?],
            None => vec![reduce_to(ga()?, &dims[0])?, reduce_to(gb()?, &dims[1])?],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn shapes_broadcast_as_numpy() {
        let s = |c, h, w| Shape::Spatial { c, h, w };
        assert_eq!(broadcast(s(8, 5, 5), s(8, 1, 1)), Some(s(8, 5, 5)));
        assert_eq!(broadcast(s(1, 5, 1), s(8, 1, 4)), Some(s(8, 5, 4)));
        assert_eq!(broadcast(s(8, 5, 5), s(4, 5, 5)), None);
        assert_eq!(
            broadcast(Shape::Flat(7), Shape::Flat(1)),
            Some(Shape::Flat(7))
        );
        assert_eq!(broadcast(Shape::Flat(7), s(7, 1, 1)), None);
        assert_eq!(constant_dims(&[3, 1, 1], s(3, 9, 9)).unwrap(), [1, 3, 1, 1]);
        assert_eq!(constant_dims(&[], s(3, 9, 9)).unwrap(), [1, 1, 1, 1]);
        assert_eq!(constant_dims(&[9], s(3, 9, 9)).unwrap(), [1, 1, 1, 9]);
        assert!(constant_dims(&[4, 1, 1], s(3, 9, 9)).is_err());
        assert!(constant_dims(&[1, 1, 3, 1, 1], s(3, 9, 9)).is_err());
    }

    /// Each op's gradients against central differences of `sum(w * f(a, b))`, with `b`
    /// broadcast along the plane (a squeeze-and-excitation gate's shape).
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (2, 3, 2, 2), &dev).unwrap();
        let b = Tensor::rand(0.5f32, 1.5, (2, 3, 1, 1), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (2, 3, 2, 2), &dev).unwrap();
        let loss = |op: BinOp, a: &Tensor, b: &Tensor| -> f64 {
            let y = apply(op, a, b).unwrap();
            (y * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div] {
            let layer = Binary { op, constant: None };
            let grads = layer
                .backward(&w, &[&a, &b], &[a.dims().to_vec(), b.dims().to_vec()])
                .unwrap();
            for (k, (x, gx)) in [(&a, &grads[0]), (&b, &grads[1])].into_iter().enumerate() {
                assert_eq!(gx.dims(), x.dims(), "{op:?} input {k}");
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let gv = gx.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for i in 0..xv.len() {
                    let eps = 1e-2f32;
                    let at = |d: f32| {
                        let mut v = xv.clone();
                        v[i] += d;
                        Tensor::from_vec(v, x.dims(), &dev).unwrap()
                    };
                    let (p, m) = if k == 0 {
                        (loss(op, &at(eps), &b), loss(op, &at(-eps), &b))
                    } else {
                        (loss(op, &a, &at(eps)), loss(op, &a, &at(-eps)))
                    };
                    let num = ((p - m) / (2.0 * eps as f64)) as f32;
                    assert!(
                        (num - gv[i]).abs() < 2e-2 * (1.0 + num.abs()),
                        "{op:?} input {k} [{i}]: numeric {num}, analytic {}",
                        gv[i]
                    );
                }
            }
        }
    }

    #[test]
    fn a_constant_on_either_side_gets_no_gradient() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[2f32, 4.0]], &dev).unwrap();
        let c = Tensor::new(&[[8f32, 8.0]], &dev).unwrap();
        let g = Tensor::new(&[[1f32, 1.0]], &dev).unwrap();
        // c / x: d/dx = -c / x^2
        let left = Binary {
            op: BinOp::Div,
            constant: Some((c.clone(), Side::Left)),
        };
        assert_eq!(
            left.forward(&[&x]).unwrap().to_vec2::<f32>().unwrap(),
            [[4.0, 2.0]]
        );
        let d = left.backward(&g, &[&x], &[vec![1, 2]]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_vec2::<f32>().unwrap(), [[-2.0, -0.5]]);
        // x - c: d/dx = 1
        let right = Binary {
            op: BinOp::Sub,
            constant: Some((c, Side::Right)),
        };
        let d = right.backward(&g, &[], &[vec![1, 2]]).unwrap();
        assert_eq!(d[0].to_vec2::<f32>().unwrap(), [[1.0, 1.0]]);
    }
}
