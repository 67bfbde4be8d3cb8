"""The CPU's measured fp32 arithmetic peak: the fastest large float32 matmul at a fixed thread count."""

from __future__ import annotations

from bench.timing import median, time_fn


def _time_matmul(engine: str, n: int, threads: int, repeats: int, warmup: int) -> list[float]:
    """Seconds of `repeats` n x n x n float32 matmuls by `engine` ("torch" or "numpy")."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if engine == "torch":
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        ta, tb, out = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)

        def run() -> None:
            torch.matmul(ta, tb, out=out)
    elif engine == "numpy":
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(threads)
        out_np = np.empty((n, n), np.float32)

        def run() -> None:
            np.matmul(a, b, out=out_np)
    else:
        raise ValueError(f"unknown matmul engine {engine!r}")
    try:
        return time_fn(run, warmup, repeats)["times_s"]
    finally:
        if engine == "torch":
            torch.set_num_threads(old)
        else:
            limits.restore_original_limits()


def measure_matmul_peak(sizes: tuple[int, ...] = (1024, 2048, 3072), threads: int = 2, repeats: int = 5,
                        warmup: int = 2, engines: tuple[str, ...] = ("torch", "numpy")) -> dict:
    """The CPU's fp32 peak as the fastest float32 matmul (2 n^3 FLOPs) over `sizes` and BLAS `engines`
    (torch's oneDNN/MKL and numpy's BLAS), best of `repeats` runs each.

    One engine at one size can miss the hardware's rate (a size that tiles badly, a BLAS that is not
    tuned for the CPU), and an optimized runtime then appears to beat the "peak"; the best over
    several is a tighter lower bound of the true peak. `runs` keeps every measurement.
    """
    if not sizes or min(sizes) < 64 or repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"bad peak settings: sizes={sizes}, repeats={repeats}, warmup={warmup}, threads={threads}")
    runs = []
    for engine in engines:
        for n in sizes:
            times = _time_matmul(engine, n, threads, repeats, warmup)
            flops = 2.0 * n**3
            runs.append({"engine": engine, "n": n, "gflops_best": flops / min(times) / 1e9,
                         "gflops_median": flops / median(times) / 1e9})
    best = max(runs, key=lambda r: r["gflops_best"])
    return {"threads": threads, "repeats": repeats, "runs": runs, "engine": best["engine"], "n": best["n"],
            "gflops_best": best["gflops_best"], "gflops_median": best["gflops_median"]}


def peak_share(macs: int, seconds: float, peak_gflops: float) -> float:
    """Share of the peak reached by a model of `macs` multiply-accumulates running in `seconds`."""
    if seconds <= 0 or peak_gflops <= 0:
        raise ValueError(f"seconds and peak must be positive, got {seconds} and {peak_gflops}")
    return 2.0 * macs / seconds / 1e9 / peak_gflops
