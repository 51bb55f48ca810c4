"""Where does a model lose quality: its transforms, or its quantization?

For each model (each width of a slimmable one), on Kodak, the mean per-image PSNR-RGB of the
8-bit output of

* ``ceiling``: the latent y passed to the synthesis *unquantized* (IQR included) -- what the
  analysis/synthesis pair can reach at any rate, an upper bound that more bits cannot beat;
* ``quantized``: y rounded as in coding (``round(y - median) + median``, or around the
  hyperprior's means) -- the model's own operating point, without the entropy coder.

The gap between them is what quantization costs; a small gap at a high rate says the rate is
being spent on detail the synthesis cannot draw: the model is limited by its transforms, and a
higher lambda buys little until they improve.

For scale, ``--linear-bound`` adds the best *fixed linear* transform with the same latent count:
principal components of 16x16 RGB blocks (the models' down-sampling) learned on training images
(never Kodak), keeping as many per block as the model has latent channels, measured on Kodak.
Learned transforms are nonlinear and overlapping, so a ceiling below this bound means
undertrained transforms rather than too small a latent.

    python benchmarks/ceiling.py --models fasinet-h-mse-q10 slim-fasinet-l-mse [--limit 4] [--linear-bound 192]
                                 [--out F.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import sys

import numpy as np


def psnr8(x_hat, img: np.ndarray) -> float:
    """PSNR-RGB of the model output, cropped to ``img`` and rounded to 8 bits as the codec does."""
    from slimfast.metrics import psnr

    rec = (x_hat[0].clamp(0, 1) * 255).round().numpy().astype(np.uint8).transpose(1, 2, 0)
    return psnr(rec[: img.shape[0], : img.shape[1]], img)


def blocks(img: np.ndarray, b: int = 16) -> np.ndarray:
    h, w = img.shape[0] // b * b, img.shape[1] // b * b
    return img[:h, :w].reshape(h // b, b, w // b, b, 3).transpose(0, 2, 1, 3, 4).reshape(-1, b * b * 3)


def linear_bound(components: list[int], train: list[str], kodak: list[np.ndarray]) -> dict[int, float]:
    """Mean Kodak PSNR of 16x16 blocks projected on their first principal components (basis from ``train``)."""
    from PIL import Image

    x = np.concatenate([blocks(np.asarray(Image.open(f).convert("RGB").reduce(2), np.float64)) for f in train])
    mean = x.mean(0)
    _, vecs = np.linalg.eigh(np.cov((x - mean).T))
    vecs = vecs[:, ::-1]
    kodak_blocks = [blocks(img.astype(np.float64)) for img in kodak]
    out = {}
    for k in components:
        p = vecs[:, :k]
        psnrs = []
        for b in kodak_blocks:
            rec = np.clip(np.round((b - mean) @ p @ p.T + mean), 0, 255)
            psnrs.append(10 * np.log10(255 ** 2 / np.mean((rec - b) ** 2)))
        out[k] = float(np.mean(psnrs))
    return out


def transforms(model, width):
    """(analysis, synthesis-with-IQR) callables for the model at ``width``."""
    if hasattr(model, "analysis"):
        c = model.check_width(width)
        return (lambda x: model.analysis(x, c)), (lambda y: model.synthesis(y, c))
    return model.g_a, (lambda y: model.g_s(model.iqr(y)))


def main(argv=None) -> int:
    import torch
    from PIL import Image

    from slimfast import zoo
    from slimfast.codec import pad_image
    from slimfast.models.weights import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="installed model names")
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--linear-bound", type=int, nargs="*", default=[], metavar="K",
                   help="also the PCA bound with K components per 16x16 block (basis from --train)")
    p.add_argument("--train", default="../shared/data/train", help="images for the PCA basis (never Kodak)")
    p.add_argument("--train-images", type=int, default=200)
    p.add_argument("--out", default=None, help="also write the results as JSON")
    a = p.parse_args(argv)
    files = sorted(glob.glob(f"{a.kodak}/*.png"))[: a.limit or None]
    if not files:
        print(f"ceiling: no PNG images in {a.kodak}", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    rows = []
    print("| model | width | ceiling dB (unquantized y) | quantized dB | quantization cost dB |")
    print("|---|---|---|---|---|")
    for name in a.models:
        info = zoo.get(name)
        model = load_model(info.path).eval()
        for width in info.widths or [None]:
            g_a, g_s = transforms(model, width)
            ceil, quant = [], []
            for img in images:
                x = torch.from_numpy(pad_image(img, model.pad_multiple).transpose(2, 0, 1).copy()).float().div(255)[None]
                with torch.no_grad():
                    ceil.append(psnr8(g_s(g_a(x)), img))
                    out = model(x, width) if info.widths else model(x)
                    quant.append(psnr8(out["x_hat"], img))
            row = {"model": name, "version": info.version, "width": width, "images": len(files),
                   "ceiling_psnr": float(np.mean(ceil)), "quantized_psnr": float(np.mean(quant))}
            rows.append(row)
            print(f"| {name} v{info.version} | {width or '-'} | {row['ceiling_psnr']:.2f} | {row['quantized_psnr']:.2f} | "
                  f"{row['quantized_psnr'] - row['ceiling_psnr']:+.2f} |", flush=True)
    bound = {}
    if a.linear_bound:
        train = sorted(f for ext in ("jpg", "jpeg", "png") for f in glob.glob(f"{a.train}/**/*.{ext}", recursive=True))
        bound = linear_bound(a.linear_bound, train[: a.train_images], images)
        for k, v in bound.items():
            print(f"linear bound, {k} principal components per 16x16 block "
                  f"({min(len(train), a.train_images)} training images): {v:.2f} dB")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"kodak": a.kodak, "rows": rows, "linear_bound": bound,
                       "linear_bound_train_images": a.train_images if bound else None}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
