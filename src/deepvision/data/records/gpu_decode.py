"""GPU JPEG decoding for record files: `data.options.decoder: nvjpeg` (alias `gpu`).

`BatchJpegDecoder` reads the payloads of one batch in the main process (the `.rec` is memory-mapped, so this is a copy,
not a decode), hands them to `torchvision.io.decode_jpeg(list, device=...)` in one call (nvJPEG's batched decoder on
CUDA, libjpeg-turbo on the CPU), and then executes every sample's augmentation plan on the device: the same `draw_plan`
from the same `sample_seed(seed, epoch, index)` as the CPU workers, executed by `tensor_loader.BatchAugment`. Samples
are grouped by their prepared size, so each group is cropped, mirrored or warped by one batched call.

Geometry (crop windows, flips, angles) is identical to the CPU record loader; pixels differ only where resampling is
involved (torch's antialiased bilinear filter instead of OpenCV's area filter, nvJPEG's IDCT instead of
libjpeg-turbo's). Images smaller than the output are stretched up to it (the CPU path pads a random crop of such an
image with zeros). The decoding rules are `imageio`'s: a JPEG above the pixel limit is refused before decoding, and only
plain JPEGs (complete, upright) reach nvJPEG; EXIF-rotated or truncated JPEGs and every other format go through the one
CPU decoder, `imageio.Decoder`, which applies the orientation or refuses them with the CPU loader's reason.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from deepvision.config.schema import AugmentConfig
from deepvision.data.augment_plan import AugmentPlan, prepared_size
from deepvision.data.imageio import DecodeError, Decoder, plain_jpeg
from deepvision.data.records.header import image_bytes
from deepvision.data.tensor_loader import BatchAugment
from deepvision.errors import UserError

if TYPE_CHECKING:
    from deepvision.data.records.loader import RecordDataset
    from deepvision.data.records.pipeline import _Spec

GPU_DECODERS = ("nvjpeg", "gpu")
_NO_AUG = AugmentConfig()


def gpu_decode_device(decoder: str, device: torch.device | str | None) -> torch.device:
    """The device a GPU decoder runs on: `device`, or the current CUDA device. A CUDA device on a machine
    without CUDA is a UserError naming the option. (`device='cpu'` runs the same batched path with
    torchvision's CPU decoder, which is how the tests cover it.)"""
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"data.options.decoder: {decoder} decodes JPEGs on a CUDA GPU, and this machine has none "
                        f"(torch.cuda.is_available() is False); use decoder: auto")
    if dev.type not in ("cuda", "cpu"):
        raise UserError(f"data.options.decoder: {decoder} runs on cuda (or cpu for testing), not {dev.type}")
    return dev


class BatchJpegDecoder:
    """(epoch, indices) -> uint8 N x C x H x W batch on `device`, augmented by the per-sample plans."""

    def __init__(self, dataset: RecordDataset, spec: _Spec, device: torch.device) -> None:
        self.file = dataset.file
        self.positions = dataset._positions()
        self.spec = spec
        self.device = device
        self.aug = spec.augment if spec.training else _NO_AUG
        self.executor = BatchAugment(self.aug, spec.size)
        self._cpu: Decoder | None = None

    def read(self, indices: list[int]) -> list[tuple[int, memoryview | None, str]]:
        """(position, encoded image or None, error) per index: the part that can run ahead in a thread."""
        out = []
        for index in indices:
            pos = int(self.positions[index])
            try:
                out.append((pos, image_bytes(self.file.read(pos)), ""))
            except ValueError as exc:
                out.append((pos, None, str(exc)))
        return out

    def decode(self, bodies: list[memoryview]) -> list[torch.Tensor | str]:
        """C x H x W uint8 images on the device (JPEGs in one batched call), or the reason one failed."""
        from torchvision.io import ImageReadMode, decode_jpeg

        mode = ImageReadMode.RGB if self.spec.channels == 3 else ImageReadMode.GRAY
        out: list[torch.Tensor | str] = [""] * len(bodies)
        jpegs = []
        for k, body in enumerate(bodies):
            try:
                gpu = plain_jpeg(body)
            except DecodeError as exc:  # above the pixel limit: refused before any decoding
                out[k] = str(exc)
                continue
            if gpu:
                jpegs.append(k)
            else:
                out[k] = self._decode_cpu(body)
        if not jpegs:
            return out
        data = [torch.frombuffer(bytearray(bodies[k]), dtype=torch.uint8) for k in jpegs]
        with warnings.catch_warnings():  # torchvision >= 0.29 flags its image codecs as superseded by torchcodec
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                images = decode_jpeg(data, mode=mode, device=self.device)
            except RuntimeError:  # one bad image fails the whole call: decode one by one to find it
                images = []
                for t in data:
                    try:
                        images.append(decode_jpeg(t, mode=mode, device=self.device))
                    except RuntimeError as exc:
                        images.append(f"JPEG decoding failed: {str(exc).splitlines()[0]}")
        for k, img in zip(jpegs, images):
            out[k] = img
        return out

    def _decode_cpu(self, body: memoryview) -> torch.Tensor | str:
        if self._cpu is None:
            self._cpu = Decoder(self.spec.channels)
        try:
            arr = np.array(self._cpu(body), copy=True)
        except DecodeError as exc:
            return str(exc)
        return torch.from_numpy(arr).permute(2, 0, 1).to(self.device)

    def prepare(self, img: torch.Tensor) -> torch.Tensor:
        """The deterministic resize before the random steps (`augment_plan.prepared_size`) of a C x H x W tensor."""
        target = prepared_size((img.shape[-1], img.shape[-2]), self.spec.size, self.spec.resize, self.aug,
                               self.spec.crop_only)
        return img if target is None else _resize(img, *target)

    def augment(self, images: list[torch.Tensor], plans: list[AugmentPlan]) -> torch.Tensor:
        """Execute the plans: samples of one prepared size go through `BatchAugment.apply` together."""
        th, tw = self.spec.size
        c = self.spec.channels
        cl = torch.channels_last if self.spec.channels_last else torch.contiguous_format
        out = torch.empty((len(images), c, th, tw), dtype=torch.uint8, device=self.device).contiguous(memory_format=cl)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, img in enumerate(images):
            if plans[k].box is None and (img.shape[-2] < th or img.shape[-1] < tw):  # smaller than the output
                images[k] = img = _resize(img, max(img.shape[-1], tw), max(img.shape[-2], th))
            groups.setdefault(tuple(img.shape[-2:]), []).append(k)
        for members in groups.values():
            batch = torch.stack([images[k] for k in members])
            idx = torch.tensor(members, device=self.device)
            out[idx] = self.executor.apply(batch, [plans[k] for k in members])
        return out

    def __call__(self, epoch: int, read: list[tuple[int, memoryview | None, str]], indices: list[int],
                 ) -> tuple[torch.Tensor, list[int], list[tuple[int, int, str]]]:
        """(images, kept indices, skipped (position, offset, reason)); a bad record raises unless skipped."""
        from deepvision.data.records.pipeline import _corrupt

        ok = [k for k, (_, body, _) in enumerate(read) if body is not None]
        decoded = self.decode([read[k][1] for k in ok])
        reasons = {k: why for k, (_, body, why) in enumerate(read) if body is None}
        images: list[torch.Tensor] = []
        kept: list[int] = []
        for k, img in zip(ok, decoded):
            if isinstance(img, str):
                reasons[k] = img
            else:
                images.append(img)
                kept.append(k)
        skipped = []
        for k in sorted(reasons):
            pos = read[k][0]
            if not self.spec.skip_corrupt:
                raise _corrupt(self.file, pos, reasons[k])
            skipped.append((pos, int(self.file.offsets[pos]), reasons[k]))
        kept_idx = [indices[k] for k in kept]
        images = [self.prepare(img) for img in images]
        # each sample's plan, drawn as the CPU workers draw it (same seed, same prepared size)
        plans = self.executor.plans_for(kept_idx, [(img.shape[-1], img.shape[-2]) for img in images], self.spec.seed,
                                        epoch)
        th, tw = self.spec.size
        if not images:
            x = torch.empty((0, self.spec.channels, th, tw), dtype=torch.uint8, device=self.device)
        else:
            x = self.augment(images, plans)
        return x, kept_idx, skipped


def _resize(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Bilinear resize of a uint8 C x H x W image, antialiased when shrinking (OpenCV's area filter there)."""
    src_h, src_w = img.shape[-2:]
    out = F.interpolate(img[None].float(), size=(h, w), mode="bilinear", align_corners=False,
                        antialias=w < src_w and h < src_h)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)
