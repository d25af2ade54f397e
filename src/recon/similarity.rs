//! Similarity of two reconstructions, as the sanity check reports it: Spearman's rank
//! correlation of per-pixel magnitudes, and SSIM of displayed images (Wang et al. 2004,
//! Gaussian window sigma 1.5, as scikit-image's `structural_similarity` with
//! `gaussian_weights=True`).

use image::RgbImage;

/// Ranks (1-based) of `v`, ties given their average rank.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            r[o] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation of `a` and `b` (equal lengths); NaN when either is
/// constant (an all-zero reconstruction).
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return f32::NAN;
    }
    pearson(&ranks(a), &ranks(b)) as f32
}

/// Per pixel of a `[3, H, W]` gradient: `sum_c |g_c|`.
pub fn magnitude(g: &[f32]) -> Vec<f32> {
    let plane = g.len() / 3;
    (0..plane)
        .map(|i| g[i].abs() + g[plane + i].abs() + g[2 * plane + i].abs())
        .collect()
}

const SIGMA: f64 = 1.5;
const RADIUS: usize = 5; // scikit-image: truncate 3.5 sigma -> an 11-wide window

fn gaussian() -> [f64; 2 * RADIUS + 1] {
    let mut w = [0.0; 2 * RADIUS + 1];
    for (i, x) in w.iter_mut().enumerate() {
        let d = i as f64 - RADIUS as f64;
        *x = (-d * d / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= s);
    w
}

/// Separable Gaussian filter of a `w x h` plane, over the windows that fit inside it.
fn filter(p: &[f64], w: usize, h: usize) -> Vec<f64> {
    let k = gaussian();
    let (ow, oh) = (w - 2 * RADIUS, h - 2 * RADIUS);
    let mut rows = vec![0.0; ow * h];
    for y in 0..h {
        for x in 0..ow {
            rows[y * ow + x] = (0..k.len()).map(|i| k[i] * p[y * w + x + i]).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..k.len()).map(|i| k[i] * rows[(y + i) * ow + x]).sum();
        }
    }
    out
}

fn ssim_plane(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mul = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let (ma, mb) = (filter(a, w, h), filter(b, w, h));
    let (aa, bb, ab) = (
        filter(&mul(a, a), w, h),
        filter(&mul(b, b), w, h),
        filter(&mul(a, b), w, h),
    );
    let n = ma.len() as f64;
    (0..ma.len())
        .map(|i| {
            let (va, vb, cov) = (
                aa[i] - ma[i] * ma[i],
                bb[i] - mb[i] * mb[i],
                ab[i] - ma[i] * mb[i],
            );
            ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cov + c2))
                / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2))
        })
        .sum::<f64>()
        / n
}

/// SSIM of two RGB images of one size (the mean over colour channels); NaN when they
/// differ in size or are smaller than the 11-pixel window.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f32 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    if a.dimensions() != b.dimensions() || w <= 2 * RADIUS || h <= 2 * RADIUS {
        return f32::NAN;
    }
    let plane =
        |img: &RgbImage, c: usize| -> Vec<f64> { img.pixels().map(|p| p.0[c] as f64).collect() };
    let s: f64 = (0..3)
        .map(|c| ssim_plane(&plane(a, c), &plane(b, c), w, h))
        .sum();
    (s / 3.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_and_ties() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[2.0, 4.0, 9.0, 10.0, 100.0]) - 1.0).abs() < 1e-6);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        // scipy.stats.spearmanr([1,2,3,4,5], [1,1,2,2,3]) = 0.9486832980505138
        assert!((spearman(&a, &[1.0, 1.0, 2.0, 2.0, 3.0]) - 0.948_683_3).abs() < 1e-6);
        assert!(spearman(&a, &[0.0; 5]).is_nan());
    }

    #[test]
    fn ssim_of_an_image_with_itself_is_one_and_of_noise_less() {
        let a = RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 9) as u8, 128])
        });
        let b = RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb([((x * 7) ^ (y * 13)) as u8, (y * 9) as u8, 100])
        });
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-6);
        let s = ssim(&a, &b);
        assert!(s < 0.9 && s > -1.0, "{s}");
        assert!(ssim(&a, &RgbImage::new(8, 8)).is_nan());
    }
}
