"""smoothcert: certified robustness by randomized smoothing.

Submodules:
    certificates: pure math, probability bound -> certified region (no torch).
    stats: pure statistics, counts -> confidence bounds (no torch).
    noise, sampling, methods: torch kernels, Monte Carlo engine, certify/predict.
    models, data: bundled small models and datasets.
    runner, reports: dataset runs with resume; tables and plots from result files.
"""

__version__ = "0.1.0"
