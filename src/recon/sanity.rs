//! The sanity check of a reconstruction (reference section 9; Adebayo et al. 2018,
//! cascading model randomization): the weights are re-drawn from the top of the net down,
//! one more layer at each step, and the same path's reconstruction is compared with the
//! trained net's. A picture that barely changes shows the image more than the network.

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::display::{self, Display};
use super::similarity::{magnitude, spearman, ssim};
use super::{reconstruct, resolve_path, Options, Path};
use crate::error::{Error, Result};
use crate::model::net::host_vec;
use crate::model::Model;

/// One step of the cascade: every layer with weights from the top of the net's part under
/// the path's root down to `down_to` is random.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// The lowest layer randomized at this step.
    pub down_to: String,
    /// How many layers are random.
    pub layers: usize,
    /// Spearman rank correlation of per-pixel `sum_c |gradient|` with the trained net's
    /// (NaN, `null` in JSON, when either picture is constant; the note says so).
    pub spearman: f32,
    /// SSIM of the displayed image with the trained net's.
    pub ssim: f32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    #[serde(skip)]
    pub grad: Option<Tensor>,
}

/// A whole cascade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sanity {
    pub path: Path,
    pub rule: super::Rule,
    pub mult: super::MultMode,
    pub display: Display,
    pub seed: u64,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub trained: Option<Tensor>,
}

impl Sanity {
    /// The trained reconstruction and every step's, as displayed.
    pub fn images(&self, model: &Model) -> Result<Vec<RgbImage>> {
        std::iter::once(&self.trained)
            .chain(self.steps.iter().map(|s| &s.grad))
            .map(|g| {
                let g = g
                    .as_ref()
                    .ok_or_else(|| Error::internal("a sanity step without its gradient"))?;
                display::render(model, g, self.display)
            })
            .collect()
    }
}

impl Sanity {
    /// The strip of the trained reconstruction and every step's, each captioned with the
    /// layer randomized down to and the two similarities.
    pub fn strip(&self, model: &Model) -> Result<RgbImage> {
        let captions = std::iter::once("trained".to_string()).chain(
            self.steps
                .iter()
                .map(|s| format!("to {} rho {:.2} ssim {:.2}", s.down_to, s.spearman, s.ssim)),
        );
        Ok(display::strip(
            &self
                .images(model)?
                .into_iter()
                .zip(captions)
                .collect::<Vec<_>>(),
        ))
    }

    /// The numbers alone (the gradients dropped).
    pub fn numbers(mut self) -> Sanity {
        self.trained = None;
        for s in &mut self.steps {
            s.grad = None;
        }
        self
    }
}

/// The layers a path's reconstruction depends on that hold weights, top first: those of
/// the net up to the root blob.
pub fn cascade_layers(model: &Model, path: &Path) -> Result<Vec<usize>> {
    let net = &model.net;
    let nodes = resolve_path(net, path)?;
    let root = &net.blobs[nodes[0].0];
    let mut layers: Vec<usize> = net
        .parametric()
        .into_iter()
        .filter(|&i| i <= root.layer)
        .collect();
    layers.reverse();
    if layers.is_empty() {
        return Err(Error::path(
            path,
            format!(
                "no layer with weights up to `{}`: there is nothing to randomize",
                root.name
            ),
        ));
    }
    Ok(layers)
}

/// Runs the cascade for `path` on `input` (`[1, 3, H, W]`); `progress(done, total)` is
/// called after every step and stops the cascade when it returns false (the steps so far
/// are returned).
pub fn sanity(
    model: &Model,
    input: &Tensor,
    opts: &Options,
    path: &Path,
    mode: Display,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Sanity> {
    let layers = cascade_layers(model, path)?;
    let net = &model.net;
    let root_layer = net.blobs[resolve_path(net, path)?[0].0].layer;
    let one = |m: &Model| -> Result<(Tensor, Option<String>)> {
        let state = m.net.forward_until(input, root_layer)?;
        let r = reconstruct(m, &state, 0, opts, std::slice::from_ref(path))?.remove(0);
        Ok((r.grad, r.note))
    };
    let (trained, _) = one(model)?;
    let base_mag = magnitude(&host_vec(&trained)?);
    let base_img = display::render(model, &trained, mode)?;
    let mut steps = Vec::with_capacity(layers.len());
    for n in 1..=layers.len() {
        let random = Model {
            net: net.randomized(&layers[..n], seed)?,
            labels: model.labels.clone(),
            mean_image: model.mean_image.clone(),
            weights_origin: format!("{} (randomized)", model.weights_origin),
        };
        let (grad, note) = one(&random)?;
        let img = display::render(model, &grad, mode)?;
        let rho = spearman(&base_mag, &magnitude(&host_vec(&grad)?));
        // a constant picture (all zero: the random seed unit is dead) has no ranks
        let note = note.or_else(|| {
            rho.is_nan()
                .then(|| "a constant reconstruction: no rank correlation".to_string())
        });
        steps.push(Step {
            down_to: net.spec.layers[layers[n - 1]].name.clone(),
            layers: n,
            spearman: rho,
            ssim: ssim(&base_img, &img),
            note,
            grad: Some(grad),
        });
        if !progress(n, layers.len()) {
            break;
        }
    }
    Ok(Sanity {
        path: path.clone(),
        rule: opts.rule,
        mult: opts.mult,
        display: mode,
        seed,
        steps,
        trained: Some(trained),
    })
}
