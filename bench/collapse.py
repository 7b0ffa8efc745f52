"""Structural-collapse benchmark: same template, different product vs same product, new decoration.

    .venv/bin/python bench/collapse.py [--seed 0] [--methods saliency_crop,saliency,cam,center] [--hm-codes 300]

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 1 and 3) observes that a black-box image
embedding *collapses* different products shown on one ad template (banner, background, price tag)
and *drifts apart* on one product re-decorated (new sticker, watermark, border). This script builds
such a catalog from real product photos with a seeded generator and measures both failure modes.

Base products (real photos, seeded choice): H&M article photos (one per product_code),
Grocery Store iconic catalog photos (MIT) and the Shopee listing photos. Templates are generated
ad layouts: a background (a real in-store Grocery photo or a patterned gradient), a promo banner,
a shop badge and a price bar around a product area. For every product p, four items share its group:

* ``A``  = p composed on template T1;
* ``B``  = A after two realistic edits (JPEG re-encode, resize, crop, border, price sticker, promo
  text overlay, watermark) -> an *edited duplicate* of A;
* ``C``  = p composed on another template T2, then edited -> the same product *re-decorated*;
* ``D``  = the plain product photo, edited -> product without any template.

Hard negatives: pairs of different products on the same template (every template hosts many).
Products are split 50/50 (seeded) into a *tune* half and an *eval* half with disjoint templates;
α and τ are tuned on tune (pairwise F1), the table reports eval: pairwise P/R/F1, recall per
positive type and the false-merge rate on hard negatives (share of same-template
different-product pairs put in one cluster).

A second table measures **H&M colour variants**: articles sharing a ``product_code`` differ only in
colour (a primary attribute), so a strict dedup must keep them apart; it reports the share of such
pairs each method merges at its tuned setting (lower is better) and the share of exact-duplicate
controls (the same photo re-encoded) it still merges (higher is better).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grocery import bench_cache, cluster, data_dir, features_for, fuse, knn_graph, pair_metrics, print_table  # noqa: E402

SIZE = 512
FONT_PATHS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
BANNERS = ["MEGA SALE 11.11", "FLASH SALE -70%", "PROMO GAJIAN", "BIG DEAL TODAY", "FREE ONGKIR", "NEW ARRIVAL",
           "BEST SELLER", "DISKON 50%", "HARGA GROSIR", "LIMITED EDITION", "SUPER BRAND DAY", "CLEARANCE"]
PRICES = ["Rp 49.900", "Rp 129.000", "$9.99", "Rp 15.500", "-30%", "2 FOR 1", "Rp 99.000", "SALE", "-50%", "Rp 7.900"]
SHOPS = ["@tokobagus", "@shop.murah", "official store", "@grosir88", "mystore.id", "@hemat_jaya"]


def font(size: int) -> ImageFont.ImageFont:
    for p in FONT_PATHS:
        if Path(p).exists():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size=size)


def rand_colour(rng, lo=0, hi=255) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


# ------------------------------------------------------------------------------------ generator
def make_template(rng, bg_photos: list[Path]) -> dict:
    """A template description (drawn later with any product)."""
    kind = "photo" if (bg_photos and rng.random() < 0.5) else "pattern"
    t = {
        "kind": kind,
        "bg": str(bg_photos[rng.integers(len(bg_photos))]) if kind == "photo" else None,
        "c1": rand_colour(rng), "c2": rand_colour(rng), "pattern": int(rng.integers(3)),
        "banner": BANNERS[rng.integers(len(BANNERS))], "banner_col": rand_colour(rng, 120), "banner_top": bool(rng.random() < 0.5),
        "price": PRICES[rng.integers(len(PRICES))], "badge_col": rand_colour(rng, 60), "shop": SHOPS[rng.integers(len(SHOPS))],
        "card": bool(rng.random() < 0.5),
        # product area (x0, y0, x1, y1) fractions: 40-50 % of the width
        "area": (0.27, 0.24, 0.73, 0.80) if rng.random() < 0.5 else (0.30, 0.22, 0.76, 0.78),
    }
    return t


def draw_template(t: dict) -> Image.Image:
    if t["kind"] == "photo":
        bg = Image.open(t["bg"]).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    else:
        a = np.linspace(0, 1, SIZE)[:, None, None]
        g = (np.array(t["c1"]) * (1 - a) + np.array(t["c2"]) * a) * np.ones((1, SIZE, 1))
        bg = Image.fromarray(g.astype(np.uint8), "RGB")
        d = ImageDraw.Draw(bg)
        for i in range(0, SIZE, 32):
            if t["pattern"] == 0:
                d.line([(i, 0), (0, i)], fill=t["c2"], width=6)
                d.line([(SIZE, i), (i, SIZE)], fill=t["c2"], width=6)
            elif t["pattern"] == 1:
                for j in range(0, SIZE, 32):
                    d.ellipse([i + 8, j + 8, i + 20, j + 20], fill=t["c1"])
    d = ImageDraw.Draw(bg)
    by = 0 if t["banner_top"] else SIZE - 90
    d.rectangle([0, by, SIZE, by + 90], fill=t["banner_col"])
    d.text((SIZE // 2, by + 45), t["banner"], fill=(255, 255, 255), font=font(44), anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
    py = SIZE - 60 if t["banner_top"] else 95
    d.rounded_rectangle([SIZE - 200, py, SIZE - 10, py + 50], radius=12, fill=t["badge_col"])
    d.text((SIZE - 105, py + 25), t["price"], fill=(255, 255, 255), font=font(28), anchor="mm")
    d.ellipse([10, py - 10, 80, py + 60], fill=(255, 255, 255), outline=t["badge_col"], width=5)
    d.text((45, py + 25), t["shop"][:4].upper(), fill=t["badge_col"], font=font(18), anchor="mm")
    return bg


def compose(product: Image.Image, t: dict) -> Image.Image:
    im = draw_template(t)
    x0, y0, x1, y1 = (int(v * SIZE) for v in t["area"])
    if t["card"]:
        ImageDraw.Draw(im).rounded_rectangle([x0 - 8, y0 - 8, x1 + 8, y1 + 8], radius=14, fill=(255, 255, 255))
    p = product.copy()
    p.thumbnail((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    im.paste(p, (x0 + (x1 - x0 - p.width) // 2, y0 + (y1 - y0 - p.height) // 2))
    return im


def jpeg(im: Image.Image, q: int) -> Image.Image:
    import io

    b = io.BytesIO()
    im.save(b, "JPEG", quality=int(q))
    b.seek(0)
    return Image.open(b).convert("RGB")


def edit(im: Image.Image, rng, n: int = 2) -> Image.Image:
    """Apply ``n`` random realistic edits, then a JPEG re-encode."""
    ops = ["resize", "crop", "border", "sticker", "overlay", "watermark"]
    for op in rng.choice(ops, size=n, replace=False):
        w, h = im.size
        if op == "resize":
            s = rng.uniform(0.45, 0.8)
            im = im.resize((max(32, int(w * s)), max(32, int(h * s))), Image.Resampling.BILINEAR)
        elif op == "crop":
            f = rng.uniform(0.03, 0.08, 4)
            im = im.crop((int(f[0] * w), int(f[1] * h), w - int(f[2] * w), h - int(f[3] * h)))
        elif op == "border":
            b = int(rng.integers(8, 30))
            c = Image.new("RGB", (w + 2 * b, h + 2 * b), rand_colour(rng))
            c.paste(im, (b, b))
            im = c
        elif op == "sticker":
            im = im.copy()
            d = ImageDraw.Draw(im)
            r = int(min(w, h) * rng.uniform(0.10, 0.14))
            cx = int(rng.choice([r + 5, w - r - 5]))
            cy = int(rng.choice([r + 5, h - r - 5]))
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rand_colour(rng, 150), outline=(255, 255, 255), width=3)
            d.text((cx, cy), PRICES[rng.integers(len(PRICES))], fill=(0, 0, 0), font=font(max(10, r // 2)), anchor="mm")
        elif op == "overlay":
            im = im.convert("RGBA")
            ov = Image.new("RGBA", im.size, (0, 0, 0, 0))
            d = ImageDraw.Draw(ov)
            y = int(h * rng.choice([0.02, 0.85]))
            d.rectangle([0, y, w, y + int(h * 0.12)], fill=rand_colour(rng) + (170,))
            d.text((w // 2, y + int(h * 0.06)), BANNERS[rng.integers(len(BANNERS))], fill=(255, 255, 255, 255), font=font(max(10, int(h * 0.07))), anchor="mm")
            im = Image.alpha_composite(im, ov).convert("RGB")
        elif op == "watermark":
            im = im.convert("RGBA")
            ov = Image.new("RGBA", im.size, (0, 0, 0, 0))
            d = ImageDraw.Draw(ov)
            txt = SHOPS[rng.integers(len(SHOPS))]
            f = font(max(10, int(h * 0.05)))
            for yy in range(0, h, max(20, h // 5)):
                for xx in range(-w // 4, w, max(40, w // 2)):
                    d.text((xx + (yy // 3) % 50, yy), txt, fill=(255, 255, 255, int(rng.integers(70, 110))), font=f)
            im = Image.alpha_composite(im, ov).convert("RGB")
    return jpeg(im, rng.integers(30, 70))


def base_products(rng, n_hm: int, n_groc: int) -> list[tuple[str, Path]]:
    root = data_dir()
    out: list[tuple[str, Path]] = []
    import pandas as pd

    arts = pd.read_csv(root / "hm" / "articles_sample.csv", dtype={"article_id": str, "product_code": str})
    have = {p.stem: p for p in (root / "hm" / "images").glob("*/*.jpg")}
    arts = arts[arts["article_id"].isin(have)].drop_duplicates("product_code")
    pick = rng.choice(len(arts), size=min(n_hm, len(arts)), replace=False)
    out += [(f"hm:{arts.iloc[i]['article_id']}", have[arts.iloc[i]["article_id"]]) for i in sorted(pick)]
    icon = sorted((root / "grocery" / "iconic-images-and-descriptions").glob("*/*/*/*_Iconic.jpg")) + sorted(
        (root / "grocery" / "iconic-images-and-descriptions").glob("*/*/*_Iconic.jpg"))
    icon = sorted(set(icon))
    pick = rng.choice(len(icon), size=min(n_groc, len(icon)), replace=False)
    out += [(f"grocery:{icon[i].stem}", icon[i]) for i in sorted(pick)]
    out += [(f"shopee:{p.stem}", p) for p in sorted((root / "shopee" / "images").glob("*.jpg"))]
    return out


def generate(seed: int, n_hm: int, n_groc: int, n_templates: int) -> tuple[list[Path], dict]:
    """Write the benchmark images; return paths and per-item metadata arrays."""
    rng = np.random.default_rng(seed)
    out_dir = bench_cache() / f"collapse-s{seed}-{n_hm}-{n_groc}-{n_templates}"
    prods = base_products(rng, n_hm, n_groc)
    bg_photos = sorted((data_dir() / "grocery" / "train").glob("*/*/*.jpg"))[::40]
    templates = [make_template(rng, bg_photos) for _ in range(2 * n_templates)]
    order = rng.permutation(len(prods))
    half = np.zeros(len(prods), dtype=int)
    half[order[len(prods) // 2:]] = 1  # 0 = tune, 1 = eval
    paths, meta = [], {"group": [], "kind": [], "template": [], "half": [], "source": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    for pi, (pid, ppath) in enumerate(prods):
        h = int(half[pi])
        tids = rng.choice(n_templates, size=2, replace=False) + h * n_templates  # disjoint templates per half
        prod = Image.open(ppath).convert("RGB")
        items = {
            "A": lambda: compose(prod, templates[tids[0]]),
            "B": None,
            "C": lambda: edit(compose(prod, templates[tids[1]]), rng),
            "D": lambda: edit(prod, rng),
        }
        a_img = None
        for kind in "ABCD":
            f = out_dir / f"{pi:04d}{kind}.jpg"
            if kind == "A":
                a_img = items["A"]()
                img = jpeg(a_img, 90)
            elif kind == "B":
                img = edit(a_img, rng)
            else:
                img = items[kind]()
            if not f.exists():
                img.save(f, quality=95)
            paths.append(f)
            meta["group"].append(pid)
            meta["kind"].append(kind)
            meta["template"].append(int(tids[0]) if kind in "AB" else int(tids[1]) if kind == "C" else -1)
            meta["half"].append(h)
            meta["source"].append(pid.split(":")[0])
    return paths, {k: np.array(v) for k, v in meta.items()}


# ------------------------------------------------------------------------------------ evaluation
def pair_breakdown(labels, pred, kinds, templates) -> dict[str, float]:
    """Recall per positive pair type and false-merge rate on same-template negatives."""
    n = len(labels)
    iu, ju = np.triu_indices(n, 1)
    same = labels[iu] == labels[ju]
    merged = pred[iu] == pred[ju]
    kk = np.char.add(kinds[iu], kinds[ju])
    out = {}
    for name, sel in [
        ("R edit (A~B)", same & (kk == "AB")),
        ("R re-decorated (A/B~C)", same & np.isin(kk, ["AC", "BC"])),
        ("R plain~ad (D~A/B/C)", same & np.isin(kk, ["AD", "BD", "CD"])),
    ]:
        out[name] = float(merged[sel].mean()) if sel.any() else float("nan")
    hard = (~same) & (templates[iu] == templates[ju]) & (templates[iu] >= 0)
    out["hard-neg merged"] = float(merged[hard].mean()) if hard.any() else float("nan")
    out["n_hard"] = int(hard.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="saliency_crop,saliency,cam,center")
    ap.add_argument("--hm", type=int, default=80, help="H&M base products")
    ap.add_argument("--grocery", type=int, default=60, help="Grocery iconic base products")
    ap.add_argument("--templates", type=int, default=6, help="templates per half")
    ap.add_argument("--edit-recall", type=float, default=0.9, help="edit-duplicate recall of the equal-recall table")
    ap.add_argument("--hm-codes", type=int, default=300, help="H&M product codes for the colour-variant table")
    args = ap.parse_args()
    if not (data_dir() / "hm").exists() or not (data_dir() / "grocery").exists():
        print(f"shared data not found under {data_dir()} (set ITEMREP_DATA); skipping")
        return
    methods = tuple(m for m in args.methods.split(",") if m)
    t0 = time.perf_counter()
    paths, meta = generate(args.seed, args.hm, args.grocery, args.templates)
    print(f"generated {len(paths)} images ({len(set(meta['group']))} products, {2 * args.templates} templates) in {time.perf_counter() - t0:.1f} s")
    feats = features_for(paths, methods, f"collapse-s{args.seed}-{args.hm}-{args.grocery}-{args.templates}")
    tune_sel = meta["half"] == 0
    ev_sel = meta["half"] == 1
    taus = np.round(np.arange(0.30, 0.991, 0.01), 3)
    grid = [(a, 1 - a) for a in np.round(np.arange(0.0, 1.01, 0.1), 2)]
    configs = [("phash only", ["phash"], [(1.0,)]), ("black box (whole-image CNN)", ["whole"], [(1.0,)])]
    configs += [(f"FITRep primary={m} + context", [m, "whole"], grid) for m in methods]
    from itemrep.encoders.image import COLOUR_WEIGHT

    for f_ in (feats,):
        for m in methods:
            f_[f"{m}+colour"] = fuse([f_[m], f_["colour"]], [1 - COLOUR_WEIGHT, COLOUR_WEIGHT])
    configs += [(f"FITRep primary={m}+colour + context", [f"{m}+colour", "whole"], grid) for m in methods[:1]]
    rows, tuned, rows_op = [], {}, []
    for name, keys, g in configs:
        best = None
        for w in g:
            z = fuse([feats[k][tune_sel] for k in keys], list(w))
            kn = knn_graph(z)
            for tau in taus:
                m = pair_metrics(meta["group"][tune_sel], cluster(z, tau, knn=kn))
                if best is None or m["F1"] > best[2]["F1"]:
                    best = (w, float(tau), m)
        w, tau, _ = best
        tuned[name] = (keys, w, tau)
        z = fuse([feats[k][ev_sel] for k in keys], list(w))
        pred = cluster(z, tau)
        m = pair_metrics(meta["group"][ev_sel], pred)
        b = pair_breakdown(meta["group"][ev_sel], pred, meta["kind"][ev_sel], meta["template"][ev_sel])
        wtxt = ", ".join(f"{k}={a / sum(w):.1f}" for k, a in zip(keys, w) if a > 0)
        rows.append([name, wtxt, tau, m["P"], m["R"], m["F1"], b["R edit (A~B)"], b["R re-decorated (A/B~C)"],
                     b["R plain~ad (D~A/B/C)"], b["hard-neg merged"]])
        # operating point at equal duplicate recall: the highest τ whose edit-duplicate recall on
        # the tune half is >= --edit-recall, then the same τ on eval
        zt = fuse([feats[k][tune_sel] for k in keys], list(w))
        kn = knn_graph(zt)
        tau_op = None
        for t_ in taus[::-1]:
            bt = pair_breakdown(meta["group"][tune_sel], cluster(zt, t_, knn=kn), meta["kind"][tune_sel], meta["template"][tune_sel])
            if bt["R edit (A~B)"] >= args.edit_recall:
                tau_op = float(t_)
                break
        if tau_op is not None:
            pe = cluster(z, tau_op)
            be = pair_breakdown(meta["group"][ev_sel], pe, meta["kind"][ev_sel], meta["template"][ev_sel])
            me = pair_metrics(meta["group"][ev_sel], pe)
            rows_op.append([name, tau_op, me["P"], me["R"], me["F1"], be["R edit (A~B)"], be["R re-decorated (A/B~C)"],
                            be["R plain~ad (D~A/B/C)"], be["hard-neg merged"]])
    print_table(f"Structural collapse, eval half ({int(ev_sel.sum())} images; α, τ tuned on the tune half; "
                f"{b['n_hard']} hard-negative pairs)",
                ["method", "α", "τ", "P", "R", "F1", "R edit", "R re-decorated", "R plain~ad", "hard-neg merged ↓"], rows)
    print_table(f"Same, at equal duplicate recall: τ = highest with edit-duplicate recall >= {args.edit_recall} on the tune half",
                ["method", "τ", "P", "R", "F1", "R edit", "R re-decorated", "R plain~ad", "hard-neg merged ↓"], rows_op)

    # ---- H&M colour variants
    import pandas as pd

    root = data_dir() / "hm"
    arts = pd.read_csv(root / "articles_sample.csv", dtype={"article_id": str, "product_code": str})
    have = {p.stem: p for p in (root / "images").glob("*/*.jpg")}
    arts = arts[arts["article_id"].isin(have)]
    multi = arts.groupby("product_code").filter(lambda g: len(g) >= 2)
    codes = sorted(multi["product_code"].unique())
    rng = np.random.default_rng(args.seed)
    codes = sorted(rng.choice(codes, size=min(args.hm_codes, len(codes)), replace=False))
    sub = multi[multi["product_code"].isin(codes)].sort_values("article_id")
    hm_paths = [have[a] for a in sub["article_id"]]
    # exact-duplicate controls: the first article of each code re-encoded at JPEG q=50
    ctrl_dir = bench_cache() / f"hm-ctrl-s{args.seed}"
    ctrl_dir.mkdir(parents=True, exist_ok=True)
    firsts = sub.drop_duplicates("product_code")["article_id"].tolist()
    ctrl_paths = []
    for a in firsts:
        f = ctrl_dir / f"{a}_q50.jpg"
        if not f.exists():
            jpeg(Image.open(have[a]).convert("RGB"), 50).save(f, quality=50)
        ctrl_paths.append(f)
    hf = features_for(hm_paths + ctrl_paths, methods, f"hm-colour-s{args.seed}-{args.hm_codes}")
    for m in methods:
        hf[f"{m}+colour"] = fuse([hf[m], hf["colour"]], [1 - COLOUR_WEIGHT, COLOUR_WEIGHT])
    code = np.array(sub["product_code"].tolist() + [f"ctrl:{a}" for a in firsts])
    art = np.array(sub["article_id"].tolist() + firsts)
    n_var = len(hm_paths)
    rows = []
    for name, (keys, w, tau) in tuned.items():
        z = fuse([hf[k] for k in keys], list(w))
        pred = cluster(z, tau)
        iu, ju = np.triu_indices(len(z), 1)
        same_code = (code[iu] == code[ju]) & (iu < n_var) & (ju < n_var)
        ctrl = (art[iu] == art[ju])
        merged = pred[iu] == pred[ju]
        sims = np.einsum("ij,ij->i", z[iu[same_code]], z[ju[same_code]])
        rows.append([name, tau, float(merged[same_code].mean()), float(np.median(sims)), float(merged[ctrl].mean())])
    print_table(f"H&M colour variants ({n_var} articles of {len(codes)} product codes, {int(same_code.sum())} variant pairs; "
                f"settings tuned on the collapse tune half)",
                ["method", "τ", "variant pairs merged ↓", "median variant sim", "re-encoded copies merged ↑"], rows)


if __name__ == "__main__":
    main()
