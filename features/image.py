"""Image embeddings of a person in context: the body crop, the whole image (context) or the
face crop, through a timm backbone, one row per annotated person (an EMOTIC sample).

Boxes come from the sample's labels (`bbox_x1 … bbox_y2` for the body, `face_x1 … face_y2`
for the face; the EMOTIC adapter gives body boxes). Weights: pretrained weights cannot be
downloaded here, so a backbone is built with `pretrained=False` and loaded from `weights` (a
local `.safetensors` file, never unpickled); without `weights` the backbone keeps
its seeded random initialisation, which the parameters (and so the store's hash) record, and a
warning says so. A corrupt or missing image, a zero-area box or a box wholly outside the image
is that sample's error; the others are kept.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import (
    BatchResult,
    ExtractionError,
    Extractor,
    Params,
    Sample,
    Segment,
    feature_frame,
)
from features.registry import EXTRACTORS

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BOX_COLUMNS = {"body": ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"),
               "face": ("face_x1", "face_y1", "face_x2", "face_y2")}
RANDOM_WEIGHTS = ("no backbone weights given: the {backbone} backbone has its seeded random "
                  "initialisation (pretrained weights cannot be downloaded here; give `weights: <file>`)")


def to_rgb8(im):
    """A PIL image of any mode as 8-bit RGB: 16- and 32-bit integer images (16-bit PNG and TIFF
    greyscale, modes I;16* and I) and float images (mode F) rescaled from their full range to
    0–255, not clipped (Pillow's own `convert` clips them, so a 16-bit image turns almost
    white); palette, greyscale, CMYK and alpha modes by Pillow's conversion."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 255.0
        elif im.mode.startswith("I;16") or np.nanmax(arr, initial=0.0) <= 65535:
            top = 65535.0  # 16-bit samples (Pillow opens 16-bit greyscale PNG as I;16 or I)
        else:
            top = float(2**31 - 1)
        arr = np.clip(np.nan_to_num(arr / top * 255.0), 0, 255)
        return Image.fromarray(np.rint(arr).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


class ImageEmbeddingParams(Params):
    backbone: str = "resnet18"
    weights: str | None = None
    crop: Literal["body", "context", "face"] = "body"
    mask_body: bool = False
    image_size: int = Field(224, ge=16)
    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    seed: int = 0


def weights_digest(path: str | None) -> str:
    """sha256 (first 16 hex) of a weights file, or "random-init"."""
    if path is None:
        return "random-init"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def load_backbone(backbone: str, weights: str | None, seed: int, device: str):
    """A timm backbone without its classifier (pooled features), in eval mode.

    Raises:
        ExtractionError: an unknown timm model, or a weights file that is missing or does not
            fit the backbone (naming the keys).
    """
    import timm
    import torch

    if backbone not in timm.list_models():
        raise ExtractionError(f"unknown timm backbone {backbone!r} (e.g. resnet18, efficientnet_b0, "
                              "convnext_tiny; `timm.list_models()` lists them)")
    torch.manual_seed(seed)
    model = timm.create_model(backbone, pretrained=False, num_classes=0)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ExtractionError(f"backbone weights {path} not found", path)
        if path.suffix != ".safetensors":
            raise ExtractionError(
                f"{path}: backbone weights are read from .safetensors files only (never unpickled); convert a "
                "state dict you trust once with safetensors.torch.save_file(state_dict, 'weights.safetensors')",
                path)
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - any unreadable weights file is the same error
            raise ExtractionError(f"{path}: cannot read backbone weights ({type(err).__name__}: {err})", path) from None
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # tensors of other shapes: another architecture's weights
            first = str(err).strip().splitlines()
            raise ExtractionError(f"{path}: weights do not fit {backbone}: {first[min(1, len(first) - 1)].strip()} "
                                  "(are they another backbone's?)", path) from None
        head = ("fc.", "head", "classifier", "last_linear")
        unexpected = [k for k in unexpected if not k.startswith(head)]
        if missing or unexpected:
            raise ExtractionError(f"{path}: weights do not fit {backbone}: missing {missing[:4]}, unexpected "
                                  f"{unexpected[:4]} ({len(missing)} and {len(unexpected)} keys)", path)
    return model.eval().to(device)


@EXTRACTORS.register("image")
class ImageEmbeddingExtractor(Extractor):
    """timm embeddings of a person's body crop, the whole image or the face crop.

    Args:
        backbone: a timm model name (built with pretrained=False).
        weights: a local `.safetensors` weights file of the same backbone; None keeps the
            seeded random initialisation (said in a warning).
        crop: "body" (the body box), "context" (the whole image) or "face" (the face box).
        mask_body: for "context", black out the body box (the scene without the person).
        image_size: the crop is resized to this square (as in Kosti et al.).
        batch_size: crops per forward pass.
        device: "auto" (CUDA when available), "cpu", "cuda", …
        seed: the random initialisation's seed when there are no weights.
    """

    name = "image"
    version = "1"
    modality = "image"
    media = ("image",)
    Params = ImageEmbeddingParams
    chunk_size = 256

    def _device(self) -> str:
        from features.text import resolve_device

        return resolve_device(self.params.device)

    def _model(self):
        p = self.params
        return load_backbone(p.backbone, p.weights, p.seed, self._device())

    def check(self) -> None:
        self._model()

    @property
    def feature_names(self) -> list[str]:
        return list(self._columns())

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one small Index per extractor
    def _columns(self) -> pd.Index:
        return pd.Index([f"emb_{i:04d}" for i in range(int(self._model().num_features))])

    def library_versions(self) -> dict[str, str]:
        import timm
        import torch

        return {"timm": timm.__version__, "torch": torch.__version__,
                "weights": weights_digest(self.params.weights)}

    def source_payload(self, sample: Sample) -> str | None:
        """The boxes read from the labels enter the sample's hash (a corrected box re-extracts)."""
        return ";".join(f"{k}:{sample.labels.get(c)}" for k, cols in BOX_COLUMNS.items() for c in cols)

    def crop(self, sample: Sample, warnings: list[str]) -> np.ndarray:
        """The sample's crop as a normalised (3, size, size) float array.

        Raises:
            ExtractionError: an unreadable image, a missing, zero-area or outside box.
        """
        from PIL import Image, UnidentifiedImageError

        path = self.source_files(sample)["image"]
        try:
            with Image.open(path) as im:
                im.load()
                image = to_rgb8(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ExtractionError(f"{path}: not a readable image ({type(err).__name__}: {err})", path) from None
        w, h = image.size
        kind = "body" if self.params.crop == "context" else self.params.crop
        needs_box = self.params.crop != "context" or self.params.mask_body  # the whole image needs none
        box = self._box(sample, kind, w, h, path, warnings, required=True) if needs_box else None
        if self.params.crop == "context":
            if self.params.mask_body and box is not None:
                arr = np.asarray(image).copy()
                x1, y1, x2, y2 = box
                arr[y1:y2, x1:x2] = 0
                image = Image.fromarray(arr)
        else:
            image = image.crop(box)
        size = self.params.image_size
        arr = np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        return ((arr - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)

    def _box(self, sample: Sample, kind: str, w: int, h: int, path: Path, warnings: list[str],
             required: bool) -> tuple[int, int, int, int] | None:
        cols = BOX_COLUMNS[kind]
        values = [sample.labels.get(c) for c in cols]
        if any(v is None or pd.isna(v) for v in values):
            if not required:
                return None
            raise ExtractionError(f"sample {sample.sample_id!r}: no {kind} box (labels {list(cols)})"
                                  + ("; EMOTIC gives body boxes only: add face boxes to the labels" if kind == "face"
                                     else ""), path)
        x1, y1, x2, y2 = (float(v) for v in values)
        c = (max(0, int(round(x1))), max(0, int(round(y1))), min(w, int(round(x2))), min(h, int(round(y2))))
        if c[2] <= c[0] or c[3] <= c[1]:
            outside = x1 >= w or y1 >= h or x2 <= 0 or y2 <= 0
            raise ExtractionError(f"sample {sample.sample_id!r}: {kind} box {[x1, y1, x2, y2]} "
                                  + (f"lies outside the {w}×{h} image" if outside else "has zero area"), path)
        if c != (x1, y1, x2, y2):
            warnings.append(f"sample {sample.sample_id!r}: {kind} box {[x1, y1, x2, y2]} clipped to the "
                            f"{w}×{h} image")
        return c

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        return self.sample_from_batch(sample, segments)

    def process_samples(self, items) -> BatchResult:
        """Crop every sample, embed the crops in batches; a sample that cannot be cropped is
        its own error."""
        import torch

        result = BatchResult(None, {}, {})
        crops, kept = [], []
        for sample, segments in items:
            warnings = result.warnings.setdefault(sample.sample_id, [])
            try:
                if segments is not None:
                    raise ExtractionError(f"sample {sample.sample_id!r}: the image extractor takes whole "
                                          "samples (segmentation level: sample)")
                crops.append(self.crop(sample, warnings))
                kept.append(sample)
            except Exception as err:  # noqa: BLE001 - recorded in the sample's place
                result.errors[sample.sample_id] = err
        if not kept:
            return result
        if self.params.weights is None:
            for s in kept:
                result.warnings[s.sample_id].append(RANDOM_WEIGHTS.format(backbone=self.params.backbone))
        model, device = self._model(), self._device()
        out = []
        with torch.inference_mode():
            for a in range(0, len(crops), self.params.batch_size):
                x = torch.from_numpy(np.stack(crops[a:a + self.params.batch_size])).to(device)
                out.append(model(x).float().cpu().numpy())
        emb = np.concatenate(out)
        frames = [feature_frame(s.sample_id, [(0.0, 0.0)], emb[i:i + 1], self._columns()) for i, s in enumerate(kept)]
        result.frame = pd.concat(frames) if len(frames) > 1 else frames[0]
        return result
