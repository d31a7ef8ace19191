"""Faster training steps compute what a plain step computes: gradient accumulation, precision, memory
layout."""
import pandas as pd
import pytest
import torch

from nas.core.errors import UserError
from nas.space.spaces import TINY_SPACE
from nas.supernet.elastic import SwitchableBatchNorm2d
from nas.supernet.supernet import SlimmableSupernet
from nas.training import TrainConfig, train
from nas.training.config import ConfigError
from nas.training.precision import resolve_precision
from nas.training.sandwich import SandwichLoss, sandwich_archs, sandwich_step


def _grads(accum_steps: int, channels_last: bool = False) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = SlimmableSupernet(TINY_SPACE, num_classes=10, img_size=64).train()
    for m in net.modules():                 # BatchNorms on running statistics: a sum over images
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, SwitchableBatchNorm2d)):
            m.eval()
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    if channels_last:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model = SandwichLoss(net)
    sandwich_step(model, x, y, sandwich_archs(TINY_SPACE, 0, 0, 1), precision=resolve_precision("fp32", "cpu"),
                  accum_steps=accum_steps)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


def test_gradient_accumulation_adds_up_to_the_whole_batch():
    whole, split = _grads(1), _grads(4)
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_channels_last_computes_the_same_gradients():
    for a, b in zip(_grads(1), _grads(1, channels_last=True)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_precision_resolution():
    assert resolve_precision("auto", "cpu").dtype is None               # fp32 on a CPU
    assert resolve_precision("bf16", "cpu").dtype is torch.bfloat16
    with pytest.raises(UserError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="multiple of accum_steps"):
        TrainConfig(batch_size=10, accum_steps=4)


def test_bf16_channels_last_accumulated_training_runs_and_learns(tmp_path):
    cfg = dict(space="tiny", batch_size=16, train_subset=400, eval_size=100, calib_batches=2, progress=False,
               plot=False, threads=1, steps=6, eval_every=0, ckpt_every=6)
    s = train(TrainConfig(out=str(tmp_path / "fast"), precision="bf16", channels_last=True, accum_steps=2, **cfg))
    rows = pd.read_csv(tmp_path / "fast" / "metrics.csv")
    assert len(rows) == 6 and rows["loss_max"].notna().all() and (rows["loss_max"] > 0).all()
    assert 0.0 <= s["acc_max"] <= 1.0
