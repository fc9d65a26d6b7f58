"""The Hugging Face vision-language judge adapter on a tiny random Llava built offline.

Oracles: the HF processors themselves (LlavaProcessor / CLIPImageProcessorPil), PIL's
float-mode bicubic resampling, the full logits of the HF model, and the product kernel
re-drawn from the same seed; forward pre-hooks on the model's token embedding and vision
tower show what actually reaches the model during a smoothing run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.nn import functional

pytest.importorskip("transformers")

from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402

from smoothcert.adapters.hf_vlm import (  # noqa: E402
    SAFE,
    UNSAFE,
    ImagePreprocess,
    VisionLanguageJudge,
    certify_judge,
)
from smoothcert.adapters.tiny import WORDS, build_tiny_llava  # noqa: E402
from smoothcert.errors import InvalidParameterError  # noqa: E402
from smoothcert.methods import threats  # noqa: E402
from smoothcert.noise.gaussian import GaussianNoise  # noqa: E402
from smoothcert.noise.product import TokenImageNoise  # noqa: E402
from smoothcert.noise.tokens import TokenSubstitutionNoise  # noqa: E402

PROMPT = "USER: <image> is this image safe ?"


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llava(seed=0)


@pytest.fixture(scope="module")
def judge(tiny):
    return tiny.judge()


def photo(height: int, width: int, name: str = "china.jpg") -> np.ndarray:
    """A real photo (bundled with scikit-learn), uint8 HWC, cropped or resized by PIL."""
    img = load_sample_image(name)
    if height <= img.shape[0] // 4:
        img = np.asarray(Image.fromarray(img).resize((width * 4, height * 4)))
    return np.ascontiguousarray(img[:height, :width])


def as_pixels(arr: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float CHW in [0, 1] (the adapter's units)."""
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1).to(torch.float32) / 255


class Capture:
    """Forward pre-hooks on the token embedding and the vision tower."""

    def __init__(self, model):
        self.ids: list[torch.Tensor] = []
        self.pixels: list[torch.Tensor] = []
        self.handles = [
            model.get_input_embeddings().register_forward_pre_hook(self._ids, with_kwargs=True),
            model.model.vision_tower.register_forward_pre_hook(self._pixels, with_kwargs=True),
        ]

    def _ids(self, module, args, kwargs):
        self.ids.append((args[0] if args else kwargs["input"]).clone())

    def _pixels(self, module, args, kwargs):
        self.pixels.append((args[0] if args else kwargs["pixel_values"]).clone())

    def close(self):
        for h in self.handles:
            h.remove()


# --- the image pipeline against the HF processor and PIL ------------------------------


def test_preprocess_equals_hf_processor_when_no_resize_is_needed(tiny, judge):
    # shortest edge already 16: the processor only crops, rescales and normalises
    for shape in [(16, 21), (27, 16), (16, 16)]:
        arr = photo(*shape)
        ref = tiny.image_processor(Image.fromarray(arr), return_tensors="pt")["pixel_values"]
        ours = judge.preprocess(as_pixels(arr).unsqueeze(0))
        assert ours.shape == ref.shape == (1, 3, 16, 16)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(427, 640), (40, 61), (23, 17), (9, 13)])
def test_resize_equals_pil_float_bicubic(tiny, shape):
    # the linear part: no crop, no rescale (0..255 units), no normalisation
    pre = ImagePreprocess(size={"shortest_edge": 16}, resample=3, rescale_factor=None)
    arr = photo(*shape, name="flower.jpg")
    out = pre(as_pixels(arr).unsqueeze(0))[0]
    h, w = pre.resized_size(*shape)
    hf = tiny.image_processor(
        Image.fromarray(arr), do_center_crop=False, do_normalize=False, do_rescale=False
    )["pixel_values"][0]
    assert (h, w) == tuple(np.asarray(hf).shape[-2:])  # HF's own output size
    ref = np.stack(
        [
            np.asarray(Image.fromarray(arr[:, :, c].astype(np.float32), mode="F").resize((w, h), 3))
            for c in range(3)
        ]
    )
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-3, rtol=0)  # grey levels


@pytest.mark.parametrize("shape", [(427, 640), (40, 61), (23, 17)])
def test_preprocess_close_to_hf_processor_after_resize(tiny, judge, shape):
    """HF's PIL backend rounds the resized uint8 image and clips the bicubic overshoot.

    Where nothing is clipped, the two differ by at most one grey level (0.5 from each of
    PIL's two rounded passes); we resample in float and never round or clip.
    """
    arr = photo(*shape)
    ref = tiny.image_processor(Image.fromarray(arr), return_tensors="pt")["pixel_values"][0]
    ours = judge.preprocess(as_pixels(arr).unsqueeze(0))[0]
    linear = ImagePreprocess(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, rescale_factor=None
    )(as_pixels(arr).unsqueeze(0))[0]
    inside = (linear > 1.0) & (linear < 254.0)
    assert inside.float().mean() > 0.9
    std = torch.tensor(tiny.image_processor.image_std).view(3, 1, 1).expand_as(ours)
    grey_levels = ((ours - ref).abs() * std * 255)[inside]
    assert float(grey_levels.max()) <= 1.0 + 1e-3


# --- the model's inputs and the decision rule -----------------------------------------


def test_model_inputs_equal_llava_processor(tiny, judge):
    arr = photo(16, 21)
    tokens = judge.encode(PROMPT)
    ours = judge.model_inputs(tokens.unsqueeze(0), as_pixels(arr).unsqueeze(0))
    ref = tiny.processor(
        images=Image.fromarray(arr), text=PROMPT + " ASSISTANT:", return_tensors="pt"
    )
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert torch.equal(ours["attention_mask"], ref["attention_mask"].to(torch.int64))
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"], atol=1e-5, rtol=0)
    assert int((ours["input_ids"] == judge.image_token_id).sum()) == 16  # 4 x 4 patches


def test_logit_mass_equals_probabilities_from_full_logits(tiny, judge):
    arr = photo(16, 21)
    ref = tiny.processor(
        images=Image.fromarray(arr), text=PROMPT + " ASSISTANT:", return_tensors="pt"
    )
    with torch.inference_mode():
        logits = tiny.model(**ref).logits  # every position, the model's own call
        scores = judge(judge.encode(PROMPT).unsqueeze(0), as_pixels(arr).unsqueeze(0))
    probs = torch.softmax(logits[0, -1].double(), dim=0)
    safe = [WORDS.index(w) for w in ("Safe", "safe", "SAFE")]
    unsafe = [WORDS.index(w) for w in ("Unsafe", "unsafe", "UNSAFE")]
    assert judge.safe_ids == tuple(sorted(safe)) and judge.unsafe_ids == tuple(sorted(unsafe))
    p_safe, p_unsafe = float(probs[safe].sum()), float(probs[unsafe].sum())
    got = torch.softmax(scores[0].double(), dim=0)
    assert got[UNSAFE] == pytest.approx(p_unsafe / (p_safe + p_unsafe), abs=1e-6)
    diff = float(scores[0, UNSAFE] - scores[0, SAFE])
    assert diff == pytest.approx(np.log(p_unsafe) - np.log(p_safe), abs=1e-5)


def test_full_strategy_counts_the_cls_feature():
    tiny = build_tiny_llava(seed=1, strategy="full")
    judge = tiny.judge()
    arr = photo(16, 16)
    ours = judge.model_inputs(judge.encode(PROMPT).unsqueeze(0), as_pixels(arr).unsqueeze(0))
    ref = tiny.processor(
        images=Image.fromarray(arr), text=PROMPT + " ASSISTANT:", return_tensors="pt"
    )
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    with torch.inference_mode():
        assert judge(judge.encode(PROMPT)[None], as_pixels(arr)[None]).shape == (1, 2)


# --- what reaches the model during smoothing ------------------------------------------


def test_hooks_see_exactly_the_kernel_samples(tiny, judge):
    tokens = judge.encode(PROMPT)
    image = as_pixels(photo(20, 27))
    threat = threats.append_suffix(3, placeholder_id=WORDS.index("ok"))
    sigma, beta, seed, batch, n = 0.3, 0.5, 7, 8, 24
    capture = Capture(tiny.model)
    try:
        result = certify_judge(
            judge, tokens, image, threat=threat, sigma=sigma, beta=beta, n=n, alpha=0.01,
            target=UNSAFE, seed=seed, batch_size=batch,
        )  # fmt: skip
    finally:
        capture.close()
    # the same kernel, re-drawn from the same seed with the same batch sizes
    applied = threat.apply(tokens)
    bound = TokenImageNoise(
        TokenSubstitutionNoise(beta=beta, alphabet=judge.alphabet), GaussianNoise(sigma)
    ).bind(applied.tokens, image, applied.eligible)
    gen = torch.Generator().manual_seed(seed)
    draws = [
        tuple(t.clone() for t in bound.sample(batch, generator=gen)) for _ in range(n // batch)
    ]
    # first call: the sampler's probe on the clean input; then one call per batch
    assert len(capture.ids) == len(capture.pixels) == 1 + n // batch
    slot = int(tokens.tolist().index(judge.image_token_id))
    prefix = judge.answer_prefix
    mean = torch.tensor(tiny.image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny.image_processor.image_std).view(1, 3, 1, 1)
    editable = applied.eligible
    fixed = torch.ones(applied.tokens.numel(), dtype=torch.bool)
    fixed[editable] = False
    changed = 0
    for (toks, imgs), ids, pixels in zip(draws, capture.ids[1:], capture.pixels[1:], strict=True):
        # tokens: the prompt at fixed positions, alphabet samples at editable ones
        assert torch.equal(toks[:, fixed], applied.tokens[fixed].expand(batch, -1))
        assert bool(torch.isin(toks[:, editable], judge.alphabet).all())
        changed += int((toks[:, editable] != applied.tokens[editable]).sum())
        image_ids = torch.full((batch, 16), judge.image_token_id)
        expected = torch.cat(
            [toks[:, :slot], image_ids, toks[:, slot + 1 :], prefix.expand(batch, -1)], 1
        )
        assert torch.equal(ids, expected)
        # pixels: normalise(crop(resize(x + sigma eps))), written out independently
        eps = (imgs - image) / sigma
        assert abs(float(eps.std()) - 1.0) < 0.1
        noisy = image + sigma * eps
        resized = functional.interpolate(noisy, size=(16, 21), mode="bicubic", antialias=True)
        want = (resized[..., :, 2:18] - mean) / std
        torch.testing.assert_close(pixels, want, atol=1e-5, rtol=1e-5)
    assert changed > 0  # the kernel did substitute tokens
    # the evidence counts are the judge's argmax votes on exactly these samples
    with torch.inference_mode():
        votes = torch.cat([judge(t, i).argmax(1) for t, i in draws])
    counts = tuple(int((votes == c).sum()) for c in (SAFE, UNSAFE))
    assert result.evidence.stages[-1].counts == counts
    assert len(result.radius_curve) == 4  # d = 0..3


def test_certify_end_to_end_majority(judge):
    tokens = judge.encode(PROMPT)
    image = as_pixels(photo(18, 18))
    result = certify_judge(
        judge, tokens, image, threat=threats.last_d(2), sigma=0.25, beta=0.2,
        n0=8, n=32, alpha=0.01, seed=1, batch_size=16,
    )  # fmt: skip
    assert result.method == "hybrid"
    assert result.n0 == 8 and result.n == 32
    assert result.params.alphabet == len(WORDS)  # the contiguous alphabet 0..22
    assert len(result.radius_curve) == 3
    assert all(r >= 0 for r in result.radius_curve)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (torch.full((3, 16, 16), 1.2), r"\[1\.2.*valid range: pixels in \[0, 1\]"),
        (torch.full((3, 16, 16), -0.1), r"\[-0\.1.*valid range: pixels in \[0, 1\]"),
        (torch.full((1, 3, 16, 16), 0.5), r"image\.shape = \(1, 3, 16, 16\).*valid: \(3, H, W\)"),
        (torch.full((1, 16, 16), 0.5), r"image\.shape = \(1, 16, 16\)"),
        (torch.full((3, 16, 16), 128, dtype=torch.uint8), r"torch\.uint8 is invalid"),
        (torch.full((3, 16, 16), float("nan")), r"\[nan, nan\]"),
    ],
)
def test_bad_image_raises_before_any_forward(tiny, judge, image, match):
    capture = Capture(tiny.model)
    try:
        with pytest.raises(InvalidParameterError, match=match):
            certify_judge(
                judge, judge.encode(PROMPT), image, threat=threats.last_d(2), sigma=0.25,
                beta=0.2, n=10, alpha=0.01,
            )  # fmt: skip
    finally:
        capture.close()
    assert capture.ids == [] and capture.pixels == []


@pytest.mark.parametrize(
    ("prompt", "threat", "match"),
    [
        # "<s>" (a special token, id 25) at an editable position
        (PROMPT + " <s>", threats.last_d(1), r"token id 25 at editable position 7.*alphabet"),
        (PROMPT, threats.positions([]), r"no editable token positions"),
        (PROMPT, threats.anywhere(), r"editable position 1 is the image slot"),
        ("USER: is this safe ?", threats.last_d(1), r"image token id 23 \[0\] times"),
        ("USER: <image> <image> cat", threats.last_d(1), r"image token id 23 \[2\] times"),
    ],
)
def test_bad_tokens_raise_before_any_forward(tiny, judge, prompt, threat, match):
    capture = Capture(tiny.model)
    try:
        with pytest.raises(InvalidParameterError, match=match):
            certify_judge(
                judge, judge.encode(prompt), torch.full((3, 16, 16), 0.5), threat=threat,
                sigma=0.25, beta=0.2, n=10, alpha=0.01,
            )  # fmt: skip
    finally:
        capture.close()
    assert capture.ids == []


def test_forward_rejects_bad_batches(judge):
    tokens = judge.encode(PROMPT)
    with pytest.raises(InvalidParameterError, match=r"valid: tokens \(B, L\)"):
        judge(tokens, torch.zeros(1, 3, 16, 16))
    with pytest.raises(InvalidParameterError, match=r"\(B, 3, H, W\) RGB"):
        judge(tokens[None], torch.zeros(1, 1, 16, 16))
    rows = torch.stack([tokens, tokens.roll(1)])  # the image token moved in one row
    with pytest.raises(InvalidParameterError, match=r"same position in every row"):
        judge(rows, torch.zeros(2, 3, 16, 16))


def test_bad_judge_configuration(tiny):
    with pytest.raises(InvalidParameterError, match=r"share \[16\]"):
        tiny.judge(safe_ids=[16], unsafe_ids=[16, 17])
    with pytest.raises(InvalidParameterError, match=r"safe_ids = \(\) is invalid"):
        tiny.judge(safe_words=("nothing",))
    with pytest.raises(InvalidParameterError, match=r"without the image token id 23"):
        tiny.judge(alphabet=[0, 1, 23])
    with pytest.raises(InvalidParameterError, match=r"not supported"):
        VisionLanguageJudge(torch.nn.Linear(2, 2), tiny.tokenizer, tiny.image_processor)
    small = ImagePreprocess(size={"shortest_edge": 8}, crop_size={"height": 9, "width": 9})
    with pytest.raises(InvalidParameterError, match=r"resizes to 8 x 12, smaller than the crop"):
        small(torch.zeros(1, 3, 10, 15))
    with pytest.raises(InvalidParameterError, match=r"resample = 0 is not supported"):
        ImagePreprocess(size={"shortest_edge": 8}, resample=0)


def test_missing_transformers_names_the_extra():
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path=None, target=None):
                if fullname.split(".")[0] == "transformers":
                    raise ImportError("blocked")
                return None

        sys.meta_path.insert(0, Block())
        import smoothcert.adapters  # imports without transformers
        from smoothcert.adapters.tiny import build_tiny_llava
        try:
            build_tiny_llava()
        except ImportError as err:
            print(err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'smoothcert[hf]'" in proc.stdout
