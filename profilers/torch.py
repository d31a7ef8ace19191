"""PyTorch profiler: every unit timed by PyTorch itself, on this machine's CPU or on a CUDA GPU.

Export: :func:`torch.export.export` of the module, already cast to the device entry's precision and moved
to its device, with an example input of the entry's ``batch`` (units are built with batch 1; the plugin
replaces the batch dimension), then :func:`torch.export.save` to a ``.pt2`` archive. The archive holds the
ATen graph as JSON and the weights as raw tensor bytes: loading it (:func:`torch.export.load`) runs none of
the project's Python and unpickles nothing for these plain-tensor modules. Load it only when this plugin
wrote it. When ``torch.export`` cannot capture a module, the plugin keeps the prepared module object in
memory, keyed by the export path (a short marker file stands at the path); it profiles in the process that
exported, so the runner finds it there. The loaded graph runs op by op on PyTorch's kernels, the Python of
the original ``nn.Module`` hierarchy gone, for blocks and whole networks alike.

Device entry fields (``profilers/devices.json``), each overridable on the command line:

* ``mode``: ``eager`` (default), ``cudagraph`` (CUDA only: the forward captured once in a
  :class:`torch.cuda.CUDAGraph` and replayed) or ``compile`` (:func:`torch.compile` with ``compile_mode``:
  ``default``, ``reduce-overhead``, ``max-autotune``, ``max-autotune-no-cudagraphs``);
* ``precision``: ``fp32``, ``fp16`` or ``bf16`` (module and input cast with ``.to(dtype)``; a precision
  this CPU's kernels do not run is refused);
* ``batch`` (default 1): the batch of every timed call; a table row is the time of one call of the whole
  batch (for ``batch`` 64, the time of 64 images, not per image);
* ``channels_last`` (default false): module and input in ``torch.channels_last`` memory format;
* ``cuda``: ``true`` (the current CUDA device) or a GPU index; absent for a CPU device. ``gpu`` (optional):
  a part of the expected GPU name (``"H200"``); another GPU is refused rather than measured under a wrong
  name.

Timing. CPU: :meth:`load` returns a callable that runs the loaded module once under
:func:`torch.inference_mode` with ``torch.set_num_threads(threads)``, timed with ``perf_counter`` by the
shared protocol (:class:`profilers.timing.protocol.Protocol`, rounds interleaved across units). CUDA: :meth:`measure`
runs the same protocol (:meth:`profilers.timing.protocol.Protocol.measure`: warm-up, then ``rounds`` rounds of
back-to-back calls, retried while the round medians vary more than ``max_cv``) with another clock: each
call is timed on the GPU with a pair of CUDA events recorded around it (:meth:`TorchProfiler._event_round`),
after :func:`torch.cuda.synchronize`. ``cudnn.benchmark`` is on for CUDA devices.

    python -m profilers.torch --device local-cpu
    python -m profilers.torch --device h200                     # on the H200 itself
    python -m profilers.torch --device local-cpu --mode compile --out /tmp/compiled.csv

Command-line values that differ from the device entry (``--mode``, ``--compile-mode``, ``--batch``,
``--channels-last``) need ``--out``: the device's own table, which calibration and validation measure
whole networks against with the entry's settings, keeps the entry's settings.
"""
from __future__ import annotations

import copy
import importlib
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nas.core.values import FLAG, POSITIVE_INT, TEXT, Rule, one_of, setting

from profilers.plugin.base import Loaded, Profiler, ProfilerUnavailable, software_info
from profilers.plugin.cli import main
from profilers.plugin.options import OptionsError, RuntimeOptions
from profilers.runtimes import register_runtime
from profilers.timing.protocol import LatencyStats

__all__ = ["TorchProfiler", "TorchOptions", "MODES", "COMPILE_MODES", "DTYPES", "CUDA_INSTALL", "nvidia_driver"]

log = logging.getLogger(__name__)

MODES = ("eager", "cudagraph", "compile")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: ``cuda`` of a device entry: true (the current GPU), false, or a GPU index
CUDA = Rule("true, false or a GPU index", "", lambda t: {"true": True, "false": False}.get(str(t).lower(), int(t)),
            lambda v: isinstance(v, bool) or (isinstance(v, int) and v >= 0))
#: precision names of the device registry -> (canonical name, dtype)
DTYPES = {"fp32": ("fp32", torch.float32), "float32": ("fp32", torch.float32),
          "fp16": ("fp16", torch.float16), "float16": ("fp16", torch.float16), "half": ("fp16", torch.float16),
          "bf16": ("bf16", torch.bfloat16), "bfloat16": ("bf16", torch.bfloat16)}
CUDA_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cu128"
_MARKER = "effv2-nas torch profiler: module kept in memory by the process that exported it\n"


@dataclass(frozen=True)
class TorchOptions(RuntimeOptions):
    """PyTorch's options (see the module docstring)."""
    mode: str = setting("eager", one_of(MODES), flag="--mode",
                        help="eager, cudagraph (CUDA only) or compile (default: the device entry's, else eager)")
    batch: int = setting(1, POSITIVE_INT, flag="--batch", help="batch of every timed call (default: the device "
                                                                 "entry's, else 1)")
    channels_last: bool = setting(False, FLAG, flag="--channels-last",
                                  help="module and input in channels_last memory format (default: the device entry's)")
    compile_mode: str | None = setting(None, one_of(COMPILE_MODES), optional=True, flag="--compile-mode",
                                       help="torch.compile mode with --mode compile (default: the device entry's, "
                                            "else default)")
    cuda: bool | int | None = setting(None, CUDA, optional=True, help="the CUDA GPU (true: the current one)")
    gpu: str | None = setting(None, TEXT, optional=True, help="part of the expected GPU's name")

    def check(self) -> None:
        if self.mode == "cudagraph" and not self.uses_cuda:
            raise OptionsError("mode 'cudagraph' captures a CUDA graph, but this is a CPU device (no 'cuda' in its "
                               "entry); use --mode eager or compile, or a CUDA device such as h200")
        if self.mode != "compile" and self.compile_mode is not None:
            object.__setattr__(self, "compile_mode", None)        # only compile has a compile mode

    @property
    def uses_cuda(self) -> bool:
        return self.cuda is not None and self.cuda is not False

    @property
    def effective_compile_mode(self) -> str | None:
        return (self.compile_mode or "default") if self.mode == "compile" else None



def nvidia_driver() -> str | None:
    """The NVIDIA driver's version (NVML, else ``nvidia-smi``), or None where neither answers."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:                                         # no NVML, no driver, no GPU
        pass
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None


@register_runtime
class TorchProfiler(Profiler):
    name = "torch"
    aliases = ("pytorch",)
    suffix = ".pt2"
    Options = TorchOptions

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        o = self.options
        self.mode: str = o.mode
        self.batch: int = o.batch
        self.channels_last: bool = o.channels_last
        self.compile_mode: str | None = o.effective_compile_mode
        prec = str(self.device.precision).lower()
        if prec not in DTYPES:
            raise OptionsError(f"device {self.device.name!r} has precision {self.device.precision!r}; the torch "
                               f"profiler runs {sorted({v[0] for v in DTYPES.values()})}")
        self.precision, self.dtype = DTYPES[prec]
        self.cuda = o.uses_cuda
        self.torch_device = torch.device("cpu") if not self.cuda else \
            torch.device("cuda") if o.cuda is True else torch.device("cuda", int(o.cuda))
        self._ready = False
        self._in_memory: dict[str, torch.nn.Module] = {}      # export path -> module torch.export could not save
        self._warned_fallback = False

    # -- what the table records -----------------------------------------------------------------
    def _gpu_index(self) -> int:
        return self.torch_device.index if self.torch_device.index is not None else torch.cuda.current_device()

    def runtime_version(self) -> str:
        v = f"torch {torch.__version__}"
        if self.cuda and torch.version.cuda:
            v += f" (CUDA {torch.version.cuda})"
        return v

    def software(self) -> dict:
        d = software_info()
        if self.cuda and torch.version.cuda:
            d["cuda"] = torch.version.cuda
            d["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
            d["driver"] = nvidia_driver()
        return d

    def settings(self) -> dict:
        d = {**super().settings(), "compile_mode": self.compile_mode, "precision": self.precision,
             "dtype": str(self.dtype).removeprefix("torch."), "device_type": self.torch_device.type,
             "exporter": "torch.export (.pt2)", "grad_mode": "torch.inference_mode"}
        if self.cuda:
            d["timed"] = "CUDA events around each call, after warm-up and torch.cuda.synchronize()"
            d["cudnn_benchmark"] = True
            d["gpu_name"] = torch.cuda.get_device_name(self._gpu_index()) if torch.cuda.is_available() else None
            d["cuda_version"] = torch.version.cuda
        else:
            d["timed"] = "module call (time.perf_counter, shared protocol)"
            d["intra_op_num_threads"] = self.threads
        return d

    def check_ready(self) -> None:
        if self._ready:
            return
        if self.cuda:
            gpu = self.options.gpu
            what = f"a CUDA GPU{f' ({gpu})' if gpu else ''}"
            if not torch.cuda.is_available():
                if torch.version.cuda is None:
                    why = f"this torch {torch.__version__} is a CPU-only build and no CUDA GPU is usable"
                else:
                    why = (f"this torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no CUDA "
                           f"GPU (no GPU or driver, or CUDA_VISIBLE_DEVICES hides it)")
                raise ProfilerUnavailable(
                    f"device {self.device.name!r} is timed on {what} with a CUDA build of torch, but {why}. Run it on "
                    f"the machine with that GPU, with a CUDA build of torch ({CUDA_INSTALL}), or pick a CPU device "
                    f"such as local-cpu")
            n = torch.cuda.device_count()
            if self.torch_device.index is not None and self.torch_device.index >= n:
                raise ProfilerUnavailable(f"device {self.device.name!r} asks for CUDA GPU {self.torch_device.index}, "
                                          f"but this machine has {n} GPU(s) (0..{n - 1})")
            have = torch.cuda.get_device_name(self._gpu_index())
            if gpu and str(gpu).lower() not in have.lower():
                raise ProfilerUnavailable(
                    f"device {self.device.name!r} is an NVIDIA {gpu}, but this machine's GPU is {have}: its table "
                    f"would describe another GPU. Measure it on a {gpu}, or add an entry for this GPU to "
                    f"profilers/devices.json (a copy of {self.device.name!r} with its own name and 'gpu')")
        self._ready = True

    # -- export and load --------------------------------------------------------------------------
    def batched_shape(self, input_shape: tuple) -> tuple[int, ...]:
        """``input_shape`` (built with batch 1) with this run's batch."""
        return (self.batch,) + tuple(int(s) for s in input_shape[1:])

    def example_input(self, input_shape: tuple) -> torch.Tensor:
        """A seeded random input of this run's batch, precision, device and memory format."""
        x = torch.randn(self.batched_shape(input_shape), generator=torch.Generator().manual_seed(0))
        x = x.to(device=self.torch_device, dtype=self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(device=self.torch_device, dtype=self.dtype)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    @staticmethod
    def _key(path) -> str:
        return str(Path(path).resolve())

    def _prune(self) -> None:
        """Forget in-memory modules whose export path is gone (their batch is done)."""
        for k in [k for k in self._in_memory if not Path(k).exists()]:
            del self._in_memory[k]

    def export(self, module, input_shape, path):
        """``module`` at this run's precision, device, batch and memory format, saved with
        :func:`torch.export.save` (or kept in memory when ``torch.export`` cannot capture or save it)."""
        self.check_ready()
        path = Path(path)
        self._prune()
        key = self._key(path)
        self._in_memory.pop(key, None)
        module = self._prepare(copy.deepcopy(module).eval())
        x = self.example_input(input_shape)
        try:
            ep = torch.export.export(module, (x,))
            torch.export.save(ep, str(path))
            torch.export.load(str(path))                      # what the runner will do: fail here, not there
        except Exception as e:                                # torch.export cannot take every module
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            (log.debug if self._warned_fallback else log.warning)(
                "torch.export could not save %s (%s); profiling the module object in memory instead", path.name, msg)
            self._warned_fallback = True
            path.write_text(_MARKER)
            self._in_memory[key] = module.eval()             # eval() drops what the failed trace cached
        return path

    def load_module(self, path) -> torch.nn.Module:
        """The module exported to ``path``, on this run's device, ready to call."""
        key = self._key(path)
        if key in self._in_memory:
            return self._in_memory[key]
        try:
            ep = torch.export.load(str(path))
        except Exception as e:
            head = Path(path).read_bytes()[:len(_MARKER)] if Path(path).is_file() else b""
            if head == _MARKER.encode():
                raise RuntimeError(f"{path} stands for a module kept in the memory of the process that exported it; "
                                   f"export and measure in one process") from None
            raise RuntimeError(f"{path} is not a torch.export archive ({type(e).__name__}: {e})") from e
        try:
            mod = ep.module(check_guards=False)
        except TypeError:                                     # a torch without the argument
            mod = ep.module()
        if hasattr(mod, "validate_inputs"):
            mod.validate_inputs = False                       # inputs are this plugin's own: skip per-call checks
        mod = mod.to(self.torch_device)
        if self.channels_last:
            mod = mod.to(memory_format=torch.channels_last)
        return mod

    # -- timing -----------------------------------------------------------------------------------
    def _compiled(self, mod: torch.nn.Module) -> torch.nn.Module:
        try:
            cfg = importlib.import_module("torch._dynamo").config
            for name in ("recompile_limit", "cache_size_limit"):         # in-memory modules share their code
                if hasattr(cfg, name):
                    setattr(cfg, name, max(int(getattr(cfg, name)), 1024))
                    break
            for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
                if hasattr(cfg, name):
                    setattr(cfg, name, max(int(getattr(cfg, name)), 65536))
                    break
        except (ImportError, AttributeError):
            pass
        return torch.compile(mod, mode=self.compile_mode, dynamic=False)

    def _first_calls(self, fn: Callable[[], object], n: int) -> None:
        """Run ``fn`` ``n`` times (compilation, lazy initialisation); a failure the user can act on becomes
        :class:`ProfilerUnavailable`."""
        try:
            for _ in range(n):
                fn()
        except Exception as e:
            if self.mode == "compile":
                raise ProfilerUnavailable(
                    f"torch.compile (mode {self.compile_mode!r}) failed on this machine ({type(e).__name__}: "
                    f"{str(e).strip()[:300]}); it needs a C++ compiler on CPU and triton on CUDA. Use --mode eager "
                    f"{'or cudagraph ' if self.cuda else ''}instead") from e
            if not self.cuda and self.dtype != torch.float32:
                raise ProfilerUnavailable(
                    f"precision {self.precision} does not run on this CPU with torch {torch.__version__} "
                    f"({type(e).__name__}: {str(e).strip()[:300]}); use a device entry with precision fp32") from e
            raise

    def load(self, path, input_shape):
        """CPU: the module loaded, its call running it once under ``torch.inference_mode`` (its
        ``input_shape`` attribute is the batch-replaced shape). CUDA devices are timed by :meth:`measure`
        instead (None)."""
        if self.cuda:
            return None
        self.check_ready()
        if torch.get_num_threads() != max(1, int(self.threads)):
            torch.set_num_threads(max(1, int(self.threads)))
        mod = self.load_module(path)
        if self.mode == "compile":
            mod = self._compiled(mod)
        x = self.example_input(input_shape)

        def run():
            with torch.inference_mode():
                return mod(x)

        def predict(v):
            with torch.inference_mode():
                return mod(torch.as_tensor(v).to(device=self.torch_device, dtype=self.dtype)).float().cpu().numpy()

        self._first_calls(run, 2 if self.mode == "compile" else 1)
        run.input_shape = tuple(x.shape)
        run.dtype = x.dtype
        run.channels_last = bool(x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
        return Loaded(run, predict)

    def measure(self, path, input_shape) -> LatencyStats:
        if not self.cuda:
            return super().measure(path, input_shape)
        self.check_ready()
        torch.backends.cudnn.benchmark = True
        with torch.cuda.device(self._gpu_index()), torch.inference_mode():
            fn = self._cuda_callable(path, input_shape)
            torch.cuda.synchronize()
            return self.protocol.measure(fn, timer=self._event_round)

    def _cuda_callable(self, path, input_shape) -> Callable[[], object]:
        mod = self.load_module(path)
        x = self.example_input(input_shape)
        if self.mode == "compile":
            cmod = self._compiled(mod)
            fn = lambda: cmod(x)
            self._first_calls(fn, 3)                          # compile; reduce-overhead records its graphs
            return fn
        if self.mode == "eager":
            fn = lambda: mod(x)
            self._first_calls(fn, 1)
            return fn
        # cudagraph: warm up on a side stream (as torch.cuda.graph requires), capture once, replay
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                mod(x)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = mod(x)
        keep = (mod, x, out)                                  # the graph's static input, output and weights

        def replay():
            graph.replay()
            return keep

        return replay

    @staticmethod
    def _event_round(fn: Callable[[], object], runs: int) -> np.ndarray:
        """``runs`` back-to-back calls, each bracketed by two CUDA events; their GPU times (ms)."""
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
        for a, b in zip(starts, ends):
            a.record()
            fn()
            b.record()
        ends[-1].synchronize()
        return np.array([a.elapsed_time(b) for a, b in zip(starts, ends)], dtype=float)


if __name__ == "__main__":
    raise SystemExit(main(TorchProfiler))
