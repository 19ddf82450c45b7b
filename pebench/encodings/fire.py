"""FIRE in 2D, after "Functional Interpolation for Relative Positions Improves Long Context
Transformers" (Shanda Li, Chong You, Guru Guruganesh, Joshua Ainslie, Santiago Ontanon, Manzil
Zaheer, Sumit Sanghai, Yiming Yang, Sanjiv Kumar, Srinadh Bhojanapalli; ICLR 2024;
arXiv:2310.04418).

FIRE adds to the logit of query i and key j the bias f(psi(i - j) / psi(max(L, i))), with
psi(x) = log(c*x + 1), f a small MLP (one hidden ReLU layer, one output per head), and c and the
threshold L learned. Dividing by psi of the query position is its "progressive interpolation": the
MLP's input stays in [0, 1] however long the sequence is. The paper is about causal text; pebench
extends it to images as follows.

* Input: the signed 2D offset (query minus key) of the pair, one MLP input per axis,
  u_a = sign(d_a) * psi(|d_a| * s_a) / psi(max(L, E_a)) for a = row, column. The sign is kept
  because images are not causal (up and down differ). The query position i of the paper has no
  analogue in a bidirectional grid; its role, the largest offset the query can see, is played by
  the grid extent E_a (the largest offset on the axis), which keeps the bias a function of the
  offset alone: the MLP runs once per distinct offset, (2gh-1)(2gw-1) times, and is gathered to all
  patch pairs.
* Parameters: the MLP (2 -> ``hidden`` -> heads, ReLU), c (initialised to 0.1, used as |c|, as in
  the paper) and L (in patches, initialised to the trained extent G0-1 and learned through a
  multiplier initialised to 1, used as |L|). At the trained grid max(L, E) is L, so L receives
  gradients; it acts as a floor on the normaliser, which the paper uses against over-stretching
  short inputs.
* Sharing: ``shared=true`` (default) uses one FIRE function (MLP, c, L) for every block, the
  layer-shared setting of the paper as pebench reads it; ``shared=false`` learns one per block.
* The class token gets no bias (zero rows and columns).

Modes, with s the factor on offsets and E the extent in the normaliser:

* native: s = 1 and E = G0 - 1 (the trained extent): the new, longer integer offsets are
  normalised as in training, so beyond the trained range the MLP is evaluated at |u| > 1
  (extrapolation);
* interp: s = 1 and E = G - 1 (the current grid's extent): FIRE's own progressive interpolation,
  the largest offset of any grid maps to |u| = 1 (when L <= G - 1), so every input stays inside the
  trained range. Because psi is a logarithm this is *not* the same as scaling the offsets by G0/G;
* scale=S: s = S and E = G0 - 1: offsets multiplied by S, normalised by the trained extent
  (S=1 is native exactly; S=G0/G is close to but not equal to interp).

At the trained grid all three coincide for S=1.
"""

from __future__ import annotations

import torch
from torch import nn

from pebench.encodings.base import Arch, Component, Context, Option, grid_offsets, pair_bias

INIT_C = 0.1  # the paper's initial c
_EPS = 1e-6  # floor of the normaliser


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be > 0"


class FireFunction(nn.Module):
    """One FIRE function: signed 2D offsets (M, 2) and extents (2,) to one bias per head (M, heads)."""

    def __init__(self, num_heads: int, hidden: int, init_threshold: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, num_heads))
        self.c = nn.Parameter(torch.tensor(INIT_C))
        self.threshold_scale = nn.Parameter(torch.tensor(1.0))  # L = |threshold_scale| * init_threshold
        self.init_threshold = init_threshold

    @property
    def threshold(self) -> torch.Tensor:
        return (self.threshold_scale * self.init_threshold).abs()

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.c.abs() * x)

    def inputs(self, offsets: torch.Tensor, extents: torch.Tensor) -> torch.Tensor:
        """The MLP's inputs u = sign(d) psi(|d|) / psi(max(L, E)) per axis."""
        normaliser = self.psi(torch.maximum(extents, self.threshold)).clamp_min(_EPS)
        return offsets.sign() * self.psi(offsets.abs()) / normaliser

    def forward(self, offsets: torch.Tensor, extents: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.inputs(offsets, extents))


class FIRE2D(Component):
    name = "fire"
    summary = "FIRE in 2D: MLP of log-scaled signed axis offsets with progressive interpolation"
    paper = "FIRE, Li et al. ICLR 2024 (arXiv:2310.04418); 2D extension by pebench"
    options = {
        "hidden": Option(32, "hidden width of the FIRE MLP", validate=_positive),
        "shared": Option(True, "one FIRE function (MLP, c, L) for all blocks (false: one per block)"),
    }
    native_means = "new integer offsets normalised by the trained extent (beyond the trained range)"
    interp_means = "FIRE's progressive interpolation: offsets normalised by the current grid extent"
    scale_means = "offsets multiplied by S, normalised by the trained extent (S=1: native; not interp)"

    def __init__(self, arch: Arch, hidden: int, shared: bool):
        super().__init__(arch)
        self.shared = shared
        init_threshold = float(max(arch.trained_grid) - 1)
        self.functions = nn.ModuleList(
            FireFunction(arch.num_heads, hidden, init_threshold) for _ in range(1 if shared else arch.depth)
        )

    def attention_bias(self, block, q, k, ctx: Context):
        slot = "every block" if self.shared else block
        function = self.functions[0 if self.shared else block]
        return self.reuse_at_inference(slot, ctx, q, lambda: self._bias(function, ctx, q))

    @staticmethod
    def offsets_and_extents(ctx: Context, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The (M, 2) float offsets fed to psi and the (2,) extents of the normaliser, for ``ctx``'s
        mode (see the module docstring)."""
        offsets = grid_offsets(ctx.grid, device)
        if ctx.mode == "interp":
            scale, grid = (1.0, 1.0), ctx.grid
        else:
            scale, grid = ctx.position_scale, ctx.trained_grid
        offsets = offsets.float() * torch.tensor(scale, device=device)
        extents = torch.tensor([float(g - 1) for g in grid], device=device)
        return offsets, extents

    def _bias(self, function: FireFunction, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        offsets, extents = self.offsets_and_extents(ctx, q.device)
        return pair_bias(function(offsets, extents).t(), ctx, q.dtype)  # per offset: (heads, M)
