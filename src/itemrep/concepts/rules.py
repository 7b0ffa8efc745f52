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

Speed (the output is the same as that of the plain loop described above, concept for concept):
the stages run as one generated function (:meth:`_Engine._source`) with each stage's pre-tests
in line: its ``needs`` substrings, "a digit is left" for patterns that cannot match without one
(:func:`_digit_gate`), and a character-class prefilter that ``re`` scans for fast
(:func:`_candidate_re`); lexicon lookups and unit conversions are memoised; concepts are built
without re-validation; :meth:`RuleBasedExtractor.extract_records` skips pydantic objects entirely.
"""

from __future__ import annotations

import gc
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

from itemrep.catalog import Item, clean_text
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import Concept, ConceptHierarchy
from itemrep.concepts.units import QuantityNormalizer, load_units

try:  # the parser of the re module (private; 3.11+): only used to derive stage prefilters
    from re import _constants as _sre_c
    from re import _parser as _sre_p
except ImportError:  # pragma: no cover - another Python: the stages run without prefilters
    _sre_c = _sre_p = None

__all__ = ["RuleBasedExtractor", "Lexicon", "LexiconEntry", "RECORD_COLUMNS"]

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
        # (one group around the phrase: the engine splits text with it, see RuleBasedExtractor)
        latin_re = rf"(?<![{_LATIN}])({_trie_regex(latin)})(?![{_LATIN}])" if latin else None
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


# ---------------------------------------------------------------------------- concept objects
def _pydantic_slot(name: str) -> Callable[[object, object], None]:
    for klass in Concept.__mro__:
        if name in vars(klass):
            return vars(klass)[name].__set__
    raise KeyError(name)


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
    _set_dict(c, fields)
    _set_fields_set(c, _copy_all_fields())
    _set_extra(c, None)
    _set_private(c, None)
    return c


_new = object.__new__
_setattr = object.__setattr__
_ALL_FIELDS = frozenset(Concept.model_fields)
_copy_all_fields = set(_ALL_FIELDS).copy
try:  # the setters of the instance slots pydantic declares (what object.__setattr__ looks up each time)
    _set_dict = _pydantic_slot("__dict__")
    _set_fields_set = _pydantic_slot("__pydantic_fields_set__")
    _set_extra = _pydantic_slot("__pydantic_extra__")
    _set_private = _pydantic_slot("__pydantic_private__")
except (AttributeError, KeyError, TypeError):  # another pydantic layout: generic attribute setting
    _set_dict, _set_fields_set, _set_extra, _set_private = (
        (lambda name: lambda obj, v: _setattr(obj, name, v))(n) for n in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    )


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

_H_SET = ("item_id", "concepts", "extractor")


def _validated_hierarchy(item_id: str, concepts: list[Concept], extractor: str) -> ConceptHierarchy:
    return ConceptHierarchy(item_id=item_id, concepts=concepts, extractor=extractor)


def _fast_hierarchy(item_id: str, concepts: list[Concept], extractor: str) -> ConceptHierarchy:
    """``ConceptHierarchy(item_id=..., concepts=..., extractor=...)`` without re-validation (the
    engine's ids are ``str``, its concepts are :class:`Concept` instances); checked like
    :func:`_fast_concept` by :func:`_pick_hierarchy_constructor`."""
    h = _new(ConceptHierarchy)
    _set_dict(h, {"item_id": item_id, "concepts": concepts, "extractor": extractor, "schema_version": _H_SCHEMA, "error": None})
    _set_fields_set(h, set(_H_SET))
    _set_extra(h, None)
    _set_private(h, None)
    return h


def _pick_hierarchy_constructor() -> Callable[[str, list[Concept], str], ConceptHierarchy]:
    try:
        fields = ConceptHierarchy.model_fields
        if list(fields) != ["item_id", "concepts", "extractor", "schema_version", "error"] or fields["error"].default is not None:
            return _validated_hierarchy
        cs = [_make_concept({"slot": "brand", "value": "x", "raw": "X", "level": "primary", "facet": "content", "kind": "objective", "source": "title", "salience": 1.0})]
        fast, slow = _fast_hierarchy("1", list(cs), "rules/x"), _validated_hierarchy("1", list(cs), "rules/x")
        same = fast == slow and fast.model_dump() == slow.model_dump() and fast.model_fields_set == slow.model_fields_set
        if same and fast.model_dump_json() == slow.model_dump_json() and fast.merged(slow) == slow.merged(fast):
            return _fast_hierarchy
    except Exception:  # noqa: BLE001 - any surprise: use the validated path
        pass
    return _validated_hierarchy


_H_SCHEMA = ConceptHierarchy.model_fields["schema_version"].default
_make_hierarchy = _pick_hierarchy_constructor()

#: Columns of :meth:`RuleBasedExtractor.extract_records` rows (the concept table of
#: :func:`itemrep.dedup.pipeline.concepts_table`).
RECORD_COLUMNS = ("item_id", "slot", "value", "raw", "level", "facet", "kind", "source", "salience", "extractor", "error")

# ---------------------------------------------------------------------------- the engine
_NORMS: dict[str, Callable[[str], str]] = {
    "lower": lambda s: " ".join(s.lower().split()),
    "collapse": lambda s: " ".join(s.lower().split()),
    "alnum": lambda s: re.sub(r"[\s\-./]+", "", s.lower()),
    "squeeze": lambda s: "".join(dict.fromkeys(s)),
    "emoji": lambda s: s.replace("\ufe0f", "").replace("\u200d", ""),
}

_HAS_DIGIT = re.compile(r"\d").search
_UPPER_B = bytes(range(ord("A"), ord("Z") + 1))
_LOWER_B = bytes(range(ord("a"), ord("z") + 1))
#: :data:`_CHUNK_RE` for lower-cased ASCII text (same spans there: case folding and the non-ASCII
#: branches of :data:`_TOKEN` do not matter); it starts with a character class, which ``re`` scans fast.
_CHUNK_ASCII_RE = re.compile(r"([0-9a-z]+(?:'[0-9a-z]+)*(?:[ \-]+[0-9a-z]+(?:'[0-9a-z]+)*)*)")
_START = itemgetter(0)
_NOENT = object()  # lexicon span cache: no entry (span left unclaimed)
_STOP = object()  # lexicon span cache: claimed, no concept (stop word, empty value)
_LEX_CACHE_MAX = 200_000

# stage codes
_REGEX, _BRACKETS, _QUANTITY, _LEXICON, _BRAND, _NAME = range(6)


# ---------------------------------------------------------------------------- stage prefilters
# Most stage patterns start with a look-behind (``(?<![0-9A-Za-z_...])\d...``). ``re`` then runs its
# matcher at every position of the text, which costs about as much as the rest of a stage. A pattern
# that starts with a character class instead is scanned for by a tight C loop. _candidate_re derives,
# from the parsed pattern, such a class-first pattern that matches (one character) at every position
# where the stage pattern can start a match: the characters a match can begin with, behind the same
# look-behind. The stage pattern is then searched from the first candidate only, and not at all
# without one; both give the same first match, so the stage output does not change.


class _Unknown(Exception):
    """A construct :func:`_candidate_re` does not analyse (the stage then runs without prefilter)."""


_CATEGORY_SRC = (
    {
        _sre_c.CATEGORY_DIGIT: r"\d",
        _sre_c.CATEGORY_NOT_DIGIT: r"\D",
        _sre_c.CATEGORY_SPACE: r"\s",
        _sre_c.CATEGORY_NOT_SPACE: r"\S",
        _sre_c.CATEGORY_WORD: r"\w",
        _sre_c.CATEGORY_NOT_WORD: r"\W",
    }
    if _sre_c is not None
    else {}
)


def _char_src(c: int) -> str:
    return r"\x00" if c == 0 else re.escape(chr(c))


def _element_src(op, av) -> str:
    """Source of a one-character pattern matching what the parsed element ``(op, av)`` matches."""
    if op is _sre_c.LITERAL:
        return _char_src(av)
    if op is _sre_c.NOT_LITERAL:
        return "[^" + _char_src(av) + "]"
    if op is _sre_c.IN:
        parts = []
        for o, a in av:
            if o is _sre_c.NEGATE:
                parts.insert(0, "^")
            elif o is _sre_c.LITERAL:
                parts.append(_char_src(a))
            elif o is _sre_c.RANGE:
                parts.append(_char_src(a[0]) + "-" + _char_src(a[1]))
            elif o is _sre_c.CATEGORY and a in _CATEGORY_SRC:
                parts.append(_CATEGORY_SRC[a])
            else:
                raise _Unknown(o)
        return "[" + "".join(parts) + "]"
    raise _Unknown(op)


def _first_chars(seq) -> tuple[list, bool]:
    """The parsed elements that can match the first character consumed by a match of the parsed
    sequence ``seq``, and whether ``seq`` can match the empty string. Zero-width items (anchors,
    look-arounds) are skipped: dropping a condition only adds candidates."""
    elems: list = []
    for op, av in seq:
        if op is _sre_c.AT or op is _sre_c.ASSERT or op is _sre_c.ASSERT_NOT:
            continue
        if op is _sre_c.LITERAL or op is _sre_c.NOT_LITERAL or op is _sre_c.IN:
            elems.append((op, av))
            return elems, False
        if op is _sre_c.SUBPATTERN:
            if av[1] or av[2]:  # scoped inline flags
                raise _Unknown(op)
            e, nullable = _first_chars(av[3])
        elif op is _sre_c.BRANCH:
            res = [_first_chars(alt) for alt in av[1]]
            e = [x for r in res for x in r[0]]
            nullable = any(r[1] for r in res)
        elif op is _sre_c.MAX_REPEAT or op is _sre_c.MIN_REPEAT or op is _sre_c.POSSESSIVE_REPEAT:
            e, nullable = _first_chars(av[2])
            nullable = nullable or av[0] == 0
        elif op is _sre_c.ATOMIC_GROUP:
            e, nullable = _first_chars(av)
        else:
            raise _Unknown(op)
        elems += e
        if not nullable:
            return elems, False
    return elems, True


def _is_digit_element(op, av) -> bool:
    """Does the parsed one-character element only ever match decimal digits (``\\d``)?"""
    if op is _sre_c.LITERAL:
        return chr(av).isdecimal()
    if op is _sre_c.IN:
        for o, a in av:
            if o is _sre_c.CATEGORY and a in (_sre_c.CATEGORY_DIGIT, _sre_c.CATEGORY_UNI_DIGIT):
                continue
            if o is _sre_c.LITERAL and chr(a).isdecimal():
                continue
            if o is _sre_c.RANGE and 0x30 <= a[0] <= a[1] <= 0x39:
                continue
            return False  # NEGATE, letters, other categories
        return bool(av)
    return False


def _requires_digit(seq) -> bool:
    """Does every match of the parsed sequence ``seq`` see a decimal digit in the searched string
    (consumed, or read by a positive look-around)? Then a string without digits has no match."""
    for op, av in seq:
        if op is _sre_c.LITERAL or op is _sre_c.IN:
            if _is_digit_element(op, av):
                return True
        elif op is _sre_c.SUBPATTERN:
            if _requires_digit(av[3]):
                return True
        elif op is _sre_c.ATOMIC_GROUP:
            if _requires_digit(av):
                return True
        elif op is _sre_c.BRANCH:
            if all(_requires_digit(alt) for alt in av[1]):
                return True
        elif op is _sre_c.MAX_REPEAT or op is _sre_c.MIN_REPEAT or op is _sre_c.POSSESSIVE_REPEAT:
            if av[0] >= 1 and _requires_digit(av[2]):
                return True
        elif op is _sre_c.ASSERT:  # a positive look-ahead / look-behind reads characters of the string
            if _requires_digit(av[1]):
                return True
    return False


def _digit_gate(pat: re.Pattern) -> bool:
    """True when ``pat`` cannot match a string without decimal digits (see :func:`_requires_digit`)."""
    try:
        return _requires_digit(list(_sre_p.parse(pat.pattern, pat.flags)))
    except Exception:  # noqa: BLE001 - unknown construct: no gate
        return False


def _candidate_re(pattern: str, flags: int = 0) -> re.Pattern | None:
    """A pattern that matches one character at every position where ``pattern`` (compiled with
    ``flags``) can start a match, and maybe at others; it starts with a character class, so ``re``
    finds it fast. ``None`` when the pattern is anchored at the start (already cheap), can match the
    empty string, or uses a construct this does not analyse.

    The class holds the ASCII characters a match can start with (tried one by one against the
    pattern's own first elements, with its flags, so case folding is the pattern's) and every
    non-ASCII character; a leading one-character negative look-behind is kept, with the pattern's
    case folding.
    """
    try:
        tree = _sre_p.parse(pattern, flags)
        flags = tree.state.flags
        items = list(tree)
        if not items or (items[0][0] is _sre_c.AT and items[0][1] in (_sre_c.AT_BEGINNING, _sre_c.AT_BEGINNING_STRING)):
            return None
        behind = None
        if items[0][0] is _sre_c.ASSERT_NOT and items[0][1][0] == -1 and not flags & (re.ASCII | re.LOCALE):
            body = list(items[0][1][1])
            if len(body) == 1 and body[0][0] in (_sre_c.LITERAL, _sre_c.NOT_LITERAL, _sre_c.IN):
                behind = _element_src(*body[0])
        elems, nullable = _first_chars(items)
        if nullable or not elems:
            return None
        first = re.compile("|".join(_element_src(op, av) for op, av in elems), flags & ~re.VERBOSE)
        chars = "".join(_char_src(i) for i in range(128) if first.fullmatch(chr(i)))
        src = "[" + chars + "\x80-\U0010ffff]"
        if behind is not None:
            look = rf"(?<!{behind}[\s\S])"  # the character before the candidate
            src += "(?i:" + look + ")" if flags & re.IGNORECASE else look
        return re.compile(src)
    except (_Unknown, re.error, TypeError, ValueError, AttributeError, IndexError):
        return None


def _from_match(finditer: Callable, work: str, m: re.Match):
    """``m`` (the first match of a search of ``work``) and the matches after it: what
    ``finditer(work)`` gives from ``m`` on, without searching for ``m`` again."""
    if m.end() > m.start():
        return chain((m,), finditer(work, m.end()))
    return finditer(work, m.start())  # an empty match: let finditer step past it as it does


class _RegexStage:
    """A ``regex`` stage: every match becomes a concept (``slot`` null: is only removed) and is claimed."""

    __slots__ = ("finditer", "slot", "template", "norm", "mult", "default", "level", "facet", "kind")

    def apply(self, m: re.Match, work: str, text: str, found: list) -> str:
        slot, template, norm, mult = self.slot, self.template, self.norm, self.mult
        pieces: list[str] = []
        pos = 0
        for m in _from_match(self.finditer, work, m):
            s, e = m.span()
            if slot is not None:
                groups = [m.group(0), *m.groups()]
                if mult is not None:
                    n = groups[1] if len(groups) > 1 and groups[1] else self.default
                    groups = [groups[0], str(int(n) * int(mult))]
                value = norm(template.format(*[g or "" for g in groups]))
                if value:
                    found.append((s, slot, value[:_MAX_VALUE], text[s:e], self.level, self.facet, self.kind))
            pieces.append(work[pos:s])
            pieces.append(MASK * (e - s))
            pos = e
        pieces.append(work[pos:])
        return "".join(pieces)


class _QuantityStage:
    """A ``quantity`` / ``dimension`` stage (:mod:`itemrep.concepts.units`): a match whose units do
    not convert is left in place."""

    __slots__ = ("finditer", "conv", "slot", "level", "facet", "kind")

    def apply(self, m: re.Match, work: str, text: str, found: list) -> str:
        conv, slot = self.conv, self.slot
        pieces: list[str] = []
        pos = 0
        for m in _from_match(self.finditer, work, m):
            value = conv(m)
            if value is None:
                continue
            s, e = m.span()
            if value:
                found.append((s, slot, value[:_MAX_VALUE], text[s:e], self.level, self.facet, self.kind))
            pieces.append(work[pos:s])
            pieces.append(MASK * (e - s))
            pos = e
        if not pieces:
            return work
        pieces.append(work[pos:])
        return "".join(pieces)


class _BracketStage:
    """A ``brackets`` stage: a short bracketed run at either end of the title that no lexicon knows
    is a shop tag (claimed whole); any other bracket pair is only decoration (the brackets are claimed)."""

    __slots__ = ("finditer", "slot", "max_tokens", "lexicon", "level", "facet", "kind")

    def apply(self, m: re.Match, work: str, text: str, found: list) -> str:
        lex = self.lexicon
        n = len(work)
        pieces: list[str] = []
        pos = 0
        for m in _from_match(self.finditer, work, m):
            inner = m.group(1)
            ms, me = m.span()
            s, e = m.span(1)
            tokens = _TOKEN_RE.findall(inner)
            if (
                tokens
                and len(tokens) <= self.max_tokens
                and (not work[:ms].strip(" " + MASK) or not work[me:n].strip(" " + MASK))
                # any listed phrase inside ("[READY STOCK]", "[Speaker Mini]") means it is read as text
                and not any((ent := lex.lookup(inner[a:b])) is not None and ent[0] != "stopword" for a, b in lex.finditer(inner))
            ):
                # a shop tag: "[SYB]", "【Toko Abadi】" -- the whole bracket is claimed
                value = " ".join(t.lower() for t in tokens)
                if value:
                    found.append((ms, self.slot, value[:_MAX_VALUE], text[ms:me], self.level, self.facet, self.kind))
                repl = MASK * (me - ms)
            else:
                # otherwise only the brackets are decoration; the inside is read by later stages
                repl = MASK * (s - ms) + inner + MASK * (me - e)
            pieces.append(work[pos:ms])
            pieces.append(repl)
            pos = me
        pieces.append(work[pos:])
        return "".join(pieces)


def _cand_search(pat: re.Pattern) -> Callable[[str], re.Match | None] | None:
    cand = _candidate_re(pat.pattern, pat.flags)
    return cand.search if cand is not None else None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is extracted.

    Extraction allocates many small objects that never form cycles (reference counting frees them),
    yet they trigger collections that traverse every object of the process -- on 24k listings,
    more time than the extraction itself. The collector is switched back on afterwards (and left
    alone when it was off already).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _fingerprint(root: Path) -> tuple:
    """Names, sizes and modification times of the files of a lexicon directory (cache key)."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return tuple(out)


#: Compiled engines of this process, by lexicon (directory and contents) and options: a second
#: extractor, or one unpickled in a worker process, reuses the first one's lexicons and patterns.
_ENGINES: dict[tuple, "_Engine"] = {}


def _engine_for(lexicon_dir: Path | None, brand_guess: bool) -> "_Engine":
    if lexicon_dir is None:
        key: tuple = (None, bool(brand_guess))
    else:
        root = Path(lexicon_dir).resolve()
        key = (str(root), bool(brand_guess), _fingerprint(root))
    eng = _ENGINES.get(key)
    if eng is None:
        eng = _ENGINES[key] = _Engine(Path(lexicon_dir) if lexicon_dir is not None else None, brand_guess)
    return eng


class _Stage:
    """One stage of ``pipeline.json``, compiled: its pre-tests and the functions :meth:`_Engine.rows` calls."""

    __slots__ = ("code", "name", "needs", "digit_gate", "search", "cand", "apply", "arg")

    def __init__(self, code: int) -> None:
        self.code = code
        self.name = ""
        self.needs: list[str] = []
        self.digit_gate = False
        self.search = self.cand = self.apply = self.arg = None


class _Engine:
    """The compiled lexicons and stages of one lexicon directory (read-only once built, shared).

    Attributes:
        rows: ``rows(text, source) -> [(slot, value, raw, level, facet, kind), ...]``, the concepts of
            one text in reading order, a repeated ``(slot, value)`` kept once (what
            :meth:`RuleBasedExtractor.concepts_from_text` returns, as tuples). A function generated
            from :attr:`rows_source` (:meth:`_source`): the stages' pre-tests are written out in
            line, one ``if`` per stage, instead of a loop that unpacks and dispatches 38 stage
            descriptions per text.
    """

    def __init__(self, lexicon_dir: Path | None, brand_guess: bool) -> None:
        root = Path(lexicon_dir) if lexicon_dir is not None else _default_lexicon_dir()
        slots_cfg = _read_json(root, "slots.json")
        self.slot_meta: dict[str, dict] = slots_cfg["slots"]
        self.lexicon = Lexicon(root, slots_cfg.get("priority", []))
        units_path = root.joinpath("units.tsv")
        self.quantities = QuantityNormalizer(load_units(Path(str(units_path))) if lexicon_dir is not None else load_units())
        pipe = _read_json(root, "pipeline.json")
        self.brand_guess = brand_guess
        self.lex_cache: dict[str, object] = {}
        self.stages: list[_Stage] = []
        for i, st in enumerate(pipe["stages"]):
            kind = st.get("type")
            builder = getattr(self, f"_build_{kind}", None)
            if builder is None:
                raise ValueError(f"{root}/pipeline.json: stage {i} ({st.get('name')!r}) has unknown type {kind!r}")
            try:
                stage = builder(st)
            except re.error as e:
                raise ValueError(f"{root}/pipeline.json: stage {i} ({st.get('name')!r}): bad pattern: {e}") from None
            if stage is not None:
                stage.name = str(st.get("name", kind))
                self.stages.append(stage)
        allcaps = pipe.get("allcaps")
        self.allcaps = None
        if allcaps:
            slot = allcaps.get("slot", "style")
            self.allcaps = (int(allcaps.get("min_letters", 12)), float(allcaps.get("min_ratio", 0.85)), slot, allcaps.get("value", "all caps"), *self.meta(slot))
        self.rows_source = self._source()
        self.rows = self._compile(self.rows_source)

    # ------------------------------------------------------------------ build helpers
    def meta(self, slot: str, kind: str | None = None, facet: str | None = None) -> tuple[str, str, str]:
        """``(level, facet, kind)`` of a concept of ``slot`` (stage or lexicon overrides first)."""
        m = self.slot_meta.get(slot, {})
        return m.get("level", "primary"), facet or m.get("facet", "content"), kind or m.get("kind", "objective")

    @staticmethod
    def _scan_stage(code: int, st: dict, pat: re.Pattern, apply: Callable, gate: bool) -> "_Stage":
        stage = _Stage(code)
        stage.needs = [str(n) for n in st.get("needs") or ()] if code != _QUANTITY else []
        stage.search, stage.cand, stage.apply = pat.search, _cand_search(pat), apply
        stage.digit_gate = gate
        return stage

    def _build_regex(self, st: dict) -> "_Stage":
        flags = 0 if "c" in st.get("flags", "i") else re.IGNORECASE
        pat = re.compile(st["pattern"], flags)
        rs = _RegexStage()
        rs.finditer = pat.finditer
        rs.slot, rs.template = st.get("slot"), st.get("value", "{0}")
        rs.norm = _NORMS[st.get("norm", "lower")]
        rs.mult, rs.default = st.get("multiply"), st.get("default")
        rs.level, rs.facet, rs.kind = self.meta(rs.slot, st.get("kind"), st.get("facet")) if rs.slot is not None else (None, None, None)
        return self._scan_stage(_REGEX, st, pat, rs.apply, _digit_gate(pat))

    def _build_brackets(self, st: dict) -> "_Stage":
        pat = re.compile(st["pattern"])
        bs = _BracketStage()
        bs.finditer = pat.finditer
        bs.slot, bs.max_tokens, bs.lexicon = st.get("slot", "seller"), int(st.get("max_tokens", 4)), self.lexicon
        bs.level, bs.facet, bs.kind = self.meta(bs.slot, None, st.get("facet", "form"))
        return self._scan_stage(_BRACKETS, st, pat, bs.apply, _digit_gate(pat))

    def _build_dimension(self, st: dict) -> "_Stage":
        return self._build_quantity(st, dimension=True)

    def _build_quantity(self, st: dict, dimension: bool = False) -> "_Stage":
        q = self.quantities
        pat = q.dimension_re if dimension else q.quantity_re
        qs = _QuantityStage()
        qs.finditer = pat.finditer
        qs.conv = q.dimension if dimension else q.quantity
        qs.slot = st.get("slot", "spec")
        qs.level, qs.facet, qs.kind = self.meta(qs.slot)
        return self._scan_stage(_QUANTITY, st, pat, qs.apply, True)  # runs only on text with a digit (its "needs" are not read)

    def _build_lexicon(self, st: dict) -> "_Stage | None":
        if not self.lexicon.entries:
            return None
        return _Stage(_LEXICON)

    def _build_brand_guess(self, st: dict) -> "_Stage | None":
        if not self.brand_guess:
            return None
        stage = _Stage(_BRAND)
        slot = st.get("slot", "brand")
        stage.arg = (int(st.get("min_len", 3)), slot, *self.meta(slot))
        return stage

    def _build_name(self, st: dict) -> "_Stage":
        stage = _Stage(_NAME)
        slot = st.get("slot", "name")
        stage.arg = (slot, *self.meta(slot))
        return stage

    # ------------------------------------------------------------------ the generated per-text function
    def _source(self) -> str:
        """Python source of :meth:`rows` for these stages (each stage: its pre-tests, then its scan)."""
        L = [
            "def rows(text, source):",
            "    # clean_text(text) (itemrep.catalog). For ASCII text without byte escapes or entities that is a",
            "    # whitespace collapse (NFKC leaves ASCII as it is), and re's \\s and str.split() agree on whitespace",
            "    if type(text) is str and text.isascii() and '\\\\x' not in text and '&' not in text:",
            "        text = ' '.join(text.split())",
            "    else:",
            "        text = clean_text(text)",
            "    if MASK in text:  # the engine's own marker must not occur in the input",
            "        text = text.replace(MASK, ' ').strip()",
            "    if not text:",
            "        return []",
            "    low = text.lower()",
            "    asc = low.isascii()",
            "    dlow = _HAS_DIGIT(low) is not None  # the '<digit>' need (read on the lower-cased text)",
            "    work = text",
            "    wd = _HAS_DIGIT(work) is not None  # a digit in the text still unclaimed",
            "    found = []",
        ]
        for i, st in enumerate(self.stages):
            L.append(f"    # stage {i}: {st.name!r}")
            if st.code == _LEXICON:
                L += ["    work = lexicon(work, text, found)", "    wd = wd and _HAS_DIGIT(work) is not None"]
                continue
            if st.code == _NAME:
                L.append(f"    name(work, found, arg{i})")
                continue
            if st.code == _BRAND:
                L += [f"    work = brand_guess(work, text, source, found, arg{i})", "    wd = wd and _HAS_DIGIT(work) is not None"]
                continue
            tests = []
            if st.digit_gate:
                tests.append("wd")
            if st.needs:  # one of the substrings must occur in the lower-cased text (pipeline.json "needs")
                alts, non_ascii = [], []
                for n in st.needs:
                    if n == "<digit>":
                        alts.append("dlow")
                    elif n == "<non-ascii>":
                        alts.append("not asc")
                    elif n.lower().isascii():
                        alts.append(f"{n.lower()!r} in low")
                    else:
                        non_ascii.append(f"{n.lower()!r} in low")
                if non_ascii:  # cannot occur in ASCII text
                    alts.append("(not asc and (" + " or ".join(non_ascii) + "))")
                tests.append("(" + " or ".join(alts) + ")")
            ind = "    "
            if tests:
                L.append(f"{ind}if {' and '.join(tests)}:")
                ind += "    "
            if st.cand is not None:  # no match can start before the first candidate (see _candidate_re)
                L += [f"{ind}c = cand{i}(work)", f"{ind}if c is not None:"]
                ind += "    "
                L.append(f"{ind}m = search{i}(work, c.start())")
            else:
                L.append(f"{ind}m = search{i}(work)")
            L += [f"{ind}if m is not None:", f"{ind}    work = apply{i}(m, work, text, found)", f"{ind}    wd = wd and _HAS_DIGIT(work) is not None"]
        if self.allcaps is not None:
            L.append("    allcaps(text, found)")
        L += [
            "    found.sort(key=_START)  # reading order (stable: ties keep stage order)",
            "    seen = set()  # a repeated (slot, value) is kept once",
            "    return [f[1:] for f in found if (k := f[1:3]) not in seen and not seen.add(k)]",
        ]
        return "\n".join(L) + "\n"

    def _compile(self, source: str) -> Callable[[str, str], list[tuple]]:
        ns: dict = {"clean_text": clean_text, "MASK": MASK, "_HAS_DIGIT": _HAS_DIGIT, "_START": _START,
                    "lexicon": self._lexicon, "name": self._name, "brand_guess": self._brand_guess, "allcaps": self._allcaps}
        for i, st in enumerate(self.stages):
            ns[f"search{i}"], ns[f"cand{i}"], ns[f"apply{i}"], ns[f"arg{i}"] = st.search, st.cand, st.apply, st.arg
        exec(compile(source, "<itemrep.concepts.rules: generated stages>", "exec"), ns)  # noqa: S102 - our own source
        return ns["rows"]

    def _lexicon(self, work: str, text: str, found: list) -> str:
        cache = self.lex_cache
        lex = self.lexicon
        pieces: list[str] = []
        pos = 0
        if lex.latin_lower is not None and work.isascii():
            # what Lexicon.finditer does for ASCII text (no CJK phrase can match), by re.split (the
            # pattern has one group: [before, phrase, between, phrase, ..., after], no match objects);
            # the lookup key of a span does not depend on its case: the lower-cased span keys the cache
            parts = lex.latin_lower.split(work.lower())
            n = len(parts)
            if n == 1:
                return work
            a = len(parts[0])
            for j in range(1, n, 2):
                span = parts[j]
                b = a + len(span)
                info = cache.get(span)
                if info is None:
                    info = self._lex_info(span)
                if info is not _NOENT:  # (_NOENT cannot happen: every trie path ends on a listed phrase)
                    if info is not _STOP:
                        found.append((a, info[0], info[1], text[a:b], info[2], info[3], info[4]))
                    pieces.append(work[pos:a])
                    pieces.append(MASK * (b - a))
                    pos = b
                a = b + len(parts[j + 1])
        else:
            for a, b in lex.finditer(work):
                span = work[a:b]
                info = cache.get(span)
                if info is None:
                    info = self._lex_info(span)
                if info is _NOENT:
                    continue
                if info is not _STOP:
                    found.append((a, info[0], info[1], text[a:b], info[2], info[3], info[4]))
                pieces.append(work[pos:a])
                pieces.append(MASK * (b - a))
                pos = b
        if not pieces:
            return work
        pieces.append(work[pos:])
        return "".join(pieces)

    def _lex_info(self, span: str) -> object:
        ent = self.lexicon.lookup(span)
        if ent is None:
            info: object = _NOENT
        elif ent[0] == "stopword" or not ent[1]:
            info = _STOP
        else:
            info = (ent[0], ent[1][:_MAX_VALUE], *self.meta(ent[0], ent[2], ent[3]))
        if len(self.lex_cache) >= _LEX_CACHE_MAX:
            self.lex_cache.clear()
        self.lex_cache[span] = info
        return info

    @staticmethod
    def _name(work: str, found: list, stage: tuple) -> None:
        slot, level, facet, kind = stage
        seen: set[str] = set()
        if work.isascii():  # lower-casing keeps offsets and token boundaries; tokens are split by " " / "-"
            parts = _CHUNK_ASCII_RE.split(work.lower())  # [before, chunk, between, chunk, ..., after]
            a = len(parts[0])
            for j in range(1, len(parts), 2):
                chunk = parts[j]
                b = a + len(chunk)
                toks = [t for t in chunk.replace("-", " ").split() if not (t in seen or seen.add(t))]
                if toks:
                    found.append((a, slot, " ".join(toks)[:_MAX_VALUE], work[a:b], level, facet, kind))
                a = b + len(parts[j + 1])
            return
        for m in _CHUNK_RE.finditer(work):
            toks = [t for t in _TOKEN_RE.findall(m.group(0).lower()) if not (t in seen or seen.add(t))]
            if toks:
                found.append((m.start(), slot, " ".join(toks)[:_MAX_VALUE], m.group(0), level, facet, kind))

    def _brand_guess(self, work: str, text: str, source: str, found: list, stage: tuple) -> str:
        min_len, slot, level, facet, kind = stage
        if source not in ("title", "ocr") or any(f[1] == "brand" for f in found):
            return work
        first_primary = min((f[0] for f in found if f[4] == "primary" and f[1] not in ("brand", "name")), default=len(text))
        m = _TOKEN_RE.search(work)
        if m is None or m.start() > first_primary:
            return work
        w = m.group(0)
        if len(w) < min_len or not w[0].isupper() or not w.isalpha() or w.lower() in self.lexicon.words or _CJK_RE.match(w):
            return work
        found.append((m.start(), slot, w.lower()[:_MAX_VALUE], w, level, facet, kind))
        return work[: m.start()] + MASK * len(w) + work[m.end() :]

    def _allcaps(self, text: str, found: list) -> None:
        min_letters, min_ratio, slot, value, level, facet, kind = self.allcaps
        b = text.encode("ascii", "ignore")  # [A-Z] / [a-z] are ASCII: counting them in the bytes is the same
        upper = len(b) - len(b.translate(None, _UPPER_B))
        lower = len(b) - len(b.translate(None, _LOWER_B))
        if upper + lower < min_letters:
            return
        if upper / (upper + lower) >= min_ratio and value:
            found.append((len(text), slot, value[:_MAX_VALUE], None, level, facet, kind))


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

    The lexicons are read and compiled once per process (about 0.2 s) and shared by every
    extractor of the same lexicon directory and options. The extractor pickles small (its options
    only): unpickled in a worker process it compiles the lexicons there on first use, once; with
    ``fork`` the workers inherit the compiled ones.

    Besides :meth:`extract` (pydantic objects), :meth:`extract_records`, :meth:`extract_columns`,
    :meth:`extract_table` and :meth:`extract_frame` give the same concepts as a table, several
    times faster (no objects per concept).

    Raises:
        FileNotFoundError, ValueError: a missing or malformed lexicon file (named in the message).
    """

    name = "rules"
    version = "9"
    parallel_safe = True  # pure CPU work: the pipeline runs it in forked worker processes

    def __init__(self, lexicon_dir: Path | None = None, *, brand_guess: bool = False) -> None:
        super().__init__()
        self.lexicon_dir = Path(lexicon_dir) if lexicon_dir is not None else None
        self.brand_guess = brand_guess
        self._eng: _Engine | None = _engine_for(self.lexicon_dir, brand_guess)

    # ------------------------------------------------------------------ engine, pickling
    def _engine(self) -> _Engine:
        eng = self._eng
        if eng is None:
            eng = self._eng = _engine_for(self.lexicon_dir, self.brand_guess)
        return eng

    @property
    def lexicon(self) -> Lexicon:
        """The compiled phrase lists (:class:`Lexicon`)."""
        return self._engine().lexicon

    @property
    def quantities(self) -> QuantityNormalizer:
        """The quantity / unit normaliser of this lexicon's unit table."""
        return self._engine().quantities

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_eng"] = None  # compiled again (once per process) where it is unpickled
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

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
        make = _make_concept
        return [
            make({"slot": slot, "value": value, "raw": raw, "level": level, "facet": facet, "kind": kind, "source": source, "salience": 1.0})
            for slot, value, raw, level, facet, kind in (self._eng or self._engine()).rows(text, source)
        ]

    def extract(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> list[ConceptHierarchy]:
        """:meth:`ConceptExtractor.extract <itemrep.concepts.base.ConceptExtractor.extract>`, with the
        cyclic garbage collector paused (see :func:`_gc_paused`)."""
        with _gc_paused():
            return super().extract(items, progress=progress)

    def extract_one(self, item: Item) -> ConceptHierarchy:
        """Concept hierarchy of one item: concepts of ``item.title`` (source ``"title"``) then of
        ``item.text`` (source ``"text"``)."""
        concepts = self.concepts_from_text(item.title, "title")
        if item.text:
            concepts += self.concepts_from_text(item.text, "text")
        return _make_hierarchy(str(item.item_id), concepts, self.identifier)

    def extract_records(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> list[tuple]:
        """The concept table of ``items`` as rows, without building any pydantic object.

        Exactly the rows of :func:`itemrep.dedup.pipeline.concepts_table` ``(self.extract(items))``:
        one tuple per concept with the fields :data:`RECORD_COLUMNS` (``item_id, slot, value, raw,
        level, facet, kind, source, salience, extractor, error``), items in input order and each
        item's concepts in order; an item without any concept (or whose extraction failed: ``error``
        set) gives one row whose ``slot`` ... ``salience`` are ``None``. So every item has at
        least one row, and its rows are consecutive. ``stats_`` is set as by :meth:`extract`.

        Args:
            items: catalog items.
            progress: called with the number of items just finished (for a progress bar).
        """
        with _gc_paused():
            return self._records(items, progress)

    def _records(self, items: Sequence[Item], progress: Callable[[int], None] | None) -> list[tuple]:
        t0 = time.perf_counter()
        rows_of = (self._eng or self._engine()).rows
        ident = self.identifier
        out: list[tuple] = []
        failures = n = 0
        for item in items:
            n += 1
            try:
                iid = str(item.item_id)
                rows = [(iid, slot, value, raw, level, facet, kind, "title", 1.0, ident, None) for slot, value, raw, level, facet, kind in rows_of(item.title, "title")]
                if item.text:
                    rows += [(iid, slot, value, raw, level, facet, kind, "text", 1.0, ident, None) for slot, value, raw, level, facet, kind in rows_of(item.text, "text")]
                if not rows:
                    rows = [(iid, None, None, None, None, None, None, None, None, ident, None)]
            except Exception as e:  # noqa: BLE001 - per-item failure, recorded as extract() does
                failures += 1
                h = ConceptHierarchy(item_id=item.item_id, extractor=ident, error=f"{type(e).__name__}: {e}")
                rows = [(h.item_id, None, None, None, None, None, None, None, None, h.extractor, h.error)]
            out.extend(rows)
            if progress is not None:
                progress(1)
        self.stats_ = {"items": n, "failures": failures, "seconds": time.perf_counter() - t0}
        return out

    def extract_columns(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> dict[str, list]:
        """:meth:`extract_records` by column: ``{name: list}`` for every name of :data:`RECORD_COLUMNS`."""
        rows = self.extract_records(items, progress=progress)
        return {c: list(map(itemgetter(k), rows)) for k, c in enumerate(RECORD_COLUMNS)}

    def extract_table(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None):
        """:meth:`extract_records` as a ``pyarrow.Table`` equal to ``concepts_table(self.extract(items))``
        (:mod:`itemrep.dedup.pipeline`): string columns, ``salience`` float32."""
        import pyarrow as pa

        schema = pa.schema([(c, pa.float32() if c == "salience" else pa.string()) for c in RECORD_COLUMNS])
        return pa.table(self.extract_columns(items, progress=progress), schema=schema)

    def extract_frame(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None):
        """:meth:`extract_table` as a pandas DataFrame, equal to ``concepts_frame(self.extract(items))``."""
        return self.extract_table(items, progress=progress).to_pandas()
