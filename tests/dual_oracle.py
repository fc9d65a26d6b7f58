"""Independent oracles for dual randomized smoothing (Sun, Mao & Vechev, arXiv 2512.01782).

Nothing here imports smoothcert: bounds come from scipy (``beta.ppf``, ``norm.ppf``), the
toy models' smoothed probabilities from closed forms, and the failure probability of the
whole two-stage procedure from exact binomial sums. Shared by ``tests/methods/test_dual.py``
and ``tests/certificates/test_dual.py``.

Toy setup (DESIGN.md rule 3): inputs in R^d; a sigma estimator that thresholds a linear
function (``h(z) = 1`` iff ``w_e . z > c``, else 0), whose smoothed vote for index 1 at
``sigma_e`` is ``Phi((w_e . x - c) / (sigma_e ||w_e||))``; linear experts (class 0 iff
``w . z + b > 0``), smoothed ``P(class 0) = Phi((w . x + b) / (sigma ||w||))``; and
constant experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, binom, norm


def cp_lower(k, n, alpha):
    """One-sided Clopper-Pearson lower bound ``B(alpha; k, n - k + 1)`` (0 at ``k = 0``)."""
    k = np.asarray(k)
    with np.errstate(invalid="ignore"):
        out = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)
    return out if out.ndim else float(out)


def cohen_radius(count, n, alpha, sigma):
    """Cohen's radius ``sigma Phi^-1(p_lower)`` of the top count, or None (abstain)."""
    p = cp_lower(count, n, alpha)
    return sigma * float(norm.ppf(p)) if p > 0.5 else None


@dataclass(frozen=True)
class OracleDecision:
    """What the dual procedure certifies from four count vectors (None: abstain)."""

    prediction: int | None
    radius: float
    radius_sigma: float | None
    radius_classifier: float | None
    index: int


def decide(
    counts,
    *,
    sigmas,
    sigma_estimator,
    n,
    alpha_sigma,
    alpha_classifier,
    use_min=True,
):
    """Re-derive the dual decision with scipy from ``counts`` (the four count vectors).

    ``counts`` = ``(sigma_selection, sigma_estimation, selection, estimation)``; the last
    two may be None when stage 1 abstained. ``use_min=False`` is a mutant (radius R_c only),
    and any ``alpha_sigma`` may be passed (a mutant doubles it).
    """
    sel1, est1, sel2, est2 = counts
    j = int(np.argmax(sel1))
    r_sigma = cohen_radius(est1[j], n, alpha_sigma, sigma_estimator)
    if r_sigma is None:
        return OracleDecision(None, 0.0, None, None, j)
    if sel2 is None or est2 is None:  # classifier stages not drawn: no certificate
        return OracleDecision(None, 0.0, r_sigma, None, j)
    cls = int(np.argmax(sel2))
    r_c = cohen_radius(est2[cls], n, alpha_classifier, sigmas[j])
    if r_c is None:
        return OracleDecision(None, 0.0, r_sigma, None, j)
    radius = min(r_sigma, r_c) if use_min else r_c
    return OracleDecision(cls, radius, r_sigma, r_c, j)


# --- toy models with closed-form smoothed probabilities --------------------------------


class ThresholdEstimator(torch.nn.Module):
    """Index 1 iff ``w_e . z > c`` (else 0), as two scores; optionally records its inputs."""

    def __init__(self, w, c, record=False):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32).flatten())
        self.c = float(c)
        self.record, self.seen, self.noisy_calls = record, [], 0

    def forward(self, z):
        if z.shape[0] > 1:
            self.noisy_calls += 1
        if self.record:
            self.seen.append(z.clone())
        v = z.flatten(1) @ self.w - self.c
        return torch.stack([-v, v], dim=1)

    def vote_probability(self, x, sigma):
        """Closed form ``P(h(x + e) = 1)``, ``e ~ N(0, sigma^2 I)``."""
        w = self.w.double()
        return float(norm.cdf((float(x.double().flatten() @ w) - self.c) / (sigma * w.norm())))

    def flip_distance(self, x):
        """Distance from ``x`` to the hyperplane where the smoothed choice flips."""
        w = self.w.double()
        return abs(float(x.double().flatten() @ w) - self.c) / float(w.norm())


class LinearExpert(torch.nn.Module):
    """Class 0 iff ``w . z + b > 0``, as two logits; optionally records its inputs."""

    def __init__(self, w, b, record=False):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32).flatten())
        self.b = float(b)
        self.record, self.seen, self.noisy_calls = record, [], 0

    def forward(self, z):
        if z.shape[0] > 1:
            self.noisy_calls += 1
        if self.record:
            self.seen.append(z.clone())
        v = z.flatten(1) @ self.w + self.b
        return torch.stack([v, -v], dim=1)

    def class0_probability(self, x, sigma):
        """Closed form smoothed ``P(class 0)`` at ``sigma``."""
        w = self.w.double()
        return float(norm.cdf((float(x.double().flatten() @ w) + self.b) / (sigma * w.norm())))

    def boundary_distance(self, x):
        w = self.w.double()
        return abs(float(x.double().flatten() @ w) + self.b) / float(w.norm())


class ConstantModel(torch.nn.Module):
    """Always ``cls`` among ``width`` outputs; counts its calls on noisy batches."""

    def __init__(self, cls, width=2):
        super().__init__()
        self.cls, self.width, self.noisy_calls, self.calls = cls, width, 0, 0

    def forward(self, z):
        self.calls += 1
        if z.shape[0] > 1:
            self.noisy_calls += 1
        out = torch.zeros(z.shape[0], self.width)
        out[:, self.cls] = 1.0
        return out


# --- exact failure probability of the two-stage procedure -------------------------------


def _select_probability(p_true, n0, true_index):
    """P(the argmax of n0 two-way votes is ``true_index``), ties to index 0 (np.argmax)."""
    k = np.arange(n0 + 1)
    pmf = binom.pmf(k, n0, p_true)  # k votes for true_index
    wins = (k > n0 - k) | ((k == n0 - k) & (true_index == 0))
    return float(pmf[wins].sum())


def _tail(p_true, n, alpha, sigma, r_true):
    """``(P(certified), P(certified and radius > r_true))`` for K ~ Bin(n, p_true)."""
    k = np.arange(n + 1)
    pmf = binom.pmf(k, n, p_true)
    lower = cp_lower(k, n, alpha)
    certified = lower > 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.where(certified, sigma * norm.ppf(lower), 0.0)
    return float(pmf[certified].sum()), float(pmf[certified & (radius > r_true)].sum())


def exact_miss_probability(
    *,
    p_estimator,
    true_index,
    p_class,
    true_class,
    sigma_estimator,
    sigma_chosen,
    r_true,
    n0,
    n,
    alpha_sigma,
    alpha_classifier,
    use_min=True,
):
    """Exact P(the procedure certifies a wrong class or a radius above ``r_true``).

    Two sigmas, two classes; the expert at the OTHER sigma is constant on a class other
    than ``true_class`` (so ``r_true = min(flip distance, classifier boundary distance)``
    and any certificate after a wrong choice of sigma is wrong). ``p_estimator`` is the
    smoothed estimator's probability of ``true_index``, ``p_class`` the chosen expert's
    smoothed probability of ``true_class`` at ``sigma_chosen``. The stages are independent,
    so the probability is a sum of products of exact binomial sums.
    """
    q1 = _select_probability(p_estimator, n0, true_index)
    b1, a1 = _tail(p_estimator, n, alpha_sigma, sigma_estimator, r_true)
    wrong_index_certified, _ = _tail(1 - p_estimator, n, alpha_sigma, sigma_estimator, math.inf)
    # after a wrong index the constant wrong expert certifies its class whenever the
    # n-of-n bound clears 1/2
    assert cp_lower(n, n, alpha_classifier) > 0.5
    q2 = _select_probability(p_class, n0, true_class)
    _, a2 = _tail(p_class, n, alpha_classifier, sigma_chosen, r_true)
    wrong_class_certified, _ = _tail(1 - p_class, n, alpha_classifier, sigma_chosen, math.inf)
    over_radius = (a1 if use_min else b1) * q2 * a2
    wrong_class = b1 * (1 - q2) * wrong_class_certified
    return q1 * (over_radius + wrong_class) + (1 - q1) * wrong_index_certified
