"""Attention-guided slot fusion and learning the slot weights α from labelled pairs (FITRep Sec. 3.1).

FITRep fuses per-concept embeddings with attention weights so that primary concepts dominate the
similarity. With K unit-norm (or zero) slot vectors c_k and non-negative weights α_k (Σ α_k = 1):

    z = ⊕_k √α_k · c_k            (concatenation)
    z · z' = Σ_k α_k cos(c_k, c'_k)

so every pair's similarity splits exactly into per-slot terms, which is what makes the
representation white-box: the report shows each term α_k cos(c_k, c'_k).

Attribute conflicts (an extension of ours, see :mod:`itemrep.dedup.slots`): for slots such as spec or
colour, a pair where both items state the attribute and disagree gets ``conf_c = 1 - cos_c``. The
edge score of a pair is then

    sim = Σ_k α_k cos_k  +  Σ_{k,t} β_{k,t} max(0, cos_k - t)/(1 - t)  -  Σ_c γ_c conf_c    (β, γ ≥ 0)

The first sum is exactly z · z' (used for the FAISS candidate search); near-match bonuses β
(a monotone piecewise-linear response per slot, see :mod:`itemrep.dedup.slots`) and conflict penalties γ
are applied when candidate edges are scored, and every term is reported per edge.

:meth:`AttentionFusion.fit` learns α and γ on labelled pairs with a sign-constrained logistic
regression, P(dup | pair) = σ(Σ_k w_k cos_k - Σ_c v_c conf_c + b), w, v ≥ 0, and sets α = w / Σ w,
γ = v / Σ w. The decision boundary becomes sim = -b / Σ w, the logistic estimate of the threshold τ
(the pipeline then refines τ for the best mean per-item F1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from itemrep.dedup.slots import SlotSet


@dataclass
class PairTerms:
    """The edge score of E pairs and its parts (:meth:`AttentionFusion.pair_terms`).

    Attributes:
        names: the F feature names (``SlotSet.feature_names``: slots, ``conflict_<slot>``,
            ``match_<slot>@<knot>``).
        features: float32 (E, F) cos_k, conf_c = 1 − cos_c (both items state c, else 0), and
            near-match values max(0, cos_k − t)/(1 − t).
        weights: float32 (F,) α_k, −γ_c and β_{k,t} in that order.
        scale: float32 (E,) 1/ρ, ρ = 1 − Σ α of the modal slots a pair lacks on either side.
        terms: float32 (E, F) features · weights · scale.
        score: float32 (E,) ``terms.sum(axis=1)``.
    """

    names: list[str]
    features: np.ndarray
    weights: np.ndarray
    scale: np.ndarray
    terms: np.ndarray
    score: np.ndarray


class AttentionFusion:
    """Slot weights α and the fused representation.

    Args:
        alpha: slot name -> weight. ``None`` uses :meth:`default_alpha`. Weights of slots not
            present in a :class:`SlotSet` are dropped and the rest renormalised to sum to 1.
        primary_share: in the default α, the total weight of primary slots (rest: auxiliary).

    Attributes (after :meth:`fit`):
        alpha_: learned weights (dict, sums to 1).
        intercept_: logistic intercept b; ``tau_logistic_`` = -b / Σw.
    """

    def __init__(self, alpha: dict[str, float] | None = None, primary_share: float = 0.9,
                 gamma: dict[str, float] | None = None, beta: dict[str, float] | None = None) -> None:
        self.alpha = alpha
        self.primary_share = primary_share
        self.gamma = gamma
        self.beta = beta

    # ------------------------------------------------------------------ weights
    def default_alpha(self, slots: SlotSet) -> dict[str, float]:
        """Primary slots share ``primary_share`` equally, auxiliary slots share the rest."""
        prim = [k for k in slots.names if slots.levels.get(k) == "primary"]
        aux = [k for k in slots.names if slots.levels.get(k) != "primary"]
        if not aux:
            return {k: 1.0 / len(prim) for k in prim}
        if not prim:
            return {k: 1.0 / len(aux) for k in aux}
        out = {k: self.primary_share / len(prim) for k in prim}
        out.update({k: (1.0 - self.primary_share) / len(aux) for k in aux})
        return out

    def weights(self, slots: SlotSet) -> np.ndarray:
        """α over ``slots.names`` as float64 (K,), non-negative, summing to 1.

        Raises:
            ValueError: when no slot of ``slots`` has a positive weight.
        """
        alpha = getattr(self, "alpha_", None) or self.alpha or self.default_alpha(slots)
        w = np.array([max(0.0, float(alpha.get(k, 0.0))) for k in slots.names], dtype=np.float64)
        if w.sum() <= 0:
            raise ValueError(
                f"no slot has a positive weight: slots present {slots.names}, weights given for {sorted(alpha)}"
            )
        return w / w.sum()

    def unweighted(self, slots: SlotSet) -> list[str]:
        """Slots present in ``slots`` that the given/fitted α does not mention (they get weight 0)."""
        alpha = getattr(self, "alpha_", None) or self.alpha
        return [] if not alpha else [k for k in slots.names if k not in alpha]

    def absent(self, slots: SlotSet) -> dict[str, float]:
        """Slots the given/fitted α weighs (α > 0) that ``slots`` lacks, with their weight: that
        weight is spread over the present slots when α is renormalised (see :meth:`weights`)."""
        alpha = getattr(self, "alpha_", None) or self.alpha or {}
        return {k: float(v) for k, v in alpha.items() if v > 0 and k not in slots.names}

    def alpha_for(self, slots: SlotSet) -> dict[str, float]:
        """α resolved for ``slots`` (dict)."""
        return dict(zip(slots.names, map(float, self.weights(slots))))

    def penalties(self, slots: SlotSet) -> np.ndarray:
        """γ over ``slots.conflict_slots`` as float64 (C,), non-negative (0 when not fitted/given)."""
        gamma = getattr(self, "gamma_", None) or self.gamma or {}
        return np.array([max(0.0, float(gamma.get(k, 0.0))) for k in slots.conflict_slots], dtype=np.float64)

    # ------------------------------------------------------------------ fusion
    def fuse(self, dense_views: dict[str, np.ndarray], slots: SlotSet) -> np.ndarray:
        """z = ⊕_k √α_k · c_k over the dense slot views.

        Args:
            dense_views: slot name -> (N, d_k) float32 (see :meth:`SlotSet.dense_views`).
            slots: the slot set (for names, levels and salience).

        Returns:
            float32 (N, Σ d_k), C-contiguous.
        """
        w = self.weights(slots)
        parts = []
        for k, name in enumerate(slots.names):
            if w[k] <= 0:
                continue
            v = dense_views[name] * np.float32(np.sqrt(w[k]))
            if name in slots.salience:
                v = v * np.sqrt(slots.salience[name])[:, None].astype(np.float32)
            parts.append(v)
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)

    def transform(self, dense_views: dict[str, np.ndarray], slots: SlotSet) -> np.ndarray:
        """Same as :meth:`fuse` (scikit-learn name)."""
        return self.fuse(dense_views, slots)

    def weighted_slots(self, slots: SlotSet) -> list[str]:
        """Names of the slots with a positive weight (the only ones fused)."""
        w = self.weights(slots)
        return [n for n, v in zip(slots.names, w) if v > 0]

    def report(self, slots: SlotSet) -> dict:
        """Its part of ``run.json``: α, β and γ resolved for ``slots``, and the slots without weight."""
        return {
            "alpha": self.alpha_for(slots),
            "slots_without_weight": self.unweighted(slots),
            "weighted_slots_absent": self.absent(slots),
            "gamma": dict(zip(slots.conflict_slots, map(float, self.penalties(slots)))),
            "beta": dict(zip([n for n in slots.feature_names if n.startswith("match_")], map(float, self.bonuses(slots)))),
        }

    def bonuses(self, slots: SlotSet) -> np.ndarray:
        """β over the near-match features of ``slots`` (``match_<slot>@<knot>``), float64, ≥ 0."""
        beta = getattr(self, "beta_", None) or self.beta or {}
        names = [n for n in slots.feature_names if n.startswith("match_")]
        return np.array([max(0.0, float(beta.get(n, 0.0))) for n in names], dtype=np.float64)

    def pair_terms(self, slots: SlotSet, i: np.ndarray, j: np.ndarray) -> PairTerms:
        """The edge score of pairs (i, j) of ``slots`` with everything it is made of (FITRep
        Sec. 3.1, Eq. of the attention-weighted fusion ``z·z' = Σ_k α_k cos_k``; near-match bonuses
        β and attribute conflicts γ are our extension, see the module docstring).

        When a pair lacks a *modal* slot (``slots.modal_slots``: photo, description, ...) on either
        side, the weight α_m of that slot says nothing about the pair, so every term is divided by
        ``ρ = 1 - Σ_{m missing} α_m``: the score is renormalised over the slots both items have (a
        model fitted with a phash slot keeps its scale on items without a photo). Attribute slots
        are not renormalised: an attribute one side lacks is evidence.

        Args:
            slots: the items' slot rows.
            i, j: int (E,) row positions in ``slots``.

        Returns:
            :class:`PairTerms` with ``features`` float32 (E, F) (``slots.pair_features``: cos_k,
            conf_c, near-match values), ``weights`` float32 (F,) (α_k, −γ_c, β), ``scale`` float32
            (E,) (1/ρ), ``terms`` float32 (E, F) = features · weights · scale and ``score``
            float32 (E,) = ``terms.sum(axis=1)``: the edge score :meth:`pair_similarity`, ``dedup``
            (``edges.parquet``) and the index use, bit for bit.
        """
        feats = slots.pair_features(i, j)
        alpha = self.weights(slots)
        w = np.concatenate([alpha, -self.penalties(slots), self.bonuses(slots)]).astype(np.float32)
        terms = feats * w[None, :]
        scale = np.ones(len(terms), dtype=np.float32)
        modal_names = set(slots.modal_slots)
        modal = [(k, n) for k, n in enumerate(slots.names) if n in modal_names and alpha[k] > 0]
        if modal and len(terms):
            ia, ja = np.asarray(i), np.asarray(j)
            missing = np.zeros(len(terms), dtype=np.float64)
            for k, n in modal:
                pres = slots.presence(n)
                missing += alpha[k] * ~(pres[ia] & pres[ja])
            rho = 1.0 - missing
            scale = np.where(rho > 1e-6, 1.0 / np.maximum(rho, 1e-6), 1.0).astype(np.float32)
            if np.any(scale != 1.0):
                terms *= scale[:, None]
        return PairTerms(names=list(slots.feature_names), features=feats, weights=w, scale=scale, terms=terms,
                         score=terms.sum(axis=1))

    def pair_similarity(self, slots: SlotSet, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact edge score of pairs and its per-feature terms (:meth:`pair_terms`, without the parts).

        Returns:
            ``(sim, terms)``: float32 (E,) with sim = (Σ α_k cos_k + Σ β match - Σ γ_c conf_c) / ρ,
            ρ = 1 - Σ_{modal m missing on i or j} α_m, and float32 (E, F) terms in
            ``slots.feature_names`` order (α_k cos_k / ρ, -γ_c conf_c / ρ, β match / ρ), which add
            up to sim.
        """
        t = self.pair_terms(slots, i, j)
        return t.score, t.terms

    # ------------------------------------------------------------------ learning
    def fit(self, cosines: np.ndarray, y: np.ndarray, names: Sequence[str], l2: float = 1e-3,
            sample_weight: np.ndarray | None = None, prior: tuple[np.ndarray, float] | None = None,
            prior_strength: float = 0.0) -> "AttentionFusion":
        """Learn α (and β, γ) by sign-constrained logistic regression on labelled pairs.

        Minimises the class-balanced mean log-loss of P(dup) = σ(Σ_f w_f x_f + b) (x: the features,
        conflicts negated; w ≥ 0) plus ``l2 · Σ w²`` and, with a ``prior`` (w₀, b₀),
        ``(prior_strength / n) · (Σ (w − w₀)² + (b − b₀)²)``, n the total weight of the pairs: a
        Gaussian prior centred on another model's coefficients (a MAP estimate; relative to the
        summed log-loss its weight is fixed), so that a few labelled pairs correct that model
        instead of replacing it, and more pairs move it further.

        Args:
            cosines: float (E, F) pair features (:meth:`SlotSet.pair_features`): K slot cosines,
                conflicts (names ``conflict_<slot>``) and near-match features (``match_<slot>@<t>``).
            y: (E,) 1 for duplicate pairs (same label), 0 otherwise.
            names: the F feature names (``slots.feature_names``).
            l2: ridge penalty on the weights.
            sample_weight: float (E,) ≥ 0, a weight per pair (default 1), applied on top of the
                class balancing.
            prior: ``(w₀ float (F,) over names, b₀)``, e.g. :meth:`prior_coef` of a fitted model.
            prior_strength: weight of the prior penalty (0: no prior), against the log-loss summed
                over the pairs: its pull fades as pairs accumulate.

        Returns:
            self, with ``alpha_``, ``gamma_``, ``beta_``, ``intercept_``, ``tau_logistic_``, ``coef_`` set.

        Raises:
            ValueError: when ``y`` has a single class (without a prior), shapes disagree or a
                weight is negative.
        """
        names = list(names)
        sign = np.array([-1.0 if n.startswith("conflict_") else 1.0 for n in names])
        x = np.asarray(cosines, dtype=np.float64) * sign[None, :]
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(y) or x.shape[1] != len(names):
            raise ValueError(f"cosines {x.shape} do not match {len(y)} labels and {len(names)} slot names")
        if len(y) == 0 or (y.min() == y.max() and prior is None):
            raise ValueError("need both duplicate and non-duplicate pairs to learn slot weights; check --label-col")
        pw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if pw.shape != y.shape or (pw < 0).any() or not np.isfinite(pw).all():
            raise ValueError(f"sample_weight must be {len(y)} finite weights >= 0")
        pos = np.sum(pw * y) / np.sum(pw)
        # balanced classes; with a prior, pairs of a single class are accepted and weigh as given
        sw = pw * np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) if 0 < pos < 1 else pw
        k = x.shape[1]
        lam = float(prior_strength) / float(np.sum(pw)) if prior is not None else 0.0
        if prior is not None:
            w0, b0 = np.asarray(prior[0], dtype=np.float64), float(prior[1])
            if w0.shape != (k,):
                raise ValueError(f"prior has {w0.shape} coefficients for {k} features")
        else:
            w0, b0 = np.zeros(k), 0.0

        def loss(theta):
            w, b = theta[:k], theta[k]
            z = x @ w + b
            # log(1 + e^{-z}) for y=1, log(1 + e^{z}) for y=0, numerically stable
            s = np.where(y == 1, -z, z)
            ll = np.logaddexp(0.0, s)
            p = 1.0 / (1.0 + np.exp(-z))
            g = sw * (p - y)
            dw, db = w - w0, b - b0
            val = np.sum(sw * ll) / len(y) + l2 * np.sum(w * w) + lam * (np.sum(dw * dw) + db * db)
            grad = np.concatenate([x.T @ g / len(y) + 2 * l2 * w + 2 * lam * dw, [g.sum() / len(y) + 2 * lam * db]])
            return val, grad

        theta0 = np.concatenate([np.maximum(w0, 0.0), [b0]]) if prior is not None else np.concatenate([np.full(k, 1.0), [0.0]])
        bounds = [(0.0, None)] * k + [(None, None)]
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
        w, b = res.x[:k], res.x[k]
        pos = sign > 0
        plain = np.array([p and not n.startswith("match_") for n, p in zip(names, pos)])
        if w[plain].sum() <= 0:
            w = np.where(plain, 1.0, w)
        total = w[plain].sum()
        self.alpha_ = {n: float(v / total) for n, v, p in zip(names, w, plain) if p}
        self.gamma_ = {n[len("conflict_"):]: float(v / total) for n, v, p in zip(names, w, pos) if not p}
        self.beta_ = {n: float(v / total) for n, v in zip(names, w) if n.startswith("match_")}
        self.intercept_ = float(b)
        self.tau_logistic_ = float(-b / total)
        self.coef_ = {n: float(v) for n, v in zip(names, w)}
        return self

    def prior_coef(self, names: Sequence[str]) -> tuple[np.ndarray, float]:
        """The logistic coefficients behind this fitted model's α, β, γ, as a prior for :meth:`fit`.

        :meth:`fit` sets α = w / Σw, γ = v / Σw, β = u / Σw over the plain slot weights Σw, and
        τ_logistic = −b / Σw; so Σw = −b / τ_logistic and the coefficients are recovered from the
        saved α, β, γ, intercept and τ_logistic.

        Args:
            names: feature names (``slots.feature_names``); a feature the model does not weigh gets 0.

        Returns:
            ``(w float64 (F,), b float)`` in ``names`` order (conflict coefficients positive, as
            :meth:`fit` uses them).

        Raises:
            ValueError: when the model carries no intercept / τ_logistic > 0 (it was not fitted by
                :meth:`fit`, e.g. α given by hand): it cannot serve as a prior.
        """
        b, t = getattr(self, "intercept_", None), getattr(self, "tau_logistic_", None)
        if b is None or t is None or not t > 0:
            raise ValueError("the prior model carries no logistic intercept (it was not fitted by `itemrep fit`, "
                             "or τ_logistic is not positive): it cannot serve as a prior; pass a fitted model")
        total = -float(b) / float(t)
        alpha = getattr(self, "alpha_", None) or self.alpha or {}
        gamma = getattr(self, "gamma_", None) or self.gamma or {}
        beta = getattr(self, "beta_", None) or self.beta or {}
        w = []
        for n in names:
            if n.startswith("conflict_"):
                v = gamma.get(n[len("conflict_"):], 0.0)
            elif n.startswith("match_"):
                v = beta.get(n, 0.0)
            else:
                v = alpha.get(n, 0.0)
            w.append(max(0.0, float(v)) * total)
        return np.asarray(w, dtype=np.float64), float(b)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "alpha": getattr(self, "alpha_", None) or self.alpha,
            "gamma": getattr(self, "gamma_", None) or self.gamma,
            "beta": getattr(self, "beta_", None) or self.beta,
            "primary_share": self.primary_share,
            "intercept": getattr(self, "intercept_", None),
            "tau_logistic": getattr(self, "tau_logistic_", None),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "AttentionFusion":
        f = cls(alpha=d.get("alpha"), primary_share=d.get("primary_share", 0.9), gamma=d.get("gamma"), beta=d.get("beta"))
        if d.get("beta"):
            f.beta_ = dict(d["beta"])
        if d.get("alpha"):
            f.alpha_ = dict(d["alpha"])
        if d.get("gamma"):
            f.gamma_ = dict(d["gamma"])
        if d.get("intercept") is not None:  # kept so a loaded model can serve as a prior (prior_coef)
            f.intercept_ = float(d["intercept"])
        if d.get("tau_logistic") is not None:
            f.tau_logistic_ = float(d["tau_logistic"])
        return f

    def save(self, directory: str | Path) -> None:
        """Write ``fusion.json`` (α, β, γ, intercept) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "fusion.json").write_text(json.dumps({"format": 1, **self.to_dict()}, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "AttentionFusion":
        """Read ``fusion.json`` written by :meth:`save`.

        Raises:
            ModelDirError: when missing or of another format.
        """
        from itemrep.errors import ModelDirError

        p = Path(directory) / "fusion.json"
        if not p.is_file():
            raise ModelDirError(f"{p}: missing")
        d = json.loads(p.read_text())
        if d.pop("format", None) != 1:
            raise ModelDirError(f"{p}: fusion format not 1")
        return cls.from_dict(d)
