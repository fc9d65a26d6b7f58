"""Overhead of the certification engine over the bare forward passes of the same model.

For each model and batch size this measures
  * bare: forward + argmax on the same number of PRE-GENERATED noisy inputs
    (noise drawn before the clock starts), under torch.inference_mode();
  * engine: smoothcert.sampling.count_classes with the GaussianNoise sampler, i.e.
    what certify() runs: noise drawn on the device into a reused buffer, forward,
    argmax, counts accumulated on the device with no per-batch host sync;
and prints samples/s of both and the overhead ratio engine_time / bare_time.

Models: the bundled digits CNN (1x8x8) and a larger CNN on 32x32x3 inputs
(randomly initialised, CIFAR-sized, about 0.6 M parameters).

Also run (as ``engine_overhead``) by ``benchmarks/run_all.py``.

Usage:
    python benchmarks/bench_engine_overhead.py [--samples 20000] [--batch-sizes 256 1024]
        [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from smoothcert.noise import GaussianNoise
from smoothcert.sampling import count_classes, make_generator


class Cifar32CNN(torch.nn.Module):
    """A VGG-style CNN for 3x32x32 inputs, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        c = torch.nn
        self.net = c.Sequential(
            c.Conv2d(3, 32, 3, padding=1), c.ReLU(),
            c.Conv2d(32, 64, 3, padding=1), c.ReLU(), c.MaxPool2d(2),
            c.Conv2d(64, 128, 3, padding=1), c.ReLU(), c.MaxPool2d(2),
            c.Conv2d(128, 128, 3, padding=1), c.ReLU(), c.MaxPool2d(2),
            c.Flatten(), c.Linear(128 * 16, 256), c.ReLU(), c.Linear(256, 10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_bare(model, x, sigma, samples, batch_size, device) -> float:
    g = make_generator(0, device)
    batches = []
    left = samples
    while left > 0:
        b = min(batch_size, left)
        batches.append(x + sigma * torch.randn((b, *x.shape), generator=g, device=device))
        left -= b
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        preds = [model(batch).argmax(1) for batch in batches]
    _sync(device)
    del preds
    return time.perf_counter() - start


def time_engine(model, x, sigma, samples, batch_size, device) -> float:
    kernel = GaussianNoise(sigma)
    g = make_generator(0, device)
    _sync(device)
    start = time.perf_counter()
    count_classes(
        model,
        lambda b: (kernel.sample(x, b, generator=g),),
        samples,
        num_classes=10,
        batch_size=batch_size,
        device=device,
    )
    _sync(device)
    return time.perf_counter() - start


def run_overhead(
    device: torch.device | str = "cpu",
    *,
    samples: int = 20_000,
    large_samples: int = 4096,
    batch_sizes: tuple[int, ...] = (256, 1024),
    repeats: int = 3,
) -> list[dict]:
    """Bare vs engine samples/s for both models and each batch size (best of ``repeats``).

    Returns one dict per (model, batch size) with ``bare_samples_per_s``,
    ``engine_samples_per_s`` and ``overhead_ratio`` (engine time / bare time).
    """
    from smoothcert.models import load_model

    device = torch.device(device)
    models = {
        "digits_cnn (1x8x8)": (
            load_model("digits_cnn", sigma=0.25, device=device),
            (1, 8, 8),
            samples,
        ),
        "cifar32_cnn (3x32x32)": (
            Cifar32CNN().to(device).eval(),
            (3, 32, 32),
            large_samples,
        ),
    }
    rows = []
    for label, (model, shape, num) in models.items():
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
        for batch_size in batch_sizes:
            # Warm-up, then best of `repeats` for each measurement.
            time_bare(model, x, 0.25, batch_size, batch_size, device)
            time_engine(model, x, 0.25, batch_size, batch_size, device)
            bare = min(time_bare(model, x, 0.25, num, batch_size, device) for _ in range(repeats))
            engine = min(
                time_engine(model, x, 0.25, num, batch_size, device) for _ in range(repeats)
            )
            rows.append(
                {
                    "model": label,
                    "batch_size": batch_size,
                    "samples": num,
                    "bare_samples_per_s": num / bare,
                    "engine_samples_per_s": num / engine,
                    "overhead_ratio": engine / bare,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="for the digits CNN")
    parser.add_argument("--large-samples", type=int, default=4096, help="for the 32x32 CNN")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name or platform.machine()}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print("| model | batch | bare samples/s | engine samples/s | overhead ratio |")
    print("|---|---|---|---|---|")
    for row in run_overhead(
        device,
        samples=args.samples,
        large_samples=args.large_samples,
        batch_sizes=tuple(args.batch_sizes),
        repeats=args.repeats,
    ):
        print(
            f"| {row['model']} | {row['batch_size']} | {row['bare_samples_per_s']:,.0f} | "
            f"{row['engine_samples_per_s']:,.0f} | {row['overhead_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
