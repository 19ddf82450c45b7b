"""``--decode gpu``: an image folder whose JPEGs are decoded, resized and cropped on the GPU, in batches.

The DataLoader workers only read each file's bytes (and decode, with the PIL path of
:mod:`pebench.data.imagefolder`, the few files that are not JPEGs); the main process decodes a batch's
JPEGs in one batched nvJPEG call and applies timm's eval transform on the GPU: the shorter side to
``floor(res / crop_pct)`` (bicubic, antialiased: torchvision's tensor resize), then the centre crop.
Nothing is decoded on one CPU core, so the GPU waits on file reads, not on a Python decode loop.

The decoder is ``torchvision.io.decode_jpeg(device="cuda")``. torchvision 0.29 deprecates it in favour
of TorchCodec; pebench keeps it deliberately for now: it ships with the torchvision pebench already
requires (TorchCodec would be a new dependency with its own FFmpeg requirement), it takes a whole list
of images in one batched nvJPEG call, and it also runs on the CPU, where the tests check this path's
logic. :func:`decode_batch` is the one place to swap it.

The PIL path stays the reference: the decoders' IDCTs and the two resize implementations differ by a
few grey levels, so results of the two paths are different cells (the suite's ``decode`` is in the
cell key) and ``benchmarks/gpu_check.py`` reports their pixel differences and top-1 agreement. A JPEG
nvJPEG rejects (CMYK, some progressive files, a corrupt one) is decoded on the CPU with the PIL path;
a file neither decodes is an invalid row named in the problems, as on the CPU path. Decoded images
are not written to the ``--cache`` (that would copy them back to the host).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import NamedTuple

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pebench.data.imagefolder import ImageFolderData, decode
from pebench.data.items import Items
from pebench.resolution import as_hw

JPEG_MAGIC = b"\xff\xd8"


class Encoded(NamedTuple):
    """A batch as the workers hand it over: per row the file's bytes (1-D uint8) or, for a file that is not
    a JPEG, its image already through the PIL path ((3, H, W) uint8; None if it did not decode)."""

    payloads: list[torch.Tensor | None]
    labels: torch.Tensor
    names: list[str]
    problems: dict[int, str]  # row -> "name (error)" for rows the workers could not decode


class GpuJpegFolder:
    """An :class:`ImageFolderData` whose ``read`` hands over bytes and whose ``finish`` decodes them on
    ``device``; everything else (size, labels, classes, fingerprint) is the folder's."""

    decodes_on_device = True

    def __init__(self, folder: ImageFolderData):
        self.folder = folder

    def __getattr__(self, name):
        if name == "folder":  # not set yet (unpickling in a spawned worker): no recursion
            raise AttributeError(name)
        return getattr(self.folder, name)

    def read(self, split: str, res, positions: list[int]) -> Encoded:
        payloads, names, problems = [], [], {}
        crop = self.folder.crop_for(res)
        for row, position in enumerate(positions):
            path = self.folder.files[position][0]
            names.append(str(path.relative_to(self.folder.root)))
            try:
                data = path.read_bytes()
                payloads.append(torch.frombuffer(bytearray(data), dtype=torch.uint8) if data[:2] == JPEG_MAGIC
                                else decode(path, res, crop))
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                payloads.append(None)
                problems[row] = f"{names[-1]} ({type(error).__name__}: {error})"
        labels = torch.tensor([self.folder.files[p][1] for p in positions], dtype=torch.int64)
        return Encoded(payloads, labels, names, problems)

    def finish(self, encoded: Encoded, res, device: torch.device) -> Items:
        """The batch decoded and transformed on ``device``: uint8 (B, 3, H, W) there, invalid rows zero."""
        height, width = as_hw(res)
        crop = self.folder.crop_for(res)
        images = torch.zeros((len(encoded.payloads), 3, height, width), dtype=torch.uint8, device=device)
        valid = torch.ones(len(encoded.payloads), dtype=torch.bool)
        problems = dict(encoded.problems)
        jpeg_rows = [row for row, p in enumerate(encoded.payloads) if p is not None and p.dim() == 1]
        decoded = decode_batch([encoded.payloads[row] for row in jpeg_rows], device)
        for row, image in zip(jpeg_rows, decoded, strict=True):
            try:
                if image is None:  # the decoder rejected it: the PIL path, from its bytes
                    image = decode(io.BytesIO(encoded.payloads[row].numpy().tobytes()), res, crop).to(device)
                    images[row] = image
                else:
                    images[row] = eval_transform(image, height, width, crop)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                problems[row] = (f"{encoded.names[row]} ({type(error).__name__}: neither the JPEG decoder on "
                                 f"{device.type} nor PIL could decode it)")
        for row, payload in enumerate(encoded.payloads):
            if payload is not None and payload.dim() == 3:
                images[row] = payload.to(device)
        for row in problems:
            valid[row] = False
        return Items(images, encoded.labels, valid, [problems[row] for row in sorted(problems)])


def decode_batch(payloads: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """JPEG bytes -> RGB uint8 (3, H, W) on ``device``, in one batched call; if the batch fails, image by
    image, with None for an image the decoder rejects (the caller decodes it on the CPU)."""
    if not payloads:
        return []
    with warnings.catch_warnings():  # torchvision 0.29's deprecation notice: the choice is explained above
        warnings.simplefilter("ignore")
        try:
            return list(decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        decoded = []
        for payload in payloads:
            try:
                decoded.append(decode_jpeg(payload, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def eval_transform(image: torch.Tensor, height: int, width: int, crop_pct: float) -> torch.Tensor:
    """timm's eval transform on a uint8 (3, H, W) tensor, on its device (see imagefolder.decode)."""
    size = math.floor(height / crop_pct) if height == width else [math.floor(height / crop_pct),
                                                                   math.floor(width / crop_pct)]
    image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(image, [height, width])
