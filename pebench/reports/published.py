"""Published ImageNet-1k top-1 figures (trained at 224, evaluated higher without fine-tuning).

These are numbers from papers, transcribed for reports that ask for them (a suite's
``published:`` key); pebench did not measure them, and reports always label them "published" and
keep them apart from measured rows. A value ending in "u" was read from a secondary summary of the
paper's table and is unverified.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedTable:
    source: str
    protocol: str
    #: row label -> {resolution: top-1 % as printed, "u" suffix = unverified}
    rows: dict[str, dict[int, str]]


PUBLISHED: dict[str, PublishedTable] = {
    "cpvt": PublishedTable(
        source="CPVT (Chu et al., arXiv 2102.10882), Table 2",
        protocol="DeiT recipe, 300 epochs; learned APE bicubically interpolated, PEG needs nothing",
        rows={
            "DeiT-tiny, learned APE": {224: "72.2", 384: "71.2", 448: "68.8 u", 512: "65.9 u"},
            "DeiT-tiny, 2D sin-cos": {224: "72.3", 384: "70.8"},
            "DeiT-tiny, none": {224: "68.2"},
            "CPVT-Ti, PEG at block 0": {224: "72.4 u", 384: "73.2 u", 448: "71.8 u", 512: "70.3 u"},
            "CPVT-Ti, PEG after blocks 0-4": {224: "73.4", 384: "74.2", 448: "72.6 u", 512: "70.8 u"},
            "DeiT-small, learned APE": {224: "79.9", 384: "78.1 u", 448: "75.9 u", 512: "72.6 u"},
            "CPVT-S, PEG": {224: "79.9 u", 384: "80.4 u", 448: "78.6 u", 512: "76.8 u"},
        },
    ),
    "lookhere": PublishedTable(
        source="LookHere (Fuller et al., NeurIPS 2024), ViT-B/16, best run",
        protocol="150 epochs; APE and sin-cos bilinearly interpolated; ALiBi scale and RoPE base tuned per resolution",
        rows={
            "1D learned": {224: "79.45", 384: "79.02", 448: "77.52", 512: "75.89", 1024: "55.67"},
            "2D sin-cos": {224: "79.05", 384: "78.56", 448: "77.12", 512: "75.43", 1024: "53.71"},
            "RPE learned (table)": {224: "79.86", 384: "77.96", 448: "75.40", 512: "72.59", 1024: "36.80"},
            "2D ALiBi": {224: "79.54", 384: "80.38", 448: "79.63", 512: "78.86", 1024: "63.62"},
            "2D RoPE (axial)": {224: "80.38", 384: "81.16", 448: "80.47", 512: "79.23", 1024: "51.41"},
            "iRPE (appendix)": {224: "80.53", 384: "81.47", 448: "80.77", 512: "79.94"},
            "LookHere-45": {224: "81.06", 384: "82.38", 448: "82.19", 512: "81.62", 1024: "73.15"},
        },
    ),
    "extrapolation-2026": PublishedTable(
        source="a 2026 extrapolation study (ViT-Tiny, ImageNet-100; abstract only)",
        protocol="trained at 224, evaluated at 1024; only the abstract's two figures are known",
        rows={"FIRE": {1024: "63.1"}, "RoPE": {1024: "18.9"}},
    ),
    "rope-vit": PublishedTable(
        source="RoPE-ViT (Heo et al., ECCV 2024)",
        protocol="DeiT-III recipe; APE interpolated bicubically; eval crop ratio 1.0",
        rows={
            "ViT-S, APE": {224: "80.4", 384: "79.4"},
            "ViT-S, RoPE-Axial": {224: "80.9", 384: "80.0"},
            "ViT-S, RoPE-Mixed": {224: "80.9", 384: "81.8"},
            "ViT-S, RoPE-Mixed + APE": {224: "80.9", 384: "81.7"},
            "ViT-B, APE": {224: "83.4", 384: "82.8"},
            "ViT-B, RoPE-Axial": {224: "83.6", 384: "83.9"},
            "ViT-B, RoPE-Mixed": {224: "83.8", 384: "84.4"},
            "ViT-B, RoPE-Mixed + APE": {224: "83.8", 384: "84.3"},
        },
    ),
}
