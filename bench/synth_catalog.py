"""A synthetic catalog of any size made from the real Shopee listings, with known source groups.

    python bench/synth_catalog.py --n 1000000 --seed 0 --out out/scale/cat-1m.parquet
    python bench/synth_catalog.py --n 2000 --seed 1 --out /tmp/c.parquet --no-originals

Every synthetic row is a copy of one real listing of ``$ITEMREP_DATA/shopee/train.csv``. The real
listings are taken round-robin in a seeded random order, so each one is used ``n / 23,937`` times
(±1); the first copy of a listing is the original (title and phash unchanged, unless
``keep_originals=False``), later copies are perturbed:

* title: 1-3 of: drop a word, swap two adjacent words, duplicate a word, change the case of a word,
  a one-character typo (substitute / delete / insert / transpose a letter) in one word, add a
  promo/shipping token ("promo", "ready stock", "cod", "murah", "[READY]", ...) at the start or end
  or remove one already there, a trailing emoji (written as ``\\xNN`` escapes like the emoji in the
  Shopee titles);
* phash: 0-4 distinct random bits flipped (Hamming distance to the source <= 4).

Columns: ``posting_id`` (``s{seed}-{row}``, unique), ``title``, ``image_phash`` (16 hex digits),
``source_group`` (the real listing's ``label_group``, a string: the known duplicate group),
``source_posting`` (the real ``posting_id``) and ``copy`` (0 for the first copy of a listing). Rows
are shuffled (seeded), so copies of one listing are not adjacent. No image column: title + phash only.
The same ``n``, ``seed`` and source give the same table. All random draws are numpy-vectorised; the
string edits are one pass of plain Python over pre-split titles (1M rows in ~10 s on one core).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
VERSION = 1  # bump when the generated rows change (bench/scale.py keys its cache on it)

PROMO_TOKENS = ["promo", "PROMO", "ready stock", "READY STOCK", "cod", "COD", "bisa cod", "murah", "termurah",
                "original", "ORIGINAL", "100% original", "ori", "free ongkir", "FREE ONGKIR", "[READY]", "[COD]",
                "[PROMO]", "best seller", "hot sale", "grosir", "new"]
# single words whose removal counts as "remove a promo/shipping token"
PROMO_WORDS = {"promo", "ready", "stock", "cod", "murah", "termurah", "original", "ori", "free", "ongkir", "[ready]",
               "[cod]", "[promo]", "grosir", "readystock", "sale", "bestseller", "new"}
# UTF-8 bytes written as literal \xNN escapes, the way emoji appear in the Shopee titles
EMOJI = [e.encode("utf-8").hex() for e in ["🔥", "✨", "💯", "⭐", "❤", "😍", "🎁", "✅", "💥", "🌸"]]
EMOJI = ["".join(f"\\x{h[k:k + 2]}" for k in range(0, len(h), 2)) for h in EMOJI]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
OPS = ("drop", "swap", "dup", "case", "typo", "promo", "emoji")
MAX_OPS = 3
MAX_FLIPS = 4
_U = 1.0 / 65536


def _data_dir() -> Path:
    """``$ITEMREP_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("ITEMREP_DATA", REPO.parent / "shared" / "data"))


def shopee_csv() -> Path:
    return _data_dir() / "shopee" / "train.csv"


def load_source(source=None) -> pd.DataFrame:
    """The real listings: ``posting_id, title, image_phash, label_group`` as strings."""
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        path = Path(source) if source is not None else shopee_csv()
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (set ITEMREP_DATA to the shared data folder)")
        df = pd.read_csv(path, dtype=str, keep_default_na=False,
                         usecols=["posting_id", "title", "image_phash", "label_group"])
    df = df[["posting_id", "title", "image_phash", "label_group"]].astype(str).reset_index(drop=True)
    if len(df) == 0:
        raise ValueError("source has no rows")
    return df


# ------------------------------------------------------------------ title edits
_ESC = re.compile(r"\\x[0-9a-fA-F]{2}")


def _recase(x: str, b: float) -> str:
    """Title-case (b < 1/3, when that changes it), else upper-case, or lower-case an all-caps word;
    \\xNN escapes are kept as they are."""
    if "\\" in x and _ESC.search(x):
        parts = _ESC.split(x)
        escs = _ESC.findall(x)
        new = [_recase_plain(p, b) if p else p for p in parts]
        return "".join(p + e for p, e in zip(new, escs + [""]))
    return _recase_plain(x, b)


def _recase_plain(x: str, b: float) -> str:
    if b < 1 / 3 and x != x.title():
        return x.title()
    return x.lower() if x.upper() == x else x.upper()


def _typo(word: str, kind: int, p: float, q: float) -> str:
    """One-character typo at a letter of ``word`` (left alone when it has no letter)."""
    # keep \xNN escapes (emoji bytes) intact
    esc = {k for e in _ESC.finditer(word) for k in range(e.start(), e.end())} if "\\" in word else ()
    pos = [k for k, ch in enumerate(word) if ch.isalpha() and k not in esc]
    if not pos:
        return word
    k = pos[int(p * len(pos))]
    ch = LETTERS[int(q * 26)]
    if word[k].isupper():
        ch = ch.upper()
    if kind == 0:  # substitute (a different letter)
        if ch.lower() == word[k].lower():
            ch = LETTERS[(LETTERS.index(ch.lower()) + 1) % 26]
            ch = ch.upper() if word[k].isupper() else ch
        return word[:k] + ch + word[k + 1:]
    if kind == 1:  # delete (keep at least one character)
        return word[:k] + word[k + 1:] if len(word) > 1 else word + ch
    if kind == 2:  # insert
        return word[:k] + ch + word[k:]
    if k + 1 < len(word) and k + 1 not in esc and word[k + 1] != word[k]:  # transpose with the next character
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]
    return word[:k] + ch + word[k + 1:] if word[k] != ch else word + ch


def _perturb(words: list[str], ops, rs) -> str:
    """Apply ``ops`` (codes into :data:`OPS`) to a copy of ``words``; each op takes its position and
    choices from one random 64-bit integer of ``rs`` (four 16-bit uniforms a, b, c, d in [0, 1))."""
    w = list(words)
    for op, r in zip(ops, rs):
        a, b, c, d = (r & 0xFFFF) * _U, ((r >> 16) & 0xFFFF) * _U, ((r >> 32) & 0xFFFF) * _U, (r >> 48) * _U
        n = len(w)
        if op == 0:  # drop a word
            if n > 1:
                del w[int(a * n)]
        elif op == 1:  # swap two adjacent words
            if n > 1:
                i = int(a * (n - 1))
                w[i], w[i + 1] = w[i + 1], w[i]
        elif op == 2:  # duplicate a word
            i = int(a * n)
            w.insert(i + 1, w[i])
        elif op == 3:  # change the case of a word
            i = int(a * n)
            w[i] = _recase(w[i], b)
        elif op == 4:  # one-character typo
            i = int(a * n)
            w[i] = _typo(w[i], int(b * 4), c, d)
        elif op == 5:  # add or remove a promo/shipping token
            hit = next((k for k, x in enumerate(w) if x.lower() in PROMO_WORDS), None)
            if hit is not None and n > 1 and b < 0.5:
                del w[hit]
            else:
                tok = PROMO_TOKENS[int(c * len(PROMO_TOKENS))]
                if a < 0.5:
                    w.insert(0, tok)
                else:
                    w.append(tok)
        else:  # trailing emoji, glued to the last word or after a space
            e = EMOJI[int(b * len(EMOJI))]
            if c < 0.5:
                w[-1] = w[-1] + e
            else:
                w.append(e)
    return " ".join(w)


# ------------------------------------------------------------------ phash
def _hex_to_u64(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) for an array of hex strings; invalid ones are 0 and ``valid`` False."""
    vals = np.zeros(len(h), dtype=np.uint64)
    ok = np.zeros(len(h), dtype=bool)
    for k, s in enumerate(h):
        if len(s) == 16:
            try:
                vals[k] = np.uint64(int(s, 16))
                ok[k] = True
            except ValueError:
                pass
    return vals, ok


def _flip_masks(rng: np.random.Generator, n_flips: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """uint64 masks with ``n_flips[r]`` distinct random bits set (0 <= n_flips <= 4)."""
    n = len(n_flips)
    masks = np.zeros(n, dtype=np.uint64)
    one = np.uint64(1)
    for s in range(0, n, chunk):
        keys = rng.random((min(chunk, n - s), 64), dtype=np.float32)
        bits = np.argpartition(keys, MAX_FLIPS, axis=1)[:, :MAX_FLIPS].astype(np.uint64)  # 4 distinct bits
        k = n_flips[s:s + chunk]
        m = np.zeros(len(k), dtype=np.uint64)
        for t in range(MAX_FLIPS):
            m |= np.where(k > t, one << bits[:, t], np.uint64(0))
        masks[s:s + chunk] = m
    return masks


# ------------------------------------------------------------------ catalog
def make_catalog(n: int, seed: int = 0, source=None, *, keep_originals: bool = True, shuffle: bool = True) -> pd.DataFrame:
    """A synthetic catalog of ``n`` rows, each a (perturbed) copy of a real listing.

    Args:
        n: number of rows.
        seed: random seed (same ``n``, ``seed`` and source -> same table).
        source: the real listings: a CSV path or a DataFrame with ``posting_id, title, image_phash,
            label_group``; default ``$ITEMREP_DATA/shopee/train.csv``.
        keep_originals: the first copy of each listing is the unchanged original (else every row is perturbed).
        shuffle: shuffle the rows (else copy 0 of every listing first, then copy 1, ...).

    Returns:
        DataFrame with ``posting_id, title, image_phash, source_group, source_posting, copy``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    src = load_source(source)
    m = len(src)
    rng = np.random.default_rng(seed)
    # round-robin over a seeded order of the real listings: each is used n // m or n // m + 1 times
    order = rng.permutation(m)
    rows = np.arange(n, dtype=np.int64)
    s_idx = order[rows % m]
    copy = (rows // m).astype(np.int32)
    perturbed = copy > 0 if keep_originals else np.ones(n, dtype=bool)
    n_ops = rng.integers(1, MAX_OPS + 1, size=n)
    ops = rng.integers(0, len(OPS), size=(n, MAX_OPS))
    rs = rng.integers(0, 2**64, size=(n, MAX_OPS), dtype=np.uint64)  # positions / choices of each op
    n_flips = rng.integers(0, MAX_FLIPS + 1, size=n)
    masks = _flip_masks(rng, n_flips)
    masks[~perturbed] = 0

    # titles: one pass of Python over the perturbed rows, with the random numbers drawn above
    titles_src = src["title"].to_numpy(dtype=object)
    words_src = [t.split() or [t] for t in titles_src]
    titles = titles_src[s_idx]
    pr = np.flatnonzero(perturbed)
    sp, nop, opl, rsl = s_idx[pr].tolist(), n_ops[pr].tolist(), ops[pr].tolist(), rs[pr].tolist()
    titles[pr] = [_perturb(words_src[s], o[:k], r[:k]) for s, k, o, r in zip(sp, nop, opl, rsl)]

    # phash: xor with the flip masks; a source phash that is not 16 hex digits is copied unchanged
    ph_src = src["image_phash"].to_numpy(dtype=object)
    vals, ok = _hex_to_u64(ph_src)
    ph = ph_src[s_idx]
    flip = np.flatnonzero(ok[s_idx] & (masks != 0))
    ph[flip] = [f"{v:016x}" for v in (vals[s_idx[flip]] ^ masks[flip]).tolist()]

    out = pd.DataFrame({
        "title": titles,
        "image_phash": ph,
        "source_group": src["label_group"].to_numpy(dtype=object)[s_idx],
        "source_posting": src["posting_id"].to_numpy(dtype=object)[s_idx],
        "copy": copy,
    })
    if shuffle:
        out = out.iloc[rng.permutation(n)].reset_index(drop=True)
    out.insert(0, "posting_id", [f"s{seed}-{r}" for r in range(n)])
    return out


def write_catalog(df: pd.DataFrame, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    tmp.replace(out)  # atomic: a killed run never leaves a half-written cache file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="number of rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="output .parquet file")
    ap.add_argument("--source", type=Path, default=None, help="real listings CSV (default $ITEMREP_DATA/shopee/train.csv)")
    ap.add_argument("--no-originals", action="store_true", help="perturb every row, also the first copy of a listing")
    ap.add_argument("--no-shuffle", action="store_true", help="keep rows in round-robin order")
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        df = make_catalog(args.n, args.seed, args.source, keep_originals=not args.no_originals, shuffle=not args.no_shuffle)
        t1 = time.perf_counter()
    except FileNotFoundError as e:
        print(f"shopee data not found: {e}", file=sys.stderr)
        return 2
    write_catalog(df, args.out)
    print(f"{len(df)} rows from {df['source_posting'].nunique()} listings / {df['source_group'].nunique()} groups: "
          f"generated in {t1 - t0:.1f} s, written in {time.perf_counter() - t1:.1f} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
