"""No position information: the "DeiT-tiny without PE" baseline of CPVT (Chu et al., 2021,
arXiv:2102.10882, Table 1). Self-attention is permutation-equivariant, so with a class-token
readout the model cannot tell where a patch was."""

from __future__ import annotations

from pebench.encodings.base import Component


class NoPosition(Component):
    name = "none"
    summary = "no position information (permutation-invariant baseline)"
    paper = "baseline of CPVT, Chu et al. 2021 (arXiv:2102.10882)"
    interp_is_native = True
    native_means = "nothing to extend"
    interp_means = "same as native: nothing to interpolate"
    scale_means = None
