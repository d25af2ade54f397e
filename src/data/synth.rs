//! The demo dataset: deterministic synthetic images of textures and shapes that a hierarchy
//! of features is needed to tell apart (stripes vs. waves vs. fur; a striped star vs.
//! stripes). Each image is a pure function of `(seed, index)`.

use image::{Rgb, RgbImage};

use crate::model::weights::SplitMix;

/// The classes, in label order (also `models/demo_labels.txt`).
pub const CLASSES: [&str; 11] = [
    "stripes",
    "checkerboard",
    "dots",
    "fur",
    "waves",
    "rings",
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
];

/// The seed of the held-out demo images (never used for training).
pub const HELD_OUT_SEED: u64 = 0x005E_ED0F_7E57;

/// Side of the generated images, in pixels.
pub const SIZE: u32 = 64;

type Color = [f32; 3];

struct Rng(SplitMix);

impl Rng {
    fn new(seed: u64, index: u64) -> Rng {
        let mut s = SplitMix::new(seed ^ index.wrapping_mul(0xA24BAED4963EE407));
        s.next_u64();
        Rng(s)
    }
    /// Uniform in `[0, 1)`.
    fn f(&mut self) -> f32 {
        (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
    fn color(&mut self) -> Color {
        [self.f(), self.f(), self.f()]
    }
    /// A colour that differs clearly from `other`.
    fn contrasting(&mut self, other: Color) -> Color {
        loop {
            let c = self.color();
            let d: f32 = c.iter().zip(&other).map(|(a, b)| (a - b).abs()).sum();
            if d > 0.6 {
                return c;
            }
        }
    }
    fn gauss(&mut self) -> f32 {
        // sum of uniforms: close enough to normal for pixel noise
        (0..4).map(|_| self.f()).sum::<f32>() - 2.0
    }
}

/// An image being painted, in float RGB.
struct Canvas {
    px: Vec<Color>,
    n: usize,
}

impl Canvas {
    fn new(bg: Color) -> Canvas {
        let n = SIZE as usize;
        Canvas {
            px: vec![bg; n * n],
            n,
        }
    }
    /// Blends `c` at every pixel with coverage `alpha(x, y)` (pixel centres, in pixels).
    fn paint(
        &mut self,
        mut alpha: impl FnMut(f32, f32) -> f32,
        mut c: impl FnMut(f32, f32) -> Color,
    ) {
        for y in 0..self.n {
            for x in 0..self.n {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let a = alpha(fx, fy).clamp(0.0, 1.0);
                if a > 0.0 {
                    let col = c(fx, fy);
                    let p = &mut self.px[y * self.n + x];
                    for k in 0..3 {
                        p[k] = p[k] * (1.0 - a) + col[k] * a;
                    }
                }
            }
        }
    }
    fn into_image(self, rng: &mut Rng, noise: f32) -> RgbImage {
        let n = self.n as u32;
        let mut img = RgbImage::new(n, n);
        for (i, p) in img.pixels_mut().enumerate() {
            let c = self.px[i];
            let mut out = [0u8; 3];
            for k in 0..3 {
                out[k] = ((c[k] + noise * rng.gauss()).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
            *p = Rgb(out);
        }
        img
    }
}

/// A periodic pattern filling the plane; `fill(x, y)` in `[0, 1]` (mix of two colours).
#[derive(Clone, Copy)]
enum Pattern {
    Stripes {
        angle: f32,
        period: f32,
        phase: f32,
    },
    Checker {
        angle: f32,
        cell: f32,
    },
    Dots {
        period: f32,
        radius: f32,
        angle: f32,
    },
    Waves {
        angle: f32,
        period: f32,
        amp: f32,
        wperiod: f32,
    },
    Rings {
        cx: f32,
        cy: f32,
        period: f32,
    },
}

fn soft(d: f32) -> f32 {
    // coverage of a pixel whose centre is `d` pixels inside an edge
    (d + 0.5).clamp(0.0, 1.0)
}

impl Pattern {
    fn value(&self, x: f32, y: f32) -> f32 {
        match *self {
            Pattern::Stripes {
                angle,
                period,
                phase,
            } => {
                let u = x * angle.cos() + y * angle.sin() + phase;
                let t = (u / period).rem_euclid(1.0);
                // distance (in px) to the nearest stripe edge, signed: inside the first half
                soft((0.25 - (t - 0.25).abs()) * period)
            }
            Pattern::Checker { angle, cell } => {
                let (c, s) = (angle.cos(), angle.sin());
                let (u, v) = (x * c + y * s, -x * s + y * c);
                let (iu, iv) = ((u / cell).floor() as i64, (v / cell).floor() as i64);
                let du = ((u / cell).rem_euclid(1.0) - 0.5).abs();
                let dv = ((v / cell).rem_euclid(1.0) - 0.5).abs();
                let edge = (0.5 - du.max(dv)) * cell;
                let on = (iu + iv).rem_euclid(2) == 0;
                if on {
                    soft(edge)
                } else {
                    1.0 - soft(edge)
                }
            }
            Pattern::Dots {
                period,
                radius,
                angle,
            } => {
                let (c, s) = (angle.cos(), angle.sin());
                let (u, v) = (x * c + y * s, -x * s + y * c);
                let du = ((u / period).rem_euclid(1.0) - 0.5) * period;
                let dv = ((v / period).rem_euclid(1.0) - 0.5) * period;
                soft(radius - (du * du + dv * dv).sqrt())
            }
            Pattern::Waves {
                angle,
                period,
                amp,
                wperiod,
            } => {
                let (c, s) = (angle.cos(), angle.sin());
                let (u, v) = (x * c + y * s, -x * s + y * c);
                let w = u + amp * (std::f32::consts::TAU * v / wperiod).sin();
                let t = (w / period).rem_euclid(1.0);
                soft((0.25 - (t - 0.25).abs()) * period)
            }
            Pattern::Rings { cx, cy, period } => {
                let r = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                let t = (r / period).rem_euclid(1.0);
                soft((0.25 - (t - 0.25).abs()) * period)
            }
        }
    }

    fn random(rng: &mut Rng, kind: usize) -> Pattern {
        let angle = rng.range(0.0, std::f32::consts::PI);
        let n = SIZE as f32;
        match kind {
            0 => Pattern::Stripes {
                angle,
                period: rng.range(5.0, 14.0),
                phase: rng.range(0.0, 20.0),
            },
            1 => Pattern::Checker {
                angle,
                cell: rng.range(4.0, 10.0),
            },
            2 => {
                let period = rng.range(6.0, 12.0);
                Pattern::Dots {
                    period,
                    radius: period * rng.range(0.2, 0.35),
                    angle,
                }
            }
            3 => Pattern::Waves {
                angle,
                period: rng.range(6.0, 12.0),
                amp: rng.range(2.5, 5.0),
                wperiod: rng.range(14.0, 26.0),
            },
            _ => Pattern::Rings {
                cx: rng.range(0.2 * n, 0.8 * n),
                cy: rng.range(0.2 * n, 0.8 * n),
                period: rng.range(6.0, 12.0),
            },
        }
    }
}

/// A fill for a shape: solid or a pattern in two colours.
fn fill(rng: &mut Rng, base: Color) -> impl FnMut(f32, f32) -> Color {
    let second = rng.contrasting(base);
    let pattern = match rng.below(3) {
        0 => None,
        1 => Some(Pattern::random(rng, 0)),
        _ => Some(Pattern::random(rng, 2)),
    };
    move |x, y| match pattern {
        None => base,
        Some(p) => mix(base, second, p.value(x, y)),
    }
}

fn mix(a: Color, b: Color, t: f32) -> Color {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Signed distance (positive inside) of a point to a convex or star polygon, approximated
/// by its even-odd inside test and the distance to the nearest edge.
fn polygon_sd(pts: &[(f32, f32)], x: f32, y: f32) -> f32 {
    let mut inside = false;
    let mut dmin = f32::MAX;
    for i in 0..pts.len() {
        let (ax, ay) = pts[i];
        let (bx, by) = pts[(i + 1) % pts.len()];
        if (ay > y) != (by > y) && x < (bx - ax) * (y - ay) / (by - ay) + ax {
            inside = !inside;
        }
        let (ex, ey) = (bx - ax, by - ay);
        let t = (((x - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
        let (px, py) = (ax + t * ex - x, ay + t * ey - y);
        dmin = dmin.min((px * px + py * py).sqrt());
    }
    if inside {
        dmin
    } else {
        -dmin
    }
}

/// The outline of a shape class centred at `(cx, cy)`, radius `r`, rotated by `rot`.
fn shape_outline(class: usize, cx: f32, cy: f32, r: f32, rot: f32) -> Vec<(f32, f32)> {
    let at = |a: f32, rr: f32| (cx + rr * (a + rot).cos(), cy + rr * (a + rot).sin());
    let tau = std::f32::consts::TAU;
    match CLASSES[class] {
        "square" => (0..4)
            .map(|i| at(tau * i as f32 / 4.0 + tau / 8.0, r))
            .collect(),
        "triangle" => (0..3)
            .map(|i| at(tau * i as f32 / 3.0 - tau / 4.0, r))
            .collect(),
        "star" => (0..10)
            .map(|i| {
                at(
                    tau * i as f32 / 10.0 - tau / 4.0,
                    if i % 2 == 0 { r } else { r * 0.42 },
                )
            })
            .collect(),
        "cross" => {
            let w = 0.34;
            let pts = [
                (w, 1.0),
                (w, w),
                (1.0, w),
                (1.0, -w),
                (w, -w),
                (w, -1.0),
                (-w, -1.0),
                (-w, -w),
                (-1.0, -w),
                (-1.0, w),
                (-w, w),
                (-w, 1.0),
            ];
            let (c, s) = (rot.cos(), rot.sin());
            pts.iter()
                .map(|(u, v)| (cx + r * (u * c - v * s), cy + r * (u * s + v * c)))
                .collect()
        }
        _ => unreachable!("not a polygon class"),
    }
}

/// Small distractors: short lines and blobs in random colours.
fn clutter(rng: &mut Rng, canvas: &mut Canvas, count: usize) {
    let n = SIZE as f32;
    for _ in 0..count {
        let col = rng.color();
        if rng.below(2) == 0 {
            let (x0, y0) = (rng.range(0.0, n), rng.range(0.0, n));
            let a = rng.range(0.0, std::f32::consts::TAU);
            let len = rng.range(4.0, 10.0);
            let (x1, y1) = (x0 + len * a.cos(), y0 + len * a.sin());
            canvas.paint(
                |x, y| soft(0.6 - seg_dist(x, y, x0, y0, x1, y1)),
                |_, _| col,
            );
        } else {
            let (cx, cy, r) = (rng.range(0.0, n), rng.range(0.0, n), rng.range(1.0, 2.5));
            canvas.paint(
                |x, y| soft(r - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()),
                |_, _| col,
            );
        }
    }
}

fn seg_dist(x: f32, y: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> f32 {
    let (ex, ey) = (x1 - x0, y1 - y0);
    let t = (((x - x0) * ex + (y - y0) * ey) / (ex * ex + ey * ey).max(1e-6)).clamp(0.0, 1.0);
    ((x0 + t * ex - x).powi(2) + (y0 + t * ey - y).powi(2)).sqrt()
}

/// Image `index` of the dataset with `seed`; its class is `index % CLASSES.len()`.
pub fn generate(seed: u64, index: u64) -> (RgbImage, usize) {
    let class = (index % CLASSES.len() as u64) as usize;
    (generate_class(seed, index, class), class)
}

/// An image of `class`, deterministic in `(seed, index)`.
pub fn generate_class(seed: u64, index: u64, class: usize) -> RgbImage {
    let mut rng = Rng::new(seed, index);
    let n = SIZE as f32;
    let name = CLASSES[class];
    let noise = rng.range(0.01, 0.06);
    match name {
        "stripes" | "checkerboard" | "dots" | "waves" | "rings" => {
            let kind = match name {
                "stripes" => 0,
                "checkerboard" => 1,
                "dots" => 2,
                "waves" => 3,
                _ => 4,
            };
            let (a, b) = {
                let a = rng.color();
                (a, rng.contrasting(a))
            };
            let p = Pattern::random(&mut rng, kind);
            let mut c = Canvas::new(a);
            c.paint(|_, _| 1.0, |x, y| mix(a, b, p.value(x, y)));
            let k = rng.below(4);
            clutter(&mut rng, &mut c, k);
            c.into_image(&mut rng, noise)
        }
        "fur" => {
            let base = rng.color();
            let strand = rng.contrasting(base);
            let dark = mix(strand, [0.0; 3], 0.5);
            let angle = rng.range(0.0, std::f32::consts::PI);
            let mut c = Canvas::new(base);
            let strokes = 140 + rng.below(80);
            for _ in 0..strokes {
                let (x0, y0) = (rng.range(-4.0, n + 4.0), rng.range(-4.0, n + 4.0));
                let a = angle + rng.range(-0.35, 0.35);
                let len = rng.range(4.0, 8.0);
                let (x1, y1) = (x0 + len * a.cos(), y0 + len * a.sin());
                let col = if rng.below(3) == 0 { dark } else { strand };
                let (xa, xb) = (x0.min(x1) - 2.0, x0.max(x1) + 2.0);
                let (ya, yb) = (y0.min(y1) - 2.0, y0.max(y1) + 2.0);
                c.paint(
                    |x, y| {
                        if x < xa || x > xb || y < ya || y > yb {
                            0.0
                        } else {
                            soft(0.45 - seg_dist(x, y, x0, y0, x1, y1))
                        }
                    },
                    |_, _| col,
                );
            }
            c.into_image(&mut rng, noise)
        }
        _ => {
            // a shape over a quiet background with clutter
            let bg = rng.color();
            let bg2 = mix(bg, rng.color(), 0.3);
            let gangle = rng.range(0.0, std::f32::consts::TAU);
            let mut c = Canvas::new(bg);
            c.paint(
                |_, _| 1.0,
                |x, y| {
                    mix(
                        bg,
                        bg2,
                        ((x * gangle.cos() + y * gangle.sin()) / n).clamp(0.0, 1.0),
                    )
                },
            );
            let k = rng.below(5);
            clutter(&mut rng, &mut c, k);
            let r = rng.range(0.22 * n, 0.38 * n);
            let (cx, cy) = (
                rng.range(r * 0.8, n - r * 0.8),
                rng.range(r * 0.8, n - r * 0.8),
            );
            let rot = rng.range(0.0, std::f32::consts::TAU);
            let base = rng.contrasting(bg);
            let f = fill(&mut rng, base);
            if name == "circle" {
                c.paint(
                    |x, y| soft(r - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()),
                    f,
                );
            } else {
                let pts = shape_outline(class, cx, cy, r, rot);
                c.paint(|x, y| soft(polygon_sd(&pts, x, y)), f);
            }
            c.into_image(&mut rng, noise)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        for i in 0..CLASSES.len() as u64 * 2 {
            let (a, ca) = generate(7, i);
            let (b, cb) = generate(7, i);
            assert_eq!(ca, cb);
            assert_eq!(a, b, "image {i} differs between runs");
            let (c, _) = generate(8, i);
            assert_ne!(a, c, "another seed gives another image");
            assert_eq!(a.dimensions(), (SIZE, SIZE));
        }
    }

    #[test]
    fn every_class_has_contrast() {
        for (class, name) in CLASSES.iter().enumerate() {
            let img = generate_class(1, 3, class);
            let lum: Vec<f32> = img
                .pixels()
                .map(|p| p.0.iter().map(|&v| v as f32).sum::<f32>() / 3.0)
                .collect();
            let mean = lum.iter().sum::<f32>() / lum.len() as f32;
            let var = lum.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / lum.len() as f32;
            assert!(var.sqrt() > 5.0, "{name} is flat");
        }
    }
}
