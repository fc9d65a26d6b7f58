"""A tiny randomly initialised Llava judge, built offline from ``transformers`` configs.

For tests, examples and docs of :mod:`smoothcert.adapters.hf_vlm` without downloading
weights: a ``LlavaForConditionalGeneration`` with a 2-layer CLIP vision tower (16 x 16
pixels, 4 x 4 patches: 16 image features) and a 2-layer Llama language model (hidden
size 32), random weights from a fixed seed; a word-level tokenizer (``tokenizers``)
whose vocabulary holds the answer words "Safe"/"Unsafe" in several spellings; the
``CLIPImageProcessorPil`` image processor (the PIL backend: no torchvision needed) and
the ``LlavaProcessor`` that ties them, as a real pipeline would. The model's decisions
mean nothing; its plumbing is that of a real Llava judge.

The ordinary words come first (ids ``0..K-1``) and the special tokens last, so the
judge's alphabet is the contiguous range ``0..K-1``.

Example:
    >>> tiny = build_tiny_llava(seed=0)
    >>> type(tiny.model).__name__, tiny.model.config.image_token_id
    ('LlavaForConditionalGeneration', 23)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from smoothcert.adapters.hf_vlm import VisionLanguageJudge, require_transformers

WORDS = (
    "USER:", "ASSISTANT:", "is", "this", "image", "content", "rating", ":", "a", "cat",
    "dog", "knife", "the", "?", ".", "!", "Safe", "Unsafe", "safe", "unsafe", "SAFE",
    "UNSAFE", "ok",
)  # fmt: skip
"""The ordinary words of the tiny vocabulary (ids 0..22)."""
SPECIALS = ("<image>", "<unk>", "<s>", "</s>", "<pad>")
"""Special tokens (ids 23..27): never in the judge's alphabet."""


@dataclass(frozen=True)
class TinyLlava:
    """The parts of the tiny judge: model, tokenizer, image processor, processor."""

    model: Any
    tokenizer: Any
    image_processor: Any
    processor: Any

    def judge(self, **options: Any) -> VisionLanguageJudge:
        """The :class:`~smoothcert.adapters.hf_vlm.VisionLanguageJudge` over this model.

        Args:
            **options: keyword arguments of :class:`VisionLanguageJudge`
                (default ``answer_prefix = "ASSISTANT:"``).
        """
        options.setdefault("answer_prefix", "ASSISTANT:")
        return VisionLanguageJudge(self.model, self.tokenizer, self.image_processor, **options)


def build_tiny_llava(
    seed: int = 0, *, image_size: int = 16, patch_size: int = 4, strategy: str = "default"
) -> TinyLlava:
    """Build the tiny Llava judge offline (random weights from ``seed``, eval mode).

    Args:
        seed: seed of the weights (``torch.Generator``-free: set via ``torch.manual_seed``
            inside a ``torch.random.fork_rng`` block, so the global RNG is untouched).
        image_size: the vision tower's input size (pixels) = the processor's crop size.
        patch_size: the vision tower's patch size.
        strategy: Llava's ``vision_feature_select_strategy`` (``"default"`` or ``"full"``).

    Returns:
        A :class:`TinyLlava`.

    Raises:
        ImportError: without ``transformers`` (``pip install 'smoothcert[hf]'``).
    """
    transformers = require_transformers()
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(WORDS + SPECIALS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    vision = transformers.CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    text = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
    )
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=vocab["<image>"],
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlavaForConditionalGeneration(config).eval()
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
    )
    return TinyLlava(model, tokenizer, image_processor, processor)
