"""Per-example normalizations beside BatchNorm: LayerNorm, GroupNorm, InstanceNorm and RMSNorm.

BatchNorm (torch's ``nn.BatchNorm1d/2d``) normalizes each unit over the examples of the
batch, so an example's output depends on the others in its batch, and evaluation needs
running averages. These four normalize each example on its own, over a set of its units:

| norm | averages over, for each example | source |
|---|---|---|
| LayerNorm | all its units (every channel and position) | Ba et al. 2016 |
| GroupNorm | each group of ``groups`` consecutive channels, with their positions | Wu & He 2018 |
| InstanceNorm | each channel over its positions (CNN only: an MLP unit has one value) | Ulyanov et al. 2016 |
| RMSNorm | all its units, by their root mean square only (no mean removed) | Zhang & Sennrich 2019 |

One module, ``GroupNorm``, computes all four: a LayerNorm is one group, an InstanceNorm one
group per channel, an RMSNorm one group that is not centred. Each has a learned scale (and,
except RMSNorm, shift) per channel, as torch's modules have; ``tests/test_norms.py`` checks
outputs and gradients against ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.InstanceNorm2d`` and
``nn.RMSNorm``. Written out in tensor operations rather than calling ``F.group_norm`` so
that what each one averages over is in one readable place.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-5  # torch's default for LayerNorm, GroupNorm and InstanceNorm; RMSNorm gets it too (one rule)


class GroupNorm(nn.Module):
    """Each example normalized over groups of its channels (and their positions).

    ``groups=1`` is a LayerNorm, ``groups=num_features`` an InstanceNorm; ``center=False``
    divides by the root mean square instead of subtracting the mean and dividing by the std
    (RMSNorm) and has no shift. Input (batch, channels) or (batch, channels, height, width).
    """

    def __init__(self, num_features: int, groups: int = 1, center: bool = True, eps: float = EPS):
        super().__init__()
        if groups < 1 or num_features % groups:
            raise ValueError(f"groups must divide the {num_features} channels (got {groups})")
        self.num_features, self.groups, self.center, self.eps = num_features, groups, center, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features)) if center else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"expected (batch, {self.num_features}) or (batch, {self.num_features}, H, W) input "
                             f"(got {tuple(x.shape)})")
        grouped = x.reshape(x.shape[0], self.groups, -1)  # (batch, groups, channels per group x positions)
        if self.center:
            var, mean = torch.var_mean(grouped, dim=2, unbiased=False, keepdim=True)
            normalized = (grouped - mean) * torch.rsqrt(var + self.eps)
        else:
            normalized = grouped * torch.rsqrt(grouped.square().mean(dim=2, keepdim=True) + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel, broadcast over positions
        out = normalized.view_as(x) * self.weight.view(shape)
        return out + self.bias.view(shape) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, center={self.center}, eps={self.eps}"
