"""How fp32 matrix products run on the CPU: MKL's sgemm (torch's default) or oneDNN's fp32 matmul kernels.

On AMD CPUs MKL's sgemm takes a generic code path: on this project's 2-core AMD EPYC (AVX-512) it reaches about
190 GFLOP/s where oneDNN's ``brg_matmul:avx512_core`` fp32 kernel reaches about 450 on the LLM's shapes. torch
sends fp32 ``linear``/``matmul`` to oneDNN only when ``torch.backends.mkldnn.matmul.fp32_precision`` is ``"bf16"``,
which *allows* oneDNN to round the inputs to bfloat16: CPUs with AMX (and oneDNN versions that use it there) do,
this one does not (its kernel stays fp32; results differ from MKL's by summation order only, ~3e-7 relative).
So ``use_onednn_matmuls("auto")`` switches only after a probe shows that the switch keeps full fp32 precision
(a product whose exact value needs more than bfloat16's 8 mantissa bits comes back exact, at a decode-sized and a
prefill-sized shape), and otherwise leaves torch as it was. ``configure_from_env()`` reads
``BIOREASON_CPU_MATMUL`` (``auto``, the default; ``onednn``, which forces the switch, bf16 rounding included where
oneDNN does it; ``blas`` = torch's default) and is called by the CLI's model commands (ask, predict, eval, train,
demo); library users call ``use_onednn_matmuls`` themselves. torch before 2.9 lacks the setting: there ``auto`` and
``blas`` leave torch as it is and ``onednn`` is an error. What it changes is measured side by side by
``benchmarks/predict.py`` and ``benchmarks/train_step.py`` (``--cpu-matmul``). ``bf16_products_pay()`` times
whether bfloat16 products beat fp32 ones here by ``BF16_MIN_SPEEDUP``: ``--quantize auto`` (``quantize.resolve_mode``)
runs scoring with them where they do.
"""

from __future__ import annotations

import contextlib
import functools
import os

ENV = "BIOREASON_CPU_MATMUL"
MODES = ("auto", "onednn", "blas")
BF16_MIN_SPEEDUP = 1.3  # bf16_products_pay: what bfloat16 products must gain to be the CLI's default


def _backend():
    """torch's oneDNN matmul settings, or None in a torch without ``fp32_precision`` (before 2.9)."""
    import torch

    backend = getattr(torch.backends.mkldnn, "matmul", None)
    return backend if backend is not None and hasattr(backend, "fp32_precision") else None


@functools.lru_cache(maxsize=1)
def onednn_keeps_fp32() -> bool:
    """True when fp32 products sent to oneDNN come back at fp32 precision on this CPU (see the module docstring).

    Probes ``linear`` at a decode-sized (1 row) and a prefill-sized (64 rows) product of 576 terms whose inputs
    need 13 mantissa bits (1 + 2**-12; bfloat16 keeps 8): rounded to bfloat16 each term loses its 2**-12 part and
    the sum comes back 576.0 instead of 576.14 (fp32 accumulation keeps it to within a few 1e-4)."""
    import torch

    backend = _backend()
    if backend is None or not torch.backends.mkldnn.is_available():
        return False
    before = backend.fp32_precision
    try:
        backend.fp32_precision = "bf16"
        for rows in (1, 64):
            x = torch.full((rows, 576), 1 + 2 ** -12)
            got = torch.nn.functional.linear(x, torch.ones(64, 576))
            if (got - 576 * (1 + 2 ** -12)).abs().max().item() > 0.01:
                return False
        return True
    except RuntimeError:  # a build without the setting, or oneDNN refusing the product
        return False
    finally:
        backend.fp32_precision = before


def use_onednn_matmuls(mode: str = "auto") -> bool:
    """Route fp32 CPU matmuls through oneDNN (``onednn``), or leave them on torch's BLAS (``blas``); ``auto`` routes
    them only when :func:`onednn_keeps_fp32`. Returns whether oneDNN is now used. Process-wide, like torch's own
    precision settings; CUDA is not affected."""
    from bioreason.errors import BioreasonError

    if mode not in MODES:
        raise BioreasonError(f"{ENV} must be one of {', '.join(MODES)}, not {mode!r}")
    backend = _backend()
    if backend is None:
        if mode == "onednn":
            import torch

            raise BioreasonError(f"{ENV}=onednn needs torch >= 2.9 (this is {torch.__version__}); use auto or blas")
        return False
    if mode == "blas":
        backend.fp32_precision = "none"
        return False
    if mode == "auto" and not onednn_keeps_fp32():
        return False
    backend.fp32_precision = "bf16"
    return True


@functools.lru_cache(maxsize=1)
def bf16_products_pay(min_speedup: float = BF16_MIN_SPEEDUP) -> bool:
    """True when a prefill-sized linear product (256 x 576 by 576 x 1536, the embedded LLM's MLP) runs at least
    ``min_speedup`` times faster with its input and weight in bfloat16 (the input's rounding and the output's
    conversion back to fp32 included, as ``bf16_products.BF16Products`` runs it) than in fp32 with the matmul
    backend in use now: CPUs with native bfloat16 arithmetic (AVX512-BF16, AMX) give about 2x, CPUs that emulate
    it 1x or less. Best of 5 interleaved timings each (about 0.1 s in all), once per process."""
    import time

    import torch

    x, w = torch.randn(256, 576), torch.randn(1536, 576)
    wb = w.to(torch.bfloat16)
    runs = {"fp32": lambda: torch.nn.functional.linear(x, w),
            "bf16": lambda: torch.nn.functional.linear(x.to(torch.bfloat16), wb).float()}
    best = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        try:
            for fn in runs.values():
                fn()
        except RuntimeError:  # a build without bfloat16 matmuls on this CPU
            return False
        for _ in range(5):  # interleaved, so a load that comes and goes slows both alike
            for name, fn in runs.items():
                t0 = time.perf_counter()
                for _ in range(3):
                    fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    fp32, bf16 = best["fp32"], best["bf16"]
    return fp32 / bf16 >= min_speedup


def onednn_in_use() -> bool:
    """Whether fp32 CPU matmuls currently go to oneDNN (as set by :func:`use_onednn_matmuls`)."""
    backend = _backend()
    return backend is not None and backend.fp32_precision == "bf16"


@contextlib.contextmanager
def matmuls(mode: str):
    """``use_onednn_matmuls(mode)`` for the duration of a block (benchmarks compare both ways in one process)."""
    backend = _backend()
    before = backend.fp32_precision if backend is not None else None
    try:
        yield use_onednn_matmuls(mode)
    finally:
        if backend is not None:
            backend.fp32_precision = before


def configure_from_env() -> bool:
    """``use_onednn_matmuls`` with the mode ``BIOREASON_CPU_MATMUL`` names (default ``auto``)."""
    return use_onednn_matmuls(os.environ.get(ENV, "auto").strip().lower() or "auto")


__all__ = ["BF16_MIN_SPEEDUP", "ENV", "MODES", "bf16_products_pay", "configure_from_env", "matmuls", "onednn_in_use",
           "onednn_keeps_fp32", "use_onednn_matmuls"]
