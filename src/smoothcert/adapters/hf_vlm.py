"""A Hugging Face vision-language safety judge as a (tokens, image) model for hybrid smoothing.

The hybrid certificate of Delattre et al. 2026 (arXiv 2605.12876, the product kernel of
its Section 3: token substitution on the editable prompt positions x ``N(0, sigma^2 I)``
on the image) needs a model ``f(tokens, image) -> scores``. :class:`VisionLanguageJudge`
wraps a ``transformers`` Llava-style judge (LlavaGuard-style: a prompt with an image
slot, a decision read from the next-token distribution) as such a model, so that
:mod:`smoothcert.methods.hybrid` smooths it unchanged:

- ``tokens``: ``(B, L)`` int64 token ids of the text prompt, with the image token id
  exactly once (the image slot). The editable positions are the threat model's
  (:mod:`smoothcert.methods.threats`): the kernel substitutes tokens there, drawing from
  :attr:`VisionLanguageJudge.alphabet` (the tokenizer's vocabulary without special
  tokens and without the image token).
- ``image``: ``(B, 3, H, W)`` float pixels in [0, 1] at the ORIGINAL resolution (a
  uint8 image divided by 255). The Gaussian noise is added to THIS tensor, BEFORE the
  processor's resize and normalisation, so ``sigma`` and every certified radius ``r``
  are L2 norms over the ``3 H W`` original-resolution pixels in [0, 1] units (a
  radius of 1.0 is one pixel value moved by 255 grey levels; not [-1, 1] units, not
  normalised units, not the resized image).
- Inside :meth:`VisionLanguageJudge.forward`: :class:`ImagePreprocess` (the
  processor's resize, centre crop, rescale and normalisation, re-implemented in torch,
  batched, on the model's device), the image token expanded to one placeholder per
  image feature as ``LlavaForConditionalGeneration`` expects, an optional fixed answer
  prefix appended (never noised), an all-ones attention mask, ONE forward pass, then
  the decision scores ``(safe, unsafe)``: the logit mass (``logsumexp``) of the
  single-token spellings of "Safe" and of "Unsafe" at the answer position
  (:meth:`VisionLanguageJudge.logit_mass`). Class 0 is safe, class 1 unsafe.

The noise reaches the model exactly as the certificate assumes: the certificate is on
the inputs the noise is added to (token ids and original-resolution pixels), and
everything after that is a deterministic part of the smoothed model. Resize, crop and
normalisation are affine, so an L2 ball of radius ``r`` around the original image maps
into an ellipsoid around the model's pixel values; no claim is made (or needed) about
that ball in the model's units.

``transformers`` is imported lazily (:func:`require_transformers`): this module imports
without it and raises an ``ImportError`` naming ``pip install 'smoothcert[hf]'`` only
when a function needs it. See docs/hf.md for running a real judge on a GPU.

Example:
    >>> import torch
    >>> from smoothcert.adapters.tiny import build_tiny_llava
    >>> tiny = build_tiny_llava(seed=0)
    >>> judge = tiny.judge()
    >>> tokens = judge.encode("USER: <image> is this image safe ?")
    >>> scores = judge(tokens.unsqueeze(0), torch.full((1, 3, 20, 24), 0.5))
    >>> tuple(scores.shape)
    (1, 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from smoothcert.errors import InvalidParameterError
from smoothcert.noise.tokens import check_tokens, eligible_index

SAFE = 0
"""Class index of "safe" in the judge's output."""
UNSAFE = 1
"""Class index of "unsafe" in the judge's output."""

INSTALL_HINT = "pip install 'smoothcert[hf]'"

# PIL resampling codes (PIL.Image.Resampling) -> torch interpolate modes. Both are
# linear maps; HF's torch backend resizes float images with the same torch kernels
# (torchvision resize = torch.nn.functional.interpolate(..., antialias=True)).
_RESAMPLE_MODES = {2: "bilinear", 3: "bicubic"}


def require_transformers() -> ModuleType:
    """Import and return ``transformers``, or raise an ``ImportError`` naming the extra.

    Returns:
        The ``transformers`` module.

    Raises:
        ImportError: if ``transformers`` is not installed; the message names
            ``pip install 'smoothcert[hf]'``.

    Example:
        >>> require_transformers().__name__
        'transformers'
    """
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "the Hugging Face adapter needs the optional dependency 'transformers'; install "
            f"it with: {INSTALL_HINT}"
        ) from err
    return transformers


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` for a dict, ``obj.key`` otherwise (HF's ``SizeDict``), None if absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


class ImagePreprocess(torch.nn.Module):
    """A CLIP-style image processor's pipeline in torch: resize, centre crop, rescale, normalise.

    Input: ``(B, C, H, W)`` float pixels in [0, 1] (the ORIGINAL image, possibly
    noised, so values may leave [0, 1]; they are not clipped). The pipeline equals the
    HF processor applied to the uint8 image ``u = 255 x`` on its float path:

    1. resize (``size["shortest_edge"]``, aspect ratio kept, sizes as
       ``transformers.image_transforms.get_resize_output_image_size``; or
       ``size = {"height", "width"}``) with ``torch.nn.functional.interpolate(mode, antialias=True,
       align_corners=False)``, which is what HF's torch backend (torchvision) runs;
       the PIL backend rounds the resized image to uint8, which this module does not
       (the difference is at most about one grey level);
    2. centre crop at ``((h - ch) // 2, (w - cw) // 2)``;
    3. rescale: ``u * rescale_factor`` (``x`` when ``rescale_factor = 1/255``);
    4. normalise: ``(v - mean) / std`` per channel.

    Every step is affine in ``x``, so ``preprocess(x + sigma e)`` is
    ``preprocess(x)`` plus a linear image of ``sigma e``.

    Args:
        size: target size: ``{"shortest_edge": s}`` or ``{"height": h, "width": w}``.
        resample: PIL resampling code: 2 (bilinear) or 3 (bicubic).
        crop_size: ``{"height": ch, "width": cw}`` or None (no crop).
        rescale_factor: the processor's rescale factor for 0..255 values, or None (no
            rescale: the model sees 0..255 values).
        image_mean: per-channel mean (after rescale), or None (no normalisation).
        image_std: per-channel standard deviation, > 0 (with ``image_mean``).
        do_resize: resize (step 1) or not.

    Raises:
        InvalidParameterError: on an unsupported size, resample code, crop size or a
            non-positive std.

    Example:
        >>> pre = ImagePreprocess(size={"shortest_edge": 8}, resample=3,
        ...                       crop_size={"height": 8, "width": 8}, rescale_factor=1 / 255,
        ...                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
        >>> tuple(pre(torch.zeros(2, 3, 10, 12)).shape), pre.output_size(10, 12)
        ((2, 3, 8, 8), (8, 8))
    """

    def __init__(
        self,
        *,
        size: Any,
        resample: int = 3,
        crop_size: Any = None,
        rescale_factor: float | None = 1 / 255,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        do_resize: bool = True,
    ) -> None:
        super().__init__()
        self.do_resize = bool(do_resize)
        self.shortest_edge = _field(size, "shortest_edge")
        self.height = _field(size, "height")
        self.width = _field(size, "width")
        longest = _field(size, "longest_edge")
        if self.do_resize and (
            longest is not None
            or (self.shortest_edge is None and (self.height is None or self.width is None))
        ):
            raise InvalidParameterError(
                f"image processor size = {size!r} is not supported; valid: "
                "{'shortest_edge': s} or {'height': h, 'width': w}"
            )
        code = int(resample)
        if self.do_resize and code not in _RESAMPLE_MODES:
            raise InvalidParameterError(
                f"resample = {resample!r} is not supported; valid: 2 (bilinear) or 3 (bicubic)"
            )
        self.mode = _RESAMPLE_MODES.get(code, "bicubic")
        self.crop = None
        if crop_size is not None:
            ch, cw = _field(crop_size, "height"), _field(crop_size, "width")
            if ch is None or cw is None or int(ch) < 1 or int(cw) < 1:
                raise InvalidParameterError(
                    f"crop_size = {crop_size!r} is invalid; valid: {{'height': h, 'width': w}}, "
                    "both >= 1"
                )
            self.crop = (int(ch), int(cw))
        self.scale = 255.0 * float(rescale_factor) if rescale_factor is not None else 255.0
        if image_mean is None:
            mean, std = [0.0], [1.0]
        else:
            mean = [float(m) for m in image_mean]
            std = [float(s) for s in (image_std if image_std is not None else [])]
            if len(std) != len(mean) or not all(s > 0 and math.isfinite(s) for s in std):
                raise InvalidParameterError(
                    f"image_std = {image_std!r} is invalid; valid: {len(mean)} finite values > 0"
                )
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    @classmethod
    def from_processor(cls, image_processor: Any) -> ImagePreprocess:
        """Read a HF CLIP-style image processor's settings (either backend).

        Args:
            image_processor: e.g. ``CLIPImageProcessor`` / ``CLIPImageProcessorPil`` or a
                Llava image processor without padding.

        Returns:
            The equivalent :class:`ImagePreprocess`.

        Raises:
            InvalidParameterError: on settings it does not reproduce (padding, any-res
                tiling, an unsupported size or resampling).
        """
        if getattr(image_processor, "do_pad", None):
            raise InvalidParameterError(
                "image processor with do_pad = True is not supported; valid: a processor "
                "that resizes, centre crops, rescales and normalises (CLIP-style, llava-1.5)"
            )
        do_crop = bool(getattr(image_processor, "do_center_crop", False))
        do_norm = bool(getattr(image_processor, "do_normalize", False))
        do_rescale = bool(getattr(image_processor, "do_rescale", False))
        return cls(
            size=getattr(image_processor, "size", None),
            resample=int(getattr(image_processor, "resample", 3) or 3),
            crop_size=getattr(image_processor, "crop_size", None) if do_crop else None,
            rescale_factor=float(image_processor.rescale_factor) if do_rescale else None,
            image_mean=image_processor.image_mean if do_norm else None,
            image_std=image_processor.image_std if do_norm else None,
            do_resize=bool(getattr(image_processor, "do_resize", True)),
        )

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` after step 1 for an ``H x W`` image (HF's own size rule)."""
        key = (int(height), int(width))
        if key not in self._sizes:
            if not self.do_resize:
                out = key
            elif self.shortest_edge is None:
                out = (int(self.height), int(self.width))
            else:
                image_transforms = require_transformers().image_transforms
                out = tuple(
                    int(v)
                    for v in image_transforms.get_resize_output_image_size(
                        np.empty((1, *key), dtype=np.uint8),
                        size=int(self.shortest_edge),
                        default_to_square=False,
                        input_data_format="channels_first",
                    )
                )
            self._sizes[key] = out  # type: ignore[assignment]
        return self._sizes[key]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the model's pixel values for an ``H x W`` original image.

        Raises:
            InvalidParameterError: if the resized image is smaller than the crop.
        """
        h, w = self.resized_size(height, width)
        if self.crop is None:
            return h, w
        if self.crop[0] > h or self.crop[1] > w:
            raise InvalidParameterError(
                f"image of size {height} x {width} resizes to {h} x {w}, smaller than the "
                f"crop {self.crop[0]} x {self.crop[1]}; valid: an image whose resized size "
                "covers the crop"
            )
        return self.crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` [0, 1]-unit pixels to the model's pixel values (float32)."""
        x = x.to(torch.float32)
        height, width = int(x.shape[-2]), int(x.shape[-1])
        out_h, out_w = self.output_size(height, width)
        h, w = self.resized_size(height, width)
        if (h, w) != (height, width):
            x = functional.interpolate(
                x, size=(h, w), mode=self.mode, align_corners=False, antialias=True
            )
        if self.crop is not None:
            top, left = (h - out_h) // 2, (w - out_w) // 2
            x = x[..., top : top + out_h, left : left + out_w]
        return (x * self.scale - self.mean) / self.std


def single_token_spellings(tokenizer: Any, words: Iterable[str]) -> tuple[int, ...]:
    """Ids of every non-special token that decodes to one of ``words`` (any case, spaces stripped).

    For ``words = ("safe",)`` this finds e.g. ``"Safe"``, ``"▁Safe"``, ``"safe"``,
    ``"Ġsafe"``, ``"SAFE"``: the single-token spellings whose probability mass the judge
    adds up (:meth:`VisionLanguageJudge.logit_mass`).

    Args:
        tokenizer: a HF tokenizer (``batch_decode``, ``all_special_ids``, ``len``).
        words: the answer words.

    Returns:
        Sorted token ids (possibly empty).

    Example:
        >>> from smoothcert.adapters.tiny import build_tiny_llava
        >>> tok = build_tiny_llava().tokenizer
        >>> [tok.convert_ids_to_tokens(i) for i in single_token_spellings(tok, ["unsafe"])]
        ['Unsafe', 'unsafe', 'UNSAFE']
    """
    variants = set()
    for word in words:
        w = word.strip()
        variants |= {w, w.lower(), w.upper(), w.capitalize()}
    special = {int(i) for i in tokenizer.all_special_ids}
    decoded = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple(
        i for i, text in enumerate(decoded) if i not in special and text.strip() in variants
    )


def _id_tuple(ids: Any, *, name: str, vocab: int) -> tuple[int, ...]:
    values = tuple(sorted({int(i) for i in ids}))
    if not values or values[0] < 0 or values[-1] >= vocab:
        raise InvalidParameterError(
            f"{name} = {values!r} is invalid; valid: at least one token id in [0, {vocab - 1}]"
        )
    return values


class VisionLanguageJudge(torch.nn.Module):
    """A Llava-style HF judge as a ``(tokens, image) -> (safe, unsafe)`` logit model.

    See the module docstring for the inputs, the units of ``sigma`` and ``r`` (L2 over
    the original-resolution pixels in [0, 1]) and what happens inside :meth:`forward`.

    Args:
        model: a ``transformers`` ``LlavaForConditionalGeneration`` (or a model with the
            same interface: ``config.image_token_id``, ``config.vision_config.patch_size``,
            ``config.vision_feature_select_strategy``), in eval mode.
        tokenizer: its tokenizer.
        image_processor: its image processor (read by :meth:`ImagePreprocess.from_processor`).
        answer_prefix: text (or token ids) appended after the prompt, never noised and
            never editable, e.g. ``" ASSISTANT:"``; the decision is read at the next
            token after it.
        safe_words: words whose single-token spellings make up "safe".
        unsafe_words: words whose single-token spellings make up "unsafe".
        safe_ids: explicit "safe" token ids (overrides ``safe_words``).
        unsafe_ids: explicit "unsafe" token ids (overrides ``unsafe_words``).
        alphabet: the ids the token kernel draws from and the attacker may write;
            default: every tokenizer id except special tokens and the image token.

    Raises:
        InvalidParameterError: on an unsupported model or processor, no spelling of a
            class, overlapping safe and unsafe ids, or the image token in the alphabet.

    Example:
        >>> from smoothcert.adapters.tiny import build_tiny_llava
        >>> judge = build_tiny_llava().judge()
        >>> judge.num_image_tokens(16, 16), judge.alphabet.numel() > 2
        (16, True)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        *,
        answer_prefix: str | Sequence[int] = "",
        safe_words: Sequence[str] = ("safe",),
        unsafe_words: Sequence[str] = ("unsafe",),
        safe_ids: Sequence[int] | None = None,
        unsafe_ids: Sequence[int] | None = None,
        alphabet: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        config = getattr(model, "config", None)
        image_id = _field(config, "image_token_id")
        if image_id is None:
            image_id = _field(config, "image_token_index")
        patch = _field(_field(config, "vision_config"), "patch_size")
        strategy = _field(config, "vision_feature_select_strategy")
        if image_id is None or patch is None or strategy not in ("default", "full"):
            raise InvalidParameterError(
                f"model of type {type(model).__name__} is not supported; valid: a "
                "LlavaForConditionalGeneration-style model (config.image_token_id, "
                "config.vision_config.patch_size, vision_feature_select_strategy "
                "'default' or 'full')"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.image_token_id = int(image_id)
        self.patch_size = int(patch)
        self.extra_image_tokens = 1 if strategy == "full" else 0
        self.preprocess = ImagePreprocess.from_processor(image_processor)
        vocab = len(tokenizer)
        if isinstance(answer_prefix, str):
            prefix = tokenizer.encode(answer_prefix, add_special_tokens=False)
        else:
            prefix = [int(i) for i in answer_prefix]
        self.register_buffer(
            "answer_prefix", torch.tensor(prefix, dtype=torch.int64), persistent=False
        )
        if safe_ids is None:
            safe_ids = single_token_spellings(tokenizer, safe_words)
        if unsafe_ids is None:
            unsafe_ids = single_token_spellings(tokenizer, unsafe_words)
        self.safe_ids = _id_tuple(safe_ids, name="safe_ids", vocab=vocab)
        self.unsafe_ids = _id_tuple(unsafe_ids, name="unsafe_ids", vocab=vocab)
        if set(self.safe_ids) & set(self.unsafe_ids):
            raise InvalidParameterError(
                f"safe_ids and unsafe_ids share {sorted(set(self.safe_ids) & set(self.unsafe_ids))}"
                "; valid: disjoint token id sets"
            )
        self.register_buffer("_safe", torch.tensor(self.safe_ids), persistent=False)
        self.register_buffer("_unsafe", torch.tensor(self.unsafe_ids), persistent=False)
        if alphabet is None:
            excluded = {int(i) for i in tokenizer.all_special_ids} | {self.image_token_id}
            ids = torch.tensor([i for i in range(vocab) if i not in excluded], dtype=torch.int64)
        else:
            ids = eligible_index(alphabet, vocab)
        if bool((ids == self.image_token_id).any()) or ids.numel() < 2:
            raise InvalidParameterError(
                f"alphabet of {ids.numel()} ids is invalid; valid: at least two ids, without "
                f"the image token id {self.image_token_id}"
            )
        self.alphabet = ids
        # a new Module is in training mode: follow the wrapped model (the sampler
        # requires eval mode everywhere)
        self.train(bool(model.training))

    def num_image_tokens(self, height: int, width: int) -> int:
        """Placeholders for one image whose model pixel values are ``height x width``."""
        return (height // self.patch_size) * (width // self.patch_size) + self.extra_image_tokens

    def encode(self, text: str) -> torch.Tensor:
        """Token ids ``(L,)`` of a prompt (no special tokens added; include the image token).

        Example:
            >>> from smoothcert.adapters.tiny import build_tiny_llava
            >>> build_tiny_llava().judge().encode("USER: <image> a cat").tolist()
            [0, 23, 8, 9]
        """
        return torch.tensor(self.tokenizer.encode(text, add_special_tokens=False))

    def image_slot(self, tokens: torch.Tensor) -> int:
        """The position of the image token, the same in every row (one host sync).

        Raises:
            InvalidParameterError: if a row does not hold the image token exactly once,
                or rows hold it at different positions.
        """
        is_image = tokens == self.image_token_id
        counts = is_image.sum(dim=1)
        first = is_image.to(torch.int8).argmax(dim=1)
        ok, slot = torch.stack(
            [((counts == 1) & (first == first[0])).all().to(torch.int64), first[0]]
        ).tolist()
        if not ok:
            raise InvalidParameterError(
                f"tokens hold the image token id {self.image_token_id} "
                f"{counts.tolist()[:8]} times per row; valid: exactly once, at the same "
                "position in every row (the image slot; it must not be editable)"
            )
        return int(slot)

    def logit_mass(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` next-token logits -> ``(B, 2)``: logsumexp over the safe / unsafe ids.

        ``softmax`` of the result is ``P(safe) / (P(safe) + P(unsafe))`` and its
        complement, the next-token probabilities restricted to the two answers; the
        argmax picks the class with more probability mass (ties: safe).
        """
        logits = logits.to(torch.float32)
        return torch.stack(
            [
                torch.logsumexp(logits.index_select(1, self._safe), dim=1),
                torch.logsumexp(logits.index_select(1, self._unsafe), dim=1),
            ],
            dim=1,
        )

    def model_inputs(self, tokens: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The HF model's keyword inputs for a batch (what :meth:`forward` passes to it).

        Raises:
            InvalidParameterError: on wrong shapes or a bad image slot.
        """
        if tokens.ndim != 2 or image.ndim != 4 or tokens.shape[0] != image.shape[0]:
            raise InvalidParameterError(
                f"tokens.shape = {tuple(tokens.shape)}, image.shape = {tuple(image.shape)} are "
                "invalid; valid: tokens (B, L) and image (B, 3, H, W) with the same B"
            )
        if image.shape[1] != 3:
            raise InvalidParameterError(
                f"image.shape = {tuple(image.shape)} is invalid; valid: (B, 3, H, W) RGB pixels"
            )
        slot = self.image_slot(tokens)
        pixels = self.preprocess(image)
        count = self.num_image_tokens(int(pixels.shape[-2]), int(pixels.shape[-1]))
        batch = tokens.shape[0]
        ids = torch.cat(
            [
                tokens[:, :slot],
                tokens.new_full((batch, count), self.image_token_id),
                tokens[:, slot + 1 :],
                self.answer_prefix.to(tokens.device).expand(batch, -1),
            ],
            dim=1,
        )
        dtype = next(self.model.parameters()).dtype
        return {
            "input_ids": ids,
            "pixel_values": pixels.to(dtype),
            "attention_mask": torch.ones_like(ids),
        }

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """One forward pass of the judge: ``(B, L)`` tokens, ``(B, 3, H, W)`` pixels -> ``(B, 2)``.

        Noisy images may leave [0, 1]; they are passed on unclipped (clean inputs are
        checked by :meth:`check_inputs`).
        """
        out = self.model(**self.model_inputs(tokens, image), logits_to_keep=1)
        return self.logit_mass(out.logits[:, -1])

    def check_inputs(self, tokens: Any, image: Any, eligible: Any) -> None:
        """Check one clean (tokens, image) pair and its editable positions, before any work.

        Args:
            tokens: 1-D integer token ids ``(L,)`` (after the threat is applied).
            image: ``(3, H, W)`` float pixels in [0, 1], original resolution.
            eligible: the editable positions (indices or a boolean mask).

        Raises:
            InvalidParameterError: on an image that is not ``(3, H, W)`` floats in
                [0, 1], tokens without exactly one image token, no editable position, an
                editable image slot, or a token outside :attr:`alphabet` at an editable
                position.
        """
        tokens = check_tokens(tokens)
        if not isinstance(image, torch.Tensor) or not torch.is_floating_point(image):
            raise InvalidParameterError(
                f"image of type {type(image).__name__} "
                f"{getattr(image, 'dtype', '')} is invalid; valid: a float tensor (3, H, W) "
                "of pixels in [0, 1]"
            )
        if image.ndim != 3 or image.shape[0] != 3 or image.numel() == 0:
            raise InvalidParameterError(
                f"image.shape = {tuple(image.shape)} is invalid; valid: (3, H, W), one RGB "
                "image at its original resolution, no batch axis"
            )
        low, high = float(image.min()), float(image.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0.0 or high > 1.0:
            raise InvalidParameterError(
                f"image values in [{low}, {high}] are invalid; valid range: pixels in [0, 1] "
                "(divide uint8 images by 255); sigma and r are in these units"
            )
        self.preprocess.output_size(int(image.shape[1]), int(image.shape[2]))
        slot = self.image_slot(tokens.unsqueeze(0))
        idx = eligible_index(eligible, int(tokens.numel()))
        if idx.numel() == 0:
            raise InvalidParameterError(
                "the threat has no editable token positions (D = 0); valid: at least one "
                "editable position (e.g. append_suffix, last_d or positions)"
            )
        if bool((idx == slot).any()):
            raise InvalidParameterError(
                f"editable position {slot} is the image slot; valid: editable positions "
                "other than the image token's"
            )
        values = tokens[idx.to(tokens.device)].cpu()
        inside = torch.isin(values, self.alphabet)
        if not bool(inside.all()):
            first = int(torch.nonzero(~inside)[0, 0])
            raise InvalidParameterError(
                f"token id {int(values[first])} at editable position {int(idx[first])} is "
                f"invalid; valid: one of the judge's {self.alphabet.numel()} alphabet ids "
                "(the vocabulary without special tokens and the image token)"
            )


def certify_judge(
    judge: VisionLanguageJudge,
    tokens: torch.Tensor,
    image: torch.Tensor,
    *,
    threat: Any,
    sigma: float,
    beta: float,
    n: int,
    alpha: float,
    n0: int = 100,
    **options: Any,
) -> Any:
    """Hybrid-certify one (prompt, image) pair on a judge: checks, then ``hybrid.certify``.

    Checks the pair with :meth:`VisionLanguageJudge.check_inputs` (after applying the
    threat), then calls :func:`smoothcert.methods.hybrid.certify` with the judge's
    alphabet. ``sigma`` and the radii are L2 in [0, 1] pixel units of the original image.

    Args:
        judge: the :class:`VisionLanguageJudge`.
        tokens: the prompt's token ids ``(L,)`` with the image token once.
        image: ``(3, H, W)`` pixels in [0, 1].
        threat: the editable positions (:mod:`smoothcert.methods.threats`).
        sigma: image noise standard deviation, > 0, [0, 1] pixel units.
        beta: token substitution probability, in (0, 1).
        n: estimation samples.
        alpha: failure probability, in (0, 1).
        n0: selection samples (majority mode).
        **options: further keyword arguments of :func:`smoothcert.methods.hybrid.certify`
            (``target=UNSAFE`` and ``tau`` for a safety filter, ``batch_size``,
            ``seed``, ``autocast_dtype``, ...).

    Returns:
        The :class:`~smoothcert.records.CertifyResult`.

    Raises:
        InvalidParameterError: on bad inputs (see :meth:`~VisionLanguageJudge.check_inputs`)
            or parameters, before any sampling.

    Example:
        >>> from smoothcert.adapters.tiny import build_tiny_llava
        >>> from smoothcert.methods.threats import append_suffix
        >>> judge = build_tiny_llava().judge()
        >>> res = certify_judge(judge, judge.encode("USER: <image> a cat"),
        ...                     torch.full((3, 16, 16), 0.5), threat=append_suffix(2, 9),
        ...                     sigma=0.25, beta=0.1, n0=10, n=20, alpha=0.01, batch_size=10)
        >>> len(res.radius_curve)
        3
    """
    from smoothcert.methods import hybrid
    from smoothcert.methods._tokens_common import check_threat

    checked = check_threat(threat)
    applied = checked.apply(check_tokens(tokens))
    judge.check_inputs(applied.tokens, image, applied.eligible)
    return hybrid.certify(
        judge,
        tokens,
        image,
        sigma=sigma,
        beta=beta,
        alphabet=judge.alphabet,
        threat=checked,
        n0=n0,
        n=n,
        alpha=alpha,
        **options,
    )
