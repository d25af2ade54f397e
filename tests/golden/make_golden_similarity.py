"""Reference values for the sanity check's two similarities (src/recon/similarity.rs):
scikit-image's SSIM (Gaussian window, sigma 1.5, population covariance, data range 255,
mean over colour channels) and SciPy's Spearman rank correlation (average ranks for ties),
on two small images written here as PNG. Writes tests/golden/similarity_{a,b}.png and
tests/golden/similarity.ref.json:

    python tests/golden/make_golden_similarity.py
"""

import json
import os

import numpy as np
import scipy
import skimage
from PIL import Image
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rng = np.random.default_rng(7)
    h, w = 37, 45
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0) for c in range(3)], -1)
    a = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    b = np.clip(0.7 * base + 40 + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    b[::6] = 128  # ties for the ranks
    Image.fromarray(a).save(os.path.join(HERE, "similarity_a.png"))
    Image.fromarray(b).save(os.path.join(HERE, "similarity_b.png"))
    ssim = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)
    # Spearman of per-pixel sums over the channels, as the check ranks |gradient|
    sa, sb = a.astype(np.float64).sum(-1).ravel(), b.astype(np.float64).sum(-1).ravel()
    rho = spearmanr(sa, sb).statistic
    out = {"generator": f"make_golden_similarity.py; scikit-image {skimage.__version__}, "
                        f"scipy {scipy.__version__}, numpy {np.__version__}",
           "ssim": float(ssim), "spearman": float(rho),
           "ssim_self": float(structural_similarity(a, a, channel_axis=-1,
                                                    gaussian_weights=True, sigma=1.5,
                                                    use_sample_covariance=False,
                                                    data_range=255))}
    with open(os.path.join(HERE, "similarity.ref.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
