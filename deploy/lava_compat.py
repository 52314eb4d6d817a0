"""Python 3.11 shims for lava-nc 0.10 / lava-dl 0.6 (docs: ../shared/notes/LAVA.md §2, §9).

Import this module before anything imports Lava. `install()` runs on import and is idempotent:

* `ByteEncoder` in `lava.magma.compiler.var_model` is a plain (unhashable) dataclass used as a
  field default, which Python 3.11 rejects; the module is loaded from its own source with the
  decorator replaced by `@dataclass(unsafe_hash=True)` (no site-packages edit).
* Lava's runtime calls `multiprocessing.set_start_method('fork')` at import, which raises when
  anything (a tqdm bar's lock, a Queue) already fixed the default context; if that context is
  'fork' anyway, it is cleared so Lava's call succeeds with the same result.
* `lava.lib.dl.slayer` eagerly imports its YOLO helpers, which need torchvision; when torchvision
  does not import, an empty stub module takes the helpers' place (only `slayer.obd` is lost).

`run_or_raise(proc, condition, cfg)` runs a network and, when a worker failed, re-raises the
workers' hidden tracebacks as one readable `LavaRunError`, never calling `stop()` (LAVA.md §9).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

VAR_MODEL = "lava.magma.compiler.var_model"
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"
_UNHASHABLE = "@dataclass\nclass ByteEncoder:"
_HASHABLE = "@dataclass(unsafe_hash=True)\nclass ByteEncoder:"


class LavaRunError(RuntimeError):
    """A Lava run failed inside a worker process; the message holds the workers' tracebacks."""


def patch_var_model() -> bool:
    """Load Lava's var_model with a hashable ByteEncoder (Python >= 3.11); True when patched now."""
    if sys.version_info < (3, 11) or VAR_MODEL in sys.modules:
        return False
    spec = importlib.util.find_spec(VAR_MODEL)
    if spec is None or spec.origin is None:
        return False
    with open(spec.origin, encoding="utf-8") as handle:
        source = handle.read()
    if _UNHASHABLE not in source:
        return False
    module = importlib.util.module_from_spec(spec)
    sys.modules[VAR_MODEL] = module
    try:
        exec(compile(source.replace(_UNHASHABLE, _HASHABLE), spec.origin, "exec"), module.__dict__)
    except BaseException:
        del sys.modules[VAR_MODEL]
        raise
    return True


def stub_object_detection() -> bool:
    """Register an empty `slayer.object_detection` when torchvision is unusable; True when stubbed."""
    if OBJECT_DETECTION in sys.modules:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or installed against another torch build (operator errors)
        sys.modules[OBJECT_DETECTION] = types.ModuleType(OBJECT_DETECTION)
        return True
    return False


def allow_fork_start_method() -> bool:
    """Let Lava's import-time `set_start_method('fork')` pass when the default context is already fork."""
    import multiprocessing
    from multiprocessing import context

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return False
    if multiprocessing.get_start_method(allow_none=True) == "fork":
        context._default_context._actual_context = None  # Lava sets exactly this again
        return True
    return False


def install() -> None:
    """Apply the shims (safe to call any number of times)."""
    patch_var_model()
    stub_object_detection()
    allow_fork_start_method()


def worker_tracebacks(proc: Any) -> list[str]:
    """Traceback texts the failed Lava workers of `proc`'s runtime recorded (empty when none)."""
    runtime = getattr(proc, "_runtime", None)
    infrastructure = getattr(runtime, "_messaging_infrastructure", None)
    texts = []
    for actor in getattr(infrastructure, "actors", None) or []:
        exception = getattr(actor, "exception", None)
        if exception:
            texts.append(str(exception[1]) if len(exception) > 1 else str(exception[0]))
    return texts


def raise_worker_error(proc: Any, error: BaseException) -> None:
    """Re-raise `error` of a failed run with the workers' tracebacks; never stops the runtime."""
    texts = worker_tracebacks(proc)
    if not texts:
        raise LavaRunError(f"Lava run failed: {error}") from error
    body = "\n".join(f"--- worker {i} ---\n{text.rstrip()}" for i, text in enumerate(texts))
    raise LavaRunError(f"Lava run failed in {len(texts)} worker(s):\n{body}") from error


def run_or_raise(proc: Any, condition: Any, run_cfg: Any = None) -> None:
    """`proc.run(condition, run_cfg)`; on a worker failure raise LavaRunError (do not call stop())."""
    try:
        if run_cfg is None:
            proc.run(condition=condition)
        else:
            proc.run(condition=condition, run_cfg=run_cfg)
    except RuntimeError as error:
        raise_worker_error(proc, error)


def wait_or_raise(proc: Any) -> None:
    """`proc.wait()` after a non-blocking run, with the same error handling as `run_or_raise`."""
    try:
        proc.wait()
    except RuntimeError as error:
        raise_worker_error(proc, error)


install()
