//! A computed tree ([`crate::recon::tree::TreeNode`]) of one image as a [`Page`]: what
//! `treevis tree --out` and the terminal app's export both write as `index.html`.

use std::io::Cursor;

use candle_core::Tensor;
use image::RgbImage;

use super::{Page, PageNode};
use crate::error::{Error, Result};
use crate::model::{ForwardState, Model};
use crate::recon::display::{self, Display};
use crate::recon::tree::TreeNode;
use crate::recon::{labels, Options};

/// PNG bytes of an image.
pub fn png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::internal(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// What a page says about the run besides the tree.
pub struct Run<'a> {
    pub model: &'a Model,
    /// The image's file name, as shown.
    pub image: String,
    /// The preprocessed input `[3, H, W]`.
    pub input: &'a Tensor,
    pub state: &'a ForwardState,
    pub opts: Options,
    pub display: Display,
}

fn node(run: &Run, n: &TreeNode) -> Result<PageNode> {
    let last = n.path.last();
    Ok(PageNode {
        path: n.path.to_string(),
        blob: last.blob.clone(),
        channel: last.channel,
        weight: n.child.as_ref().map(|c| c.value),
        share: n.child.as_ref().map(|c| c.share),
        png: png(&display::render(run.model, &n.grad, run.display)?)?,
        note: n.note.clone(),
        via: n
            .child
            .iter()
            .flat_map(|c| {
                c.via.iter().map(|e| {
                    let skip = if e.skip { " (skip)" } else { "" };
                    (format!("{}{skip}", e.edge), e.value)
                })
            })
            .collect(),
        children: n
            .children
            .iter()
            .map(|c| node(run, c))
            .collect::<Result<_>>()?,
    })
}

/// The page of `root`'s tree.
pub fn page(run: &Run, root: &TreeNode) -> Result<Page> {
    let m = run.model;
    Ok(Page {
        title: format!("treevis: {} on {}", root.path, run.image),
        model: format!("{} ({})", m.spec().name, m.weights_origin),
        method: run.opts.rule.name().into(),
        mult: run.opts.mult.name().into(),
        display: run.display.name().into(),
        image: run.image.clone(),
        input_png: png(&display::render_input(m, run.input)?)?,
        labels: labels(m, run.state, 0, 5)?
            .into_iter()
            .map(|l| (l.name, l.prob))
            .collect(),
        root: node(run, root)?,
    })
}
