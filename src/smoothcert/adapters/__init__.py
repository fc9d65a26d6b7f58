"""Adapters that turn third-party models into models smoothcert can smooth.

- :mod:`smoothcert.adapters.hf_vlm`: a Hugging Face ``transformers`` vision-language
  safety judge (LlavaGuard-style) as a ``(tokens, image) -> (safe, unsafe)`` model for
  hybrid text+image smoothing (:mod:`smoothcert.methods.hybrid`). Needs the optional
  extra: ``pip install 'smoothcert[hf]'``; ``transformers`` is imported lazily, so this
  package imports without it.
- :mod:`smoothcert.adapters.tiny`: a tiny randomly initialised Llava judge built from
  ``transformers`` configs, offline (tests, examples, docs; no weights).
"""

from smoothcert.adapters.hf_vlm import (
    ImagePreprocess,
    VisionLanguageJudge,
    certify_judge,
    require_transformers,
    single_token_spellings,
)

__all__ = [
    "ImagePreprocess",
    "VisionLanguageJudge",
    "certify_judge",
    "require_transformers",
    "single_token_spellings",
]
