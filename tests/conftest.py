import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import _tv_shim  # noqa: E402,F401  (lets timm import beside CPU-only torch)

torch.set_num_threads(min(2, torch.get_num_threads()))


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Give every parameter and BN statistic a non-trivial value, so equality tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for n, b in module.named_buffers():
            if n.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)
            elif n.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * scale)
    return module


@pytest.fixture
def randomize():
    return randomize_
