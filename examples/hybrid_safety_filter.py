"""Certify a toy multimodal safety filter with hybrid text+image smoothing.

The filter flags a (prompt, image) pair as unsafe when the prompt contains a trigger
word AND the image is bright: each half alone is safe, the pair is not. An attacker
edits up to ``d`` tokens of a 10-token suffix appended to the prompt (a prompt-suffix
attack; it may write any vocabulary token, e.g. a "disclaimer" word that cancels the
trigger) and perturbs the image by ``delta`` with ``||delta||_2 < r`` (pixels in
[0, 1]).

The smoothed filter (uniform token substitution on the suffix x Gaussian noise on the
image; Delattre et al. 2026, arXiv 2605.12876) flags when ``P(unsafe) >= tau`` with a
tiny ``tau``. ``smoothcert.methods.hybrid.certify`` in safety-filter mode (``target=1``)
returns the curve ``r(d)``: with probability ``>= 1 - alpha`` the pair stays flagged
under every attack with at most ``d`` suffix edits and an image change of L2 norm below
``r(d)``.

The benign halves show the price of a tiny ``tau``: the suffix noise sometimes writes
the trigger word itself, so the smoothed filter also flags the benign prompt with a
bright image (a false positive of smoothing, not of the base filter).

Run: ``python examples/hybrid_safety_filter.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import torch

from smoothcert.methods import threats
from smoothcert.methods.hybrid import certify

VOCAB = 50  # token ids 0..49
TRIGGER, DISCLAIMER, PAD = 7, 3, 0
SUFFIX = 10


class ToyFilter(torch.nn.Module):
    """Unsafe (class 1) iff #trigger - #disclaimer >= 1 AND the mean pixel exceeds 0.5."""

    def forward(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Return scores ``(B, 2)`` (safe, unsafe) for tokens ``(B, L)``, images ``(B, ...)``."""
        text = (tokens == TRIGGER).sum(1) - (tokens == DISCLAIMER).sum(1)
        brightness = images.flatten(1).mean(1)
        unsafe = torch.minimum(text.to(images.dtype) - 0.5, 10 * (brightness - 0.5))
        return torch.stack([torch.zeros_like(unsafe), unsafe], dim=1)


def main() -> None:
    """Certify the unsafe pair and report how the smoothed filter treats its safe halves."""
    model = ToyFilter().eval()
    prompt = torch.tensor([12, TRIGGER, 20, 33])
    benign_prompt = torch.tensor([12, 21, 20, 33])
    bright, dark = torch.full((1, 8, 8), 0.8), torch.full((1, 8, 8), 0.2)
    common = dict(
        sigma=0.25,  # image noise, pixel units
        beta=0.5,  # suffix token substitution probability
        alphabet=VOCAB,
        n0=0,  # the class is fixed (target=1): no selection samples are needed
        n=20_000,
        alpha=0.001,
        tau=4.6e-5,  # the smoothed filter flags if P(unsafe) >= tau
        target=1,
        threat=threats.append_suffix(SUFFIX, placeholder_id=PAD),
        batch_size=5_000,
        seed=0,
    )
    pad = torch.full((SUFFIX,), PAD)
    cases = [
        ("trigger prompt + dark image", prompt, dark),
        ("benign prompt + bright image", benign_prompt, bright),
        ("trigger prompt + bright image", prompt, bright),
    ]
    print(f"{'pair':30s} base filter | smoothed P(unsafe) | certified flagged")
    for name, toks, img in cases:
        with torch.inference_mode():
            base = int(model(torch.cat([toks, pad])[None], img[None]).argmax(1))
        res = certify(model, toks, img, **common)
        print(
            f"{name:30s} {'unsafe' if base else 'safe':11s} | "
            f"{res.details.flag_rate:18.4f} | {not res.abstained}"
        )

    print(f"\nunsafe pair: p_lower = {res.p_lower:.4f}; stays flagged (tau = {common['tau']}, ")
    print(f"alpha = {common['alpha']}) under d suffix edits and ||delta||_2 < r(d):")
    print("  d | r(d)")
    for d, r in enumerate(res.radius_curve or ()):
        print(f"  {d:2d} | {r:.3f}")
    # The image part of the filter flips when the mean pixel drops below 0.5: the exact
    # L2 distance is (0.8 - 0.5) * 8 = 2.4, so no certified radius can exceed it.
    assert res.radius <= 2.4


if __name__ == "__main__":
    main()
