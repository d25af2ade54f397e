//! The tensor-op backend: every op of the graph made of candle tensor operations that exist
//! on CUDA and Metal (matmul, index_select, scatter_add, index_add, where_cond,
//! comparisons, reductions, broadcasting arithmetic) and nothing else, so that a pass stays
//! on its device from the input to the captured gradients. On the CPU it runs as
//! `--device cpu-generic`, which is how the golden suite proves this code right without a
//! GPU. Its forward state (max-pool switches, LRN scales) is kept as device tensors; its
//! constants (window tables, transformed weights) are built once per net ([`Cache`]).
//!
//! Window ops (pooling, and convolutions candle's conv2d cannot take) run on *tap tables*:
//! for each output cell the input cell under each kernel tap, with `h * w` (one past the
//! plane) for a tap outside the input, which reads a sentinel column appended to the plane.
//! A gather (`index_select`) then unfolds the windows, and the adjoint of that gather
//! (`index_add`, or `scatter_add` for per-plane switches) is every window op's backward.

pub mod act;
pub mod conv;
pub mod lrn;
pub mod pool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Constants of the tensor-op backend, built on first use and shared by every clone of a
/// net (keys name what a constant depends on, so a clone with other weights gets its own).
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<HashMap<Key, Tensor>>>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A tap table ([`Taps`]) in one layout.
    Taps(Taps, TapOrder),
    /// Per output cell `1 / divisor` of an average pooling.
    AvgScale(Taps, Option<crate::model::spec::PoolSpec>),
    /// `k - j` for `j < k` (first-argmax by a max reduction).
    Reverse(usize),
    /// `o * k` for `o < n`.
    Strides(usize, usize),
    /// PReLU slopes (their bits) for inputs of rank `rank`.
    Slopes(Vec<u32>, usize),
}

impl Cache {
    /// The constant under `key`, made by `make` the first time.
    pub(crate) fn get(&self, key: Key, make: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| Error::internal("the tensor-op cache lock was poisoned"))?;
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
        let t = make()?;
        map.insert(key, t.clone());
        Ok(t)
    }

    /// `k - j` for `j` in `0..k`, as `f32`.
    fn reverse(&self, device: &Device, k: usize) -> Result<Tensor> {
        self.get(Key::Reverse(k), || {
            let v: Vec<f32> = (0..k).map(|j| (k - j) as f32).collect();
            crate::model::transfer::upload(v, k, device)
        })
    }

    /// `o * k` for `o` in `0..n`, as `f32` (exact below 2^24).
    fn strides(&self, device: &Device, n: usize, k: usize) -> Result<Tensor> {
        self.get(Key::Strides(n, k), || {
            let v: Vec<f32> = (0..n).map(|o| (o * k) as f32).collect();
            crate::model::transfer::upload(v, n, device)
        })
    }
}

/// How windows sweep a plane: per axis (`[rows, cols]`) the kernel, stride, padding before
/// the first cell and dilation; or PyTorch's adaptive bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Sweep {
    Strided {
        k: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dil: [usize; 2],
    },
    Adaptive,
}

/// The windows of one sweep over an `h x w` plane giving `oh x ow` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Taps {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub sweep: Sweep,
}

/// The order of a tap table: output-major `[ohw, k]` (a window's taps side by side, for
/// pooling reductions) or tap-major `[k, ohw]` (convolution columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TapOrder {
    OutputMajor,
    TapMajor,
}

impl Taps {
    /// Taps per window (the largest bin for adaptive sweeps).
    pub fn k(&self) -> usize {
        match self.sweep {
            Sweep::Strided { k, .. } => k[0] * k[1],
            Sweep::Adaptive => {
                let most = |o: usize, n: usize| {
                    (0..o)
                        .map(|i| crate::model::kernels::adaptive_bin(i, o, n).2)
                        .max()
                        .unwrap_or(0)
                };
                most(self.oh, self.h) * most(self.ow, self.w)
            }
        }
    }

    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// The input cells (or `h * w`, outside) along one axis of output `o`, tap by tap.
    fn axis(&self, axis: usize, o: usize) -> Vec<Option<usize>> {
        let (size, out) = if axis == 0 {
            (self.h, self.oh)
        } else {
            (self.w, self.ow)
        };
        match self.sweep {
            Sweep::Strided {
                k,
                stride,
                pad,
                dil,
            } => (0..k[axis])
                .map(|t| {
                    let at = (o * stride[axis] + t * dil[axis]) as isize - pad[axis] as isize;
                    (at >= 0 && (at as usize) < size).then_some(at as usize)
                })
                .collect(),
            Sweep::Adaptive => {
                let (s, e, _) = crate::model::kernels::adaptive_bin(o, out, size);
                let most = (0..out)
                    .map(|i| crate::model::kernels::adaptive_bin(i, out, size).2)
                    .max()
                    .unwrap_or(0);
                (0..most).map(|t| (s + t < e).then_some(s + t)).collect()
            }
        }
    }

    /// The table in host memory.
    fn table(&self, order: TapOrder) -> Vec<u32> {
        let (k, ohw, outside) = (self.k(), self.ohw(), (self.h * self.w) as u32);
        let mut v = vec![outside; k * ohw];
        for oy in 0..self.oh {
            let rows = self.axis(0, oy);
            for ox in 0..self.ow {
                let cols = self.axis(1, ox);
                let o = oy * self.ow + ox;
                for (ty, r) in rows.iter().enumerate() {
                    for (tx, c) in cols.iter().enumerate() {
                        let t = ty * cols.len() + tx;
                        if let (Some(r), Some(c)) = (r, c) {
                            let at = match order {
                                TapOrder::OutputMajor => o * k + t,
                                TapOrder::TapMajor => t * ohw + o,
                            };
                            v[at] = (r * self.w + c) as u32;
                        }
                    }
                }
            }
        }
        v
    }

    /// The table as a `u32` tensor on `device`, cached.
    pub fn tensor(&self, cache: &Cache, device: &Device, order: TapOrder) -> Result<Tensor> {
        cache.get(Key::Taps(*self, order), || {
            let v = self.table(order);
            let n = v.len();
            crate::model::transfer::upload(v, n, device)
        })
    }
}

/// `x` (`[rows, ..., plane]` flattened to `[lead, plane]`) with one column of `fill`
/// appended: the cell an outside tap reads.
fn with_sentinel(x: &Tensor, lead: usize, plane: usize, fill: f32) -> Result<Tensor> {
    let x = x.reshape((lead, plane))?;
    let s = Tensor::full(fill, (lead, 1), x.device())?;
    Ok(Tensor::cat(&[&x, &s], 1)?)
}

/// Per output cell of `x` (`[lead, n, k]`), the index of the first maximum along the last
/// axis (row-major window order on ties, as the CPU kernels, PyTorch and Caffe), and the
/// maxima `[lead, n]`. Made of a max, an equality and a second max, so that it does not
/// depend on how a device's argmax breaks ties.
fn first_argmax(cache: &Cache, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, _, k) = x.dims3()?;
    let m = x.max_keepdim(2)?;
    let hit = x.broadcast_eq(&m)?.to_dtype(DType::F32)?;
    let rev = cache.reverse(x.device(), k)?;
    // the largest `k - j` among the maxima is the first one; a window of NaNs has none
    let first = hit
        .broadcast_mul(&rev)?
        .max(2)?
        .affine(-1.0, k as f64)?
        .clamp(0f32, (k - 1) as f32)?;
    Ok((first, m.squeeze(2)?))
}

/// The rows of a forward-state tensor a backward pass reads: image `img`'s (one row,
/// broadcast over every gradient row) or every image's.
pub(crate) fn pick(t: &Tensor, img: Option<usize>) -> Result<Tensor> {
    Ok(match img {
        Some(k) => t.narrow(0, k, 1)?,
        None => t.clone(),
    })
}

/// The position and value of the first maximum of `x` (flattened), both as one-element
/// device tensors (`u32` and `f32`): a seed found without reading the activations back.
pub fn first_max(cache: &Cache, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = x.elem_count();
    let (first, m) = first_argmax(cache, &x.reshape((1, 1, n))?)?;
    Ok((first.to_dtype(DType::U32)?.reshape(1)?, m.reshape(1)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn tap_tables_mark_outside_taps_and_sweep_bins() {
        // 3x3 kernel, stride 2, pad 1 over 4x4: output 2x2
        let t = Taps {
            h: 4,
            w: 4,
            oh: 2,
            ow: 2,
            sweep: Sweep::Strided {
                k: [3, 3],
                stride: [2, 2],
                pad: [1, 1],
                dil: [1, 1],
            },
        };
        let v = t.table(TapOrder::OutputMajor);
        assert_eq!(&v[..9], &[16, 16, 16, 16, 0, 1, 16, 4, 5]);
        let tm = t.table(TapOrder::TapMajor);
        assert_eq!(tm[4 * 4], 0, "tap 4 of output 0 is cell 0");
        // adaptive 5 -> 3: bins [0,2) [1,4) [3,5), padded to 3 taps
        let a = Taps {
            h: 1,
            w: 5,
            oh: 1,
            ow: 3,
            sweep: Sweep::Adaptive,
        };
        assert_eq!(a.k(), 3);
        assert_eq!(a.table(TapOrder::OutputMajor), [0, 1, 5, 1, 2, 3, 3, 4, 5]);
    }

    #[test]
    fn first_argmax_takes_the_first_of_ties() {
        let cache = Cache::default();
        let x = Tensor::new(&[[[1f32, 3.0, 3.0], [2.0, 0.0, 2.0]]], &Device::Cpu).unwrap();
        let (first, m) = first_argmax(&cache, &x).unwrap();
        assert_eq!(host(&first), [1.0, 0.0]);
        assert_eq!(host(&m), [3.0, 2.0]);
        let (i, v) = first_max(
            &cache,
            &Tensor::new(&[0f32, 5.0, 1.0, 5.0], &Device::Cpu).unwrap(),
        )
        .unwrap();
        assert_eq!(i.to_vec1::<u32>().unwrap(), [1]);
        assert_eq!(host(&v), [5.0]);
    }
}

/// Both backends, layer by layer, on nets of every family (chains with LRN and ceil pooling,
/// residual, concatenating, depthwise): every kept forward tensor, and every layer's
/// backward under every rule for rows sharing one image's state.
#[cfg(test)]
mod backends_agree {
    use candle_core::{Device, Tensor};

    use crate::model::rule::Rule;
    use crate::model::{weights, ForwardState, Kept, LoadedSpec, Model, Placement};

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn rel(a: &Tensor, b: &Tensor) -> f32 {
        let (a, b) = (host(a), host(b));
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    fn check(spec: &str, size: usize) {
        let loaded = LoadedSpec::resolve(spec).unwrap();
        let w = weights::random_weights(&loaded.spec, 3).unwrap();
        let cpu = Model::from_parts(
            loaded.clone(),
            w.clone(),
            "r".into(),
            None,
            Placement::cpu(),
        )
        .unwrap();
        let gen = Model::from_parts(loaded, w, "r".into(), None, Placement::cpu_generic()).unwrap();
        let (cpu, gen) = if cpu.spec().input.size[0] == size {
            (cpu.net, gen.net)
        } else {
            (
                cpu.net.resized(size, size).unwrap(),
                gen.net.resized(size, size).unwrap(),
            )
        };
        let x = Tensor::rand(0f32, 1.0, (2, 3, size, size), &Device::Cpu).unwrap();
        let (sc, sg) = (cpu.forward(&x).unwrap(), gen.forward(&x).unwrap());
        for (i, (a, b)) in sc.outputs.iter().zip(&sg.outputs).enumerate() {
            if a.elem_count() > 0 && b.elem_count() > 0 {
                let e = rel(b, a);
                assert!(
                    e < 1e-4,
                    "{spec}: forward of `{}` differs by {e}",
                    cpu.spec.layers[i].name
                );
            }
        }
        // the backward on one forward state: switches of near-ties may differ by round-off
        let sg = ForwardState {
            switches: sc
                .switches
                .iter()
                .zip(&cpu.shapes)
                .map(|(k, s)| {
                    k.as_ref().map(|k| {
                        let v = k.to_host().unwrap();
                        Kept::Tensor(
                            Tensor::from_vec(v, (2, s.channels(), s.plane()), &Device::Cpu)
                                .unwrap(),
                        )
                    })
                })
                .collect(),
            lrn_scale: sc
                .lrn_scale
                .iter()
                .zip(&cpu.shapes)
                .map(|(k, s)| {
                    k.as_ref().map(|k| {
                        Kept::Tensor(
                            Tensor::from_vec(k.to_host().unwrap(), s.dims(2), &Device::Cpu)
                                .unwrap(),
                        )
                    })
                })
                .collect(),
            outputs: sc.outputs.clone(),
            input: sc.input.clone(),
            dropout: vec![],
            batch: sc.batch,
            backward_ready: true,
        };
        for i in 0..cpu.layers.len() {
            if matches!(cpu.layers[i], crate::model::net::Layer::Softmax) {
                continue;
            }
            let dims = cpu.shapes[i].dims(3);
            let g = Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap();
            for rule in Rule::ALL {
                let a = cpu.backward_node(i, &sc, Some(1), &g, rule);
                let b = gen.backward_node(i, &sg, Some(1), &g, rule);
                let (a, b) = match (a, b) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => panic!(
                        "{spec}: `{}` {rule:?}: {:?} / {:?}",
                        cpu.spec.layers[i].name,
                        a.err(),
                        b.err()
                    ),
                };
                for (a, b) in a.iter().zip(&b) {
                    let e = rel(b, a);
                    assert!(
                        e < 1e-4,
                        "{spec}: backward of `{}` ({rule:?}) differs by {e}",
                        cpu.spec.layers[i].name
                    );
                }
            }
        }
    }

    #[test]
    fn on_chains_residual_and_branching_nets() {
        for (spec, size) in [
            ("demo", 0),
            ("demo-resnet", 0),
            ("resnet18", 64),
            ("googlenet", 64),
            ("mobilenet_v2", 64),
            ("densenet121", 64),
            ("caffenet", 0),
            ("squeezenet1_1", 64),
        ] {
            let size = if size == 0 {
                LoadedSpec::resolve(spec).unwrap().spec.input.size[0]
            } else {
                size
            };
            check(spec, size);
        }
    }
}
