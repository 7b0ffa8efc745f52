"""Quantity and unit normalisation for the rule-based concept extractor.

Seller titles write the same quantity in many ways: ``500ml``, ``500 ML``, ``0,5 L``, ``1.000 gr``,
``1kg``, ``5 ons``, ``500毫升``. This module turns them into one canonical string so that equal
quantities compare equal: ``"0.5 l"``, ``"1 kg"``, ``"0.5 kg"``.

The unit table is data (``lexicon/units.tsv``: surface form, canonical unit, factor). Canonical
units: volume -> litre (``l``), mass -> kilogram (``kg``), length -> centimetre (``cm``); other units
(``gb``, ``mah``, ``w``, ``years`` ...) are kept as they are, only lower-cased.

Numbers follow Indonesian and English usage: ``0,5`` and ``0.5`` are decimals; ``1.000`` (a single
separator followed by exactly three digits, integer part not ``0``) is a thousands separator;
``1.250,5`` uses the last separator as the decimal mark. Arithmetic uses :class:`decimal.Decimal`,
so ``500 * 0.001`` is exactly ``0.5`` and the output is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path

#: Units that must touch the number (``12V``, ``10W``, ``32in``): with a space they are too often
#: ordinary words or letters (``3 in 1``, ``Seri V``).
NO_SPACE_UNITS = frozenset({"v", "w", "in", '"', "″", "mp", "db", "m"})

_NUM = r"\d+(?:[.,]\d+)*"
_MEMO_MAX = 100_000  # memoised canonical strings per normaliser (cleared when full)
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Unit:
    """One row of the unit table.

    Attributes:
        surface: the written form, lower-case (``"gr"``, ``"毫升"``).
        canonical: canonical unit (``"kg"``, ``"l"``, ``"cm"``, or the unit itself).
        factor: multiplier from ``surface`` to ``canonical`` (``gr`` -> ``kg``: ``0.001``).
    """

    surface: str
    canonical: str
    factor: Decimal


def load_units(path: Path | None = None) -> dict[str, Unit]:
    """Read a unit table (TSV: surface, canonical, factor; ``#`` comments).

    Args:
        path: the TSV file; ``None`` reads the bundled ``lexicon/units.tsv``.

    Returns:
        Mapping lower-case surface form -> :class:`Unit`.

    Raises:
        ValueError: a malformed line (the message names the file and line number).
    """
    if path is None:
        text = resources.files("itemrep.concepts").joinpath("lexicon", "units.tsv").read_text(encoding="utf-8")
        where = "itemrep/concepts/lexicon/units.tsv"
    else:
        text = Path(path).read_text(encoding="utf-8")
        where = str(path)
    units: dict[str, Unit] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            raise ValueError(f"{where}:{lineno}: expected 'surface<TAB>canonical<TAB>factor', got {line!r}")
        try:
            factor = Decimal(parts[2].strip())
        except InvalidOperation:
            raise ValueError(f"{where}:{lineno}: factor {parts[2]!r} is not a number") from None
        surface = parts[0].strip().lower()
        units[surface] = Unit(surface, parts[1].strip().lower(), factor)
    return units


@lru_cache(maxsize=8192)
def parse_number(s: str) -> Decimal:
    """Parse a seller-written number with ``.`` / ``,`` as decimal or thousands separators.

    Examples: ``"0,5"`` -> 0.5, ``"1.5"`` -> 1.5, ``"1.000"`` -> 1000, ``"1,250.5"`` -> 1250.5,
    ``"1.250,5"`` -> 1250.5, ``"0.500"`` -> 0.5.

    Raises:
        ValueError: when ``s`` is not a number.
    """
    s = s.strip()
    seps = [c for c in s if c in ".,"]
    if not seps:
        out = s
    elif len(set(seps)) == 2:  # both: the last one is the decimal mark
        dec = s[max(s.rfind("."), s.rfind(","))]
        out = s.replace("," if dec == "." else ".", "").replace(dec, ".")
    elif len(seps) > 1:  # one kind, repeated: thousands separators
        out = s.replace(seps[0], "")
    else:
        head, tail = s.split(seps[0])
        out = head + tail if (len(tail) == 3 and head.strip("0") != "") else head + "." + tail
    try:
        return Decimal(out)
    except InvalidOperation:
        raise ValueError(f"not a number: {s!r}") from None


def format_number(d: Decimal) -> str:
    """Plain decimal notation without trailing zeros: ``Decimal("0.500")`` -> ``"0.5"``, 1E+2 -> ``"100"``."""
    d = d.normalize()
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def _alternation(surfaces) -> str:
    """One alternative per unit, the longest tried first (so that "ml" wins over "m", "kg" over "g").

    Written as a character trie (``g(?:r(?:am|)|)`` for ``g, gr, gram``), which ``re`` tries much
    faster than 100 separate case-insensitive alternatives and which picks the same unit: units
    that match at one place are prefixes of one another, and the trie tries the longer first. That
    needs every text character to match at most one branch of a node under ``re.IGNORECASE``, true
    when each unit character is a lower-case ASCII letter or has no case; otherwise the plain list
    is used.
    """
    surfaces = sorted(set(surfaces), key=lambda s: (-len(s), s))
    if not surfaces or "" in surfaces or any(c.lower() != c.upper() and not ("a" <= c <= "z") for s in surfaces for c in s):
        return "|".join(re.escape(s) for s in surfaces)
    trie: dict = {}
    for s in surfaces:
        node = trie
        for ch in s:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict) -> str:
        alts = [re.escape(ch) + render(node[ch]) for ch in sorted(k for k in node if k)]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + body + "|)" if "" in node else body  # (?:x|): x, else nothing (greedy, like x?)

    return render(trie)


class QuantityNormalizer:
    """Finds and normalises quantities (``500 ml``) and dimensions (``10 x 20 cm``) in text.

    Args:
        units: the unit table (default: the bundled one, see :func:`load_units`).

    Attributes:
        quantity_re: compiled pattern; groups ``a`` (number), ``b`` (optional range end),
            ``u`` (unit).
        dimension_re: compiled pattern for ``N x N [x N] [unit]``.
    """

    def __init__(self, units: dict[str, Unit] | None = None) -> None:
        self.units = units if units is not None else load_units()
        #: canonical strings already computed, by the match groups they depend on (see quantity())
        self._memo: dict[tuple, str | None] = {}
        spaced = [s for s in self.units if s not in NO_SPACE_UNITS]
        tight = [s for s in self.units if s in NO_SPACE_UNITS]
        latin_spaced = [s for s in spaced if not _CJK.search(s)]
        cjk = [s for s in spaced if _CJK.search(s)]
        unit_re = (
            rf"(?:\s*(?P<u>{_alternation(latin_spaced)})(?![a-z])"
            rf"|\s*(?P<uc>{_alternation(cjk)})"
            rf"|(?P<ut>{_alternation(tight)})(?![a-z]))"
        )
        self.quantity_re = re.compile(
            rf"(?<![0-9A-Za-z_.,\-])(?P<a>{_NUM})(?:\s*(?:-|~|–|to|s/d|sd|sampai)\s*(?P<b>{_NUM}))?{unit_re}",
            re.IGNORECASE,
        )
        length = [s for s, u in self.units.items() if u.canonical in ("cm", "in")]
        len_alt = _alternation(length)
        self.dimension_re = re.compile(
            rf"(?<![0-9A-Za-z_.,])(?P<a>{_NUM})\s*(?P<ua>{len_alt})?\s*[x×*]\s*(?P<b>{_NUM})\s*(?P<ub>{len_alt})?"
            rf"(?:\s*[x×*]\s*(?P<c>{_NUM})\s*(?P<uc>{len_alt})?)?(?![a-z\d])",
            re.IGNORECASE,
        )

    def convert(self, number: str, unit: str) -> tuple[Decimal, str]:
        """Convert ``number`` written in ``unit`` to ``(value, canonical unit)``.

        Raises:
            KeyError: unknown unit. ValueError: ``number`` is not a number.
        """
        u = self.units[unit.lower()]
        return parse_number(number) * u.factor, u.canonical

    def quantity(self, m: re.Match) -> str | None:
        """Canonical string of a :attr:`quantity_re` match (``"0.5 l"``, ``"5-20 kg"``), or ``None``."""
        key = m.group("a", "b", "u", "uc", "ut")  # the value depends on these only
        memo = self._memo
        if key in memo:
            return memo[key]
        value = self._quantity(m)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[key] = value
        return value

    def _quantity(self, m: re.Match) -> str | None:
        unit = m.group("u") or m.group("uc") or m.group("ut")
        try:
            a, cu = self.convert(m.group("a"), unit)
            if m.group("b"):
                b, _ = self.convert(m.group("b"), unit)
                return f"{format_number(a)}-{format_number(b)} {cu}"
        except (KeyError, ValueError):
            return None
        return f"{format_number(a)} {cu}"

    def dimension(self, m: re.Match) -> str | None:
        """Canonical string of a :attr:`dimension_re` match: ``"15 x 10 x 5 cm"``; unitless ``"20 x 30"``."""
        key = ("x", *m.group("a", "ua", "b", "ub", "c", "uc"))  # the value depends on these only
        memo = self._memo
        if key in memo:
            return memo[key]
        value = self._dimension(m)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[key] = value
        return value

    def _dimension(self, m: re.Match) -> str | None:
        pairs = [(m.group(k), m.group("u" + k)) for k in ("a", "b", "c") if m.group(k)]
        try:
            if not any(u for _, u in pairs):
                return " x ".join(format_number(parse_number(n)) for n, _ in pairs)
            # a number without its own unit takes the next unit written after it ("10 x 20 cm"),
            # or the last one ("45cm x 10" -> cm); each number is converted on its own ("45cm x 10m")
            conv = []
            for i, (n, u) in enumerate(pairs):
                unit = u or next((uu for _, uu in pairs[i:] if uu), None) or next(uu for _, uu in reversed(pairs) if uu)
                conv.append(self.convert(n, unit))
        except (KeyError, ValueError):
            return None
        if len({cu for _, cu in conv}) != 1:
            return None
        return " x ".join(format_number(v) for v, _ in conv) + f" {conv[0][1]}"

    def normalize(self, text: str) -> str | None:
        """Canonical form of the first dimension or quantity in ``text`` (``"500ml"`` -> ``"0.5 l"``).

        Returns:
            The canonical string, or ``None`` when ``text`` holds no quantity.
        """
        m = self.dimension_re.search(text)
        if m:
            return self.dimension(m)
        m = self.quantity_re.search(text)
        return self.quantity(m) if m else None


_DEFAULT: QuantityNormalizer | None = None


def normalize_quantity(text: str) -> str | None:
    """Canonical quantity of ``text`` with the bundled unit table (``"1000 gr"`` -> ``"1 kg"``)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = QuantityNormalizer()
    return _DEFAULT.normalize(text)
