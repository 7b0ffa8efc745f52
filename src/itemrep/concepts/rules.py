"""Offline rule-based CHIE extractor: titles and texts -> primary / auxiliary concepts.

FITRep's CHIE (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1) separates what an item *is* (primary
concepts: category, brand, model, specification, colour, variant, pack size) from how it is sold
(auxiliary concepts: promotions, shipping, seller tags, stock claims, emoji). The paper uses an LLM;
this module is the offline default that needs no model.

It is data-driven: everything language-specific lives in ``lexicon/`` (word lists per language and
slot, the unit table, and ``pipeline.json`` which lists the stages and their regular expressions).
The engine below is small:

1. the text is cleaned (:func:`itemrep.catalog.clean_text`: byte escapes, HTML entities, NFKC);
2. each stage of ``pipeline.json`` runs one precompiled pattern over the text; every match becomes
   a concept and its span is *claimed* (masked), so later stages only see what is left;
3. the ``lexicon`` stage is one combined, trie-shaped alternation of every phrase of every word list
   (longest match wins; a phrase listed in two lists goes to the slot listed first in
   ``slots.json`` ``priority``);
4. the words nobody claimed become the ``name`` slot (lower-cased, original order, repeats dropped);
   optionally (``brand_guess=True``, off by default), when no listed brand was found, a capitalised
   first word that no lexicon knows is taken as the brand.

Concepts are returned in reading order; a repeated ``(slot, value)`` is kept once.
See ``docs/concepts.md`` for the data, how the lists were built and measured figures.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

from itemrep.catalog import Item, clean_text
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import Concept, ConceptHierarchy
from itemrep.concepts.units import QuantityNormalizer, load_units

__all__ = ["RuleBasedExtractor", "Lexicon", "LexiconEntry"]

#: Claimed characters are replaced by this (same length, so offsets stay valid). NUL, because it is
#: neither a word character nor whitespace for ``re`` (``\x1f`` would match ``\s``).
MASK = "\x00"
_SEP = r"[\s_\-]{0,2}"  # a space inside a phrase also matches "", "-", "_" ("ready-stock", "readystock")
_LATIN = "0-9a-z\u00c0-\u024f"
_CJK_RE = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOKEN_RE = re.compile(rf"[{_LATIN}]+(?:['’][{_LATIN}]+)*|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_]+", re.IGNORECASE)
_TOKEN = _TOKEN_RE.pattern
#: a run of tokens separated only by spaces or hyphens: one ``name`` concept
_CHUNK_RE = re.compile(rf"(?:{_TOKEN})(?:[ \-]+(?:{_TOKEN}))*", re.IGNORECASE)
_KEY_DROP = re.compile(r"[\s_\-]+")
_MAX_VALUE = 512


def _key(phrase: str) -> str:
    """Lookup key of a phrase or a matched span: lower-case, spaces/hyphens/underscores dropped."""
    return _KEY_DROP.sub("", phrase.lower())


def _norm_phrase(phrase: str) -> str:
    p = unicodedata.normalize("NFKC", phrase).lower().replace("_", " ").replace("-", " ")
    return " ".join(p.split())


class LexiconEntry(NamedTuple):
    """What one lexicon phrase means: its slot, normalised value and optional kind/facet override."""

    slot: str
    value: str
    kind: str | None
    facet: str | None


def _trie_regex(phrases: Sequence[str]) -> str:
    """One regular expression matching any of ``phrases``, factored as a character trie.

    A plain alternation of thousands of literals is tried branch by branch at every position; the
    trie shape shares prefixes, so the engine inspects each character once per position. Optional
    endings are greedy, so the longest phrase wins; a space matches :data:`_SEP`.
    """
    trie: dict = {}
    for p in phrases:
        node = trie
        for ch in p:
            node = node.setdefault(ch, {})
        node[""] = True

    def render(node: dict) -> str:
        end = "" in node
        alts = []
        for ch in sorted(k for k in node if k):
            alts.append((_SEP if ch == " " else re.escape(ch)) + render(node[ch]))
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:
            body = body + "?" if len(alts) == 1 and len(alts[0]) == 1 else "(?:" + body + ")?"
        return body

    return render(trie)


class Lexicon:
    """All phrase lists of a lexicon directory, compiled into one matcher.

    Files: ``<lang>/<slot>.tsv`` (any language folder; ``common/`` for language-neutral lists) and
    optional ``<lang>/words.txt`` (generic words, one per line, that are not brands).
    Each line: ``phrase[<TAB>value[<TAB>flags]]``; ``value`` defaults to the phrase; ``flags`` is a
    comma list of ``subjective``/``objective``/``form``/``content``; ``#`` starts a comment.

    Args:
        root: the lexicon directory (a :class:`~pathlib.Path` or an importlib resource).
        priority: slot order used when one phrase appears in several lists (first wins).

    Attributes:
        entries: lookup key -> :class:`LexiconEntry`.
        latin_lower, latin_ci, cjk: compiled trie patterns (see :meth:`finditer`); ``None`` when empty.
        words: every single word of every phrase plus the plain word lists ``<lang>/words.txt``
            (the dictionary of the brand guess: a listed word is never guessed as a brand).
        sources: ``"<lang>/<slot>.tsv"`` -> number of phrases read.
        conflicts: phrases listed twice in one slot with different values (the first one is kept);
            a lint test keeps the bundled lexicon free of them.

    Raises:
        ValueError: a malformed line (file and line number in the message).
    """

    FLAGS = {"subjective": ("kind", "subjective"), "objective": ("kind", "objective"), "form": ("facet", "form"), "content": ("facet", "content")}

    def __init__(self, root: Path | Traversable, priority: Sequence[str]) -> None:
        rank = {s: i for i, s in enumerate(priority)}
        self.entries: dict[str, LexiconEntry] = {}
        self.sources: dict[str, int] = {}
        self.conflicts: list[str] = []
        phrases: dict[str, str] = {}  # normalised phrase -> key
        for lang_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
            for f in sorted((f for f in lang_dir.iterdir() if f.name.endswith(".tsv")), key=lambda f: f.name):
                slot = f.name[: -len(".tsv")]
                n = 0
                for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    parts = [p.strip() for p in line.split("\t")]
                    phrase = _norm_phrase(parts[0])
                    if not phrase:
                        raise ValueError(f"{lang_dir.name}/{f.name}:{lineno}: empty phrase")
                    value = _norm_phrase(parts[1]) if len(parts) > 1 and parts[1] else phrase
                    kind = facet = None
                    for flag in (x.strip() for x in (parts[2].split(",") if len(parts) > 2 else []) if x.strip()):
                        if flag not in self.FLAGS:
                            raise ValueError(f"{lang_dir.name}/{f.name}:{lineno}: unknown flag {flag!r} (use {', '.join(self.FLAGS)})")
                        field, v = self.FLAGS[flag]
                        kind, facet = (v, facet) if field == "kind" else (kind, v)
                    key = _key(phrase)
                    old = self.entries.get(key)
                    where = f"{lang_dir.name}/{f.name}:{lineno}"
                    if old is not None and old[0] == slot and old[1] != value:
                        self.conflicts.append(f"{where}: {phrase!r} -> {value!r}, but listed before as {old[1]!r}")
                    if old is None or rank.get(slot, len(rank)) < rank.get(old[0], len(rank)):
                        self.entries[key] = LexiconEntry(slot, value, kind, facet)
                    phrases.setdefault(phrase, key)
                    n += 1
                self.sources[f"{lang_dir.name}/{f.name}"] = n
        latin = [p for p in phrases if not _CJK_RE.match(p)]
        cjk = [p for p in phrases if _CJK_RE.match(p)]
        # Latin-script phrases need word boundaries; CJK phrases (no spaces) do not. Two patterns,
        # because a CJK branch tried at every position of every Latin title is the slow part.
        latin_re = rf"(?<![{_LATIN}])(?:{_trie_regex(latin)})(?![{_LATIN}])" if latin else None
        #: Latin phrases, for lower-cased text (fast path) and, case-insensitive, for the rare text
        #: whose lower-casing changes its length.
        self.latin_lower = re.compile(latin_re) if latin_re else None
        self.latin_ci = re.compile(latin_re, re.IGNORECASE) if latin_re else None
        #: CJK phrases (run only on text that contains CJK characters).
        self.cjk = re.compile(_trie_regex(cjk), re.IGNORECASE) if cjk else None
        words = {w for p in phrases for w in p.split()}
        for lang_dir in root.iterdir():
            f = lang_dir.joinpath("words.txt") if lang_dir.is_dir() else None
            if f is not None and f.is_file():
                words.update(w.strip().lower() for w in f.read_text(encoding="utf-8").splitlines() if w.strip() and not w.startswith("#"))
        self.words = frozenset(words)

    def finditer(self, text: str):
        """Matches of every phrase in ``text`` (any case), left to right, longest first, as
        ``(start, end)`` spans; Latin phrases first, then CJK ones in the text not yet matched."""
        spans: list[tuple[int, int]] = []
        if self.latin_lower is not None:
            low = text.lower()
            it = self.latin_lower.finditer(low) if len(low) == len(text) else self.latin_ci.finditer(text)
            spans.extend(m.span() for m in it)
        if self.cjk is not None and _CJK_RE.search(text):
            taken = spans[:]
            for m in self.cjk.finditer(text):
                if not any(s < m.end() and m.start() < e for s, e in taken):
                    spans.append(m.span())
            spans.sort()
        return spans

    def lookup(self, span: str) -> LexiconEntry | None:
        """The entry of a matched span (``"Ready-Stock"`` -> ``("stock", "ready stock", ...)``)."""
        return self.entries.get(_key(span))


def _default_lexicon_dir() -> Traversable:
    return resources.files("itemrep.concepts").joinpath("lexicon")


def _read_json(root: Path | Traversable, name: str) -> dict:
    try:
        return json.loads(root.joinpath(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{root}/{name}: missing lexicon file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{root}/{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def _validated_concept(fields: dict) -> Concept:
    return Concept(**fields)


def _fast_concept(fields: dict) -> Concept:
    """A :class:`Concept` from fields the engine itself produced, without re-validation.

    pydantic's validation is a third of the extraction time and the engine's values are valid by
    construction (slots from ``slots.json``, non-empty lower-cased values). This sets exactly what
    ``Concept.model_construct`` sets when every field is given; :func:`_pick_constructor` checks it
    against a validated instance at import and falls back to validation if pydantic changes.
    """
    c = _new(Concept)
    _setattr(c, "__dict__", fields)
    _setattr(c, "__pydantic_fields_set__", set(_ALL_FIELDS))
    _setattr(c, "__pydantic_extra__", None)
    _setattr(c, "__pydantic_private__", None)
    return c


_new = object.__new__
_setattr = object.__setattr__
_ALL_FIELDS = frozenset(Concept.model_fields)


def _pick_constructor() -> Callable[[dict], Concept]:
    probe = {"slot": "brand", "value": "x", "raw": "X", "level": "primary", "facet": "content", "kind": "objective", "source": "title", "salience": 1.0}
    try:
        fast, slow = _fast_concept(dict(probe)), _validated_concept(dict(probe))
        same = fast == slow and fast.model_dump() == slow.model_dump() and fast.model_fields_set == slow.model_fields_set
        if same and fast.model_copy(update={"value": "y"}) == slow.model_copy(update={"value": "y"}):
            return _fast_concept
    except Exception:  # noqa: BLE001 - any surprise: use the validated path
        pass
    return _validated_concept


_make_concept = _pick_constructor()


class _Ctx:
    """Per-text state while the stages run."""

    __slots__ = ("text", "low", "work", "found", "source", "has_brand", "first_primary")

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.low = text.lower()
        self.work = text
        self.found: list[tuple[int, Concept]] = []
        self.source = source
        self.has_brand = False
        self.first_primary = len(text)


_NORMS: dict[str, Callable[[str], str]] = {
    "lower": lambda s: " ".join(s.lower().split()),
    "collapse": lambda s: " ".join(s.lower().split()),
    "alnum": lambda s: re.sub(r"[\s\-./]+", "", s.lower()),
    "squeeze": lambda s: "".join(dict.fromkeys(s)),
    "emoji": lambda s: s.replace("\ufe0f", "").replace("\u200d", ""),
}


def _prefilter(needs: Sequence[str] | None) -> Callable[[str], object] | None:
    """A cheap test run before a stage's pattern: ``search`` of one compiled alternation that is
    true when any of the substrings ``needs`` occurs in the lower-cased text (``"<digit>"``: a
    digit; ``"<non-ascii>"``: a non-ASCII character)."""
    if not needs:
        return None
    special = {"<digit>": r"\d", "<non-ascii>": r"[^\x00-\x7f]"}
    alts = [special.get(n) or re.escape(n.lower()) for n in needs]
    return re.compile("|".join(alts)).search


class RuleBasedExtractor(ConceptExtractor):
    """Offline default CHIE back-end: lexicons + regular expressions, no model.

    Args:
        lexicon_dir: a directory laid out like the bundled ``itemrep/concepts/lexicon`` (``slots.json``,
            ``pipeline.json``, ``units.tsv``, ``<lang>/<slot>.tsv``); ``None`` uses the bundled one.
        brand_guess: guess a brand from a capitalised first word no lexicon knows, when no listed
            brand was found. Off by default: on the Shopee listings it doubles the coverage of the
            brand slot (22% -> 50%) but same-product pairs then agree on their brand only 84% of
            the time instead of 98% (it picks up shop names and misspellings), and the TF-IDF
            dedup proxy does not change (``docs/concepts.md``).

    The lexicons are read and compiled once, in the constructor (about 0.1 s).

    Raises:
        FileNotFoundError, ValueError: a missing or malformed lexicon file (named in the message).
    """

    name = "rules"
    version = "9"

    def __init__(self, lexicon_dir: Path | None = None, *, brand_guess: bool = False) -> None:
        super().__init__()
        root = Path(lexicon_dir) if lexicon_dir is not None else _default_lexicon_dir()
        slots_cfg = _read_json(root, "slots.json")
        self._slot_meta: dict[str, dict] = slots_cfg["slots"]
        self.lexicon = Lexicon(root, slots_cfg.get("priority", []))
        units_path = root.joinpath("units.tsv")
        self.quantities = QuantityNormalizer(load_units(Path(str(units_path))) if lexicon_dir is not None else load_units())
        pipe = _read_json(root, "pipeline.json")
        self._allcaps = pipe.get("allcaps")
        self.brand_guess = brand_guess
        self._stages: list[tuple[str, dict, Callable[[_Ctx], None]]] = []
        for i, st in enumerate(pipe["stages"]):
            kind = st.get("type")
            builder = getattr(self, f"_build_{kind}", None)
            if builder is None:
                raise ValueError(f"{root}/pipeline.json: stage {i} ({st.get('name')!r}) has unknown type {kind!r}")
            try:
                fn = builder(st)
            except re.error as e:
                raise ValueError(f"{root}/pipeline.json: stage {i} ({st.get('name')!r}): bad pattern: {e}") from None
            if fn is not None:
                self._stages.append((st.get("name", kind), st, fn))

    # ------------------------------------------------------------------ concept helpers
    def _concept(self, ctx: _Ctx, start: int, slot: str, value: str, raw: str | None, kind: str | None = None, facet: str | None = None) -> None:
        if not value:
            return
        meta = self._slot_meta.get(slot, {})
        level = meta.get("level", "primary")
        c = _make_concept(
            {
                "slot": slot,
                "value": value[:_MAX_VALUE],
                "raw": raw,
                "level": level,
                "facet": facet or meta.get("facet", "content"),
                "kind": kind or meta.get("kind", "objective"),
                "source": ctx.source,
                "salience": 1.0,
            }
        )
        ctx.found.append((start, c))
        if slot == "brand":
            ctx.has_brand = True
        if level == "primary" and slot not in ("brand", "name") and start < ctx.first_primary:
            ctx.first_primary = start

    @staticmethod
    def _claim(m: re.Match) -> str:
        return MASK * (m.end() - m.start())

    # ------------------------------------------------------------------ stage builders
    def _build_regex(self, st: dict) -> Callable[[_Ctx], None]:
        flags = 0 if "c" in st.get("flags", "i") else re.IGNORECASE
        pat = re.compile(st["pattern"], flags)
        slot, template = st.get("slot"), st.get("value", "{0}")
        norm = _NORMS[st.get("norm", "lower")]
        mult, default = st.get("multiply"), st.get("default")
        kind, facet = st.get("kind"), st.get("facet")
        needs = _prefilter(st.get("needs"))

        def run(ctx: _Ctx) -> None:
            if needs is not None and needs(ctx.low) is None:
                return

            def cb(m: re.Match) -> str:
                if slot is None:  # a stage that only removes (e.g. a function word left over)
                    return MASK * (m.end() - m.start())
                groups = [m.group(0), *m.groups()]
                if mult is not None:
                    n = groups[1] if len(groups) > 1 and groups[1] else default
                    groups = [groups[0], str(int(n) * int(mult))]
                value = norm(template.format(*[g or "" for g in groups]))
                self._concept(ctx, m.start(), slot, value, ctx.text[m.start() : m.end()], kind, facet)
                return MASK * (m.end() - m.start())

            ctx.work = pat.sub(cb, ctx.work)

        return run

    def _build_brackets(self, st: dict) -> Callable[[_Ctx], None]:
        pat = re.compile(st["pattern"])
        slot, facet, max_tokens = st.get("slot", "seller"), st.get("facet", "form"), int(st.get("max_tokens", 4))
        lex = self.lexicon

        needs = _prefilter(st.get("needs"))

        def run(ctx: _Ctx) -> None:
            if needs is not None and needs(ctx.low) is None:
                return
            work = ctx.work
            n = len(work)

            def cb(m: re.Match) -> str:
                inner = m.group(1)
                s, e = m.start(1), m.end(1)
                tokens = _TOKEN_RE.findall(inner)
                at_edge = not work[: m.start()].strip(" " + MASK) or not work[m.end() : n].strip(" " + MASK)
                # any listed phrase inside ("[READY STOCK]", "[Speaker Mini]") means it is read as text
                known = any((ent := lex.lookup(inner[a:b])) is not None and ent[0] != "stopword" for a, b in lex.finditer(inner))
                if tokens and at_edge and len(tokens) <= max_tokens and not known:
                    # a shop tag: "[SYB]", "【Toko Abadi】" -- the whole bracket is claimed
                    self._concept(ctx, m.start(), slot, " ".join(t.lower() for t in tokens), ctx.text[m.start() : m.end()], None, facet)
                    return MASK * (m.end() - m.start())
                # otherwise only the brackets are decoration; the inside is read by later stages
                return MASK * (s - m.start()) + inner + MASK * (m.end() - e)

            ctx.work = pat.sub(cb, work)

        return run

    def _build_dimension(self, st: dict) -> Callable[[_Ctx], None]:
        return self._build_quantity(st, dimension=True)

    def _build_quantity(self, st: dict, dimension: bool = False) -> Callable[[_Ctx], None]:
        q = self.quantities
        pat = q.dimension_re if dimension else q.quantity_re
        conv = q.dimension if dimension else q.quantity
        slot = st.get("slot", "spec")

        def run(ctx: _Ctx) -> None:
            if not _HAS_DIGIT(ctx.work):
                return

            def cb(m: re.Match) -> str:
                value = conv(m)
                if value is None:
                    return m.group(0)
                self._concept(ctx, m.start(), slot, value, ctx.text[m.start() : m.end()])
                return MASK * (m.end() - m.start())

            ctx.work = pat.sub(cb, ctx.work)

        return run

    def _build_lexicon(self, st: dict) -> Callable[[_Ctx], None] | None:
        lex = self.lexicon
        if not lex.entries:
            return None

        def run(ctx: _Ctx) -> None:
            work = ctx.work
            pieces: list[str] = []
            pos = 0
            for a, b in lex.finditer(work):
                ent = lex.lookup(work[a:b])
                if ent is None:  # cannot happen: every trie path ends on a listed phrase
                    continue
                if ent[0] != "stopword":
                    self._concept(ctx, a, ent[0], ent[1], ctx.text[a:b], ent[2], ent[3])
                pieces.append(work[pos:a])
                pieces.append(MASK * (b - a))
                pos = b
            if pieces:
                pieces.append(work[pos:])
                ctx.work = "".join(pieces)

        return run

    def _build_brand_guess(self, st: dict) -> Callable[[_Ctx], None] | None:
        if not self.brand_guess:
            return None
        min_len = int(st.get("min_len", 3))
        slot = st.get("slot", "brand")
        words = self.lexicon.words

        def run(ctx: _Ctx) -> None:
            if ctx.has_brand or ctx.source not in ("title", "ocr"):
                return
            m = _TOKEN_RE.search(ctx.work)
            if m is None or m.start() > ctx.first_primary:
                return
            w = m.group(0)
            if len(w) < min_len or not w[0].isupper() or not w.isalpha() or w.lower() in words or _CJK_RE.match(w):
                return
            self._concept(ctx, m.start(), slot, w.lower(), w)
            ctx.work = ctx.work[: m.start()] + MASK * len(w) + ctx.work[m.end() :]

        return run

    def _build_name(self, st: dict) -> Callable[[_Ctx], None]:
        slot = st.get("slot", "name")

        def run(ctx: _Ctx) -> None:
            seen: set[str] = set()
            for m in _CHUNK_RE.finditer(ctx.work):
                toks = [t for t in _TOKEN_RE.findall(m.group(0).lower()) if not (t in seen or seen.add(t))]
                if toks:
                    self._concept(ctx, m.start(), slot, " ".join(toks), m.group(0))

        return run

    # ------------------------------------------------------------------ public API
    def concepts_from_text(self, text: str, source: str = "title") -> list[Concept]:
        """Concepts of one piece of text (a title, a description, OCR output).

        Args:
            text: raw or cleaned text; it is cleaned again (idempotent) so byte escapes and HTML
                entities are decoded.
            source: recorded in every concept (``"title"``, ``"text"``, ``"ocr"`` ...).

        Returns:
            Concepts in reading order (a repeated ``(slot, value)`` kept once); ``[]`` for empty text.
        """
        text = clean_text(text)
        if MASK in text:  # the engine's own marker must not occur in the input
            text = text.replace(MASK, " ").strip()
        if not text:
            return []
        ctx = _Ctx(text, source)
        for _name, _st, fn in self._stages:
            fn(ctx)
        if self._allcaps:
            self._check_allcaps(ctx)
        ctx.found.sort(key=lambda t: t[0])
        out: list[Concept] = []
        seen: set[tuple[str, str]] = set()
        for _, c in ctx.found:
            k = (c.slot, c.value)
            if k not in seen:
                seen.add(k)
                out.append(c)
        return out

    def _check_allcaps(self, ctx: _Ctx) -> None:
        cfg = self._allcaps
        upper = len(_UPPER_RE.findall(ctx.text))
        lower = len(_LOWER_RE.findall(ctx.text))
        if upper + lower < int(cfg.get("min_letters", 12)):
            return
        if upper / (upper + lower) >= float(cfg.get("min_ratio", 0.85)):
            self._concept(ctx, len(ctx.text), cfg.get("slot", "style"), cfg.get("value", "all caps"), None)

    def extract_one(self, item: Item) -> ConceptHierarchy:
        """Concept hierarchy of one item: concepts of ``item.title`` (source ``"title"``) then of
        ``item.text`` (source ``"text"``)."""
        concepts = self.concepts_from_text(item.title, "title")
        if item.text:
            concepts += self.concepts_from_text(item.text, "text")
        return ConceptHierarchy(item_id=str(item.item_id), concepts=concepts, extractor=self.identifier)


_HAS_DIGIT = re.compile(r"\d").search
_UPPER_RE = re.compile("[A-Z]")
_LOWER_RE = re.compile("[a-z]")
