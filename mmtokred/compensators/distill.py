"""Training a Token Compensator by self-distillation (ToCom eq. 8-9), label-free, on images from any folder.

Each step draws two different degree indices a != b: the frozen model at degree b is the teacher; the same model
at degree a with the compensator dW(b -> a) is the student. Loss: KL(teacher || student) of the class
distributions (per pixel for a segmentor, per image for a classifier), with temperature T (times T^2), or the L1
distance of the last backbone features for a model without a head (the paper's MAE case). Only the compensator
is trained; model and head stay frozen, and the model runs in eval mode (no dropout / drop path: teacher and
student differ only by degree and compensator).
"""
import math
import os
import os.path as osp
import random
from contextlib import nullcontext
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.progress import progress_bar
from .branch import CompensatorBranch, compensator_host, set_degree
from .tocom import TokenCompensator

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_images(folder: str) -> List[str]:
    """Every image file under ``folder`` (recursive, sorted); labels and sub-folder names are ignored."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist')
    files = sorted(osp.join(root, f) for root, _, names in os.walk(folder) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder!r}')
    return files


def load_images(paths: Sequence[str], shape: Tuple[int, int], mean, std, flips: Optional[Sequence[bool]] = None,
                crops: Optional[Sequence[Tuple[int, int, int, int]]] = None):
    """Images as a normalised (B, 3, H, W) float batch: RGB, resized to ``shape`` (bilinear), optionally cropped
    (``crops``: (top, left, height, width) per image) and mirrored, (x - mean) / std with mean / std in 0-255 units
    (RGB order)."""
    from PIL import Image
    batch = []
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert('RGB').resize((shape[1], shape[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32)
        if crops is not None:
            top, left, h, w = crops[i]
            arr = arr[top:top + h, left:left + w]
        if flips is not None and flips[i]:
            arr = arr[:, ::-1]
        batch.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    x = torch.stack(batch)
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def distill_loss(student: Tensor, teacher: Tensor, kind: str, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) over the class axis 1, averaged over everything else (kind 'logits'), or the mean
    L1 distance (kind 'features')."""
    student, teacher = student.float(), teacher.float()
    if kind == 'features':
        return (student - teacher).abs().mean()
    t = temperature
    log_s = F.log_softmax(student / t, dim=1)
    log_t = F.log_softmax(teacher / t, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1)
    return kl.mean() * t * t


def autocast(enabled: bool, model):
    if not enabled:
        return nullcontext()
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


class SelfDistillation:
    """Teacher / student forwards of one frozen model at two degrees (see the module docstring).

    Args:
        model: a supported host (segmentor, bare mmseg ViT, timm classifier); frozen here.
        compensator: the compensator to train or evaluate (its degrees are the reduction settings).
        temperature: KL temperature.
        amp: bfloat16 autocast for the forwards.
    """

    def __init__(self, model, compensator: TokenCompensator, temperature: float = 1.0, amp: bool = False):
        self.model, self.compensator = model, compensator
        self.host = compensator_host(model)
        self.branch = CompensatorBranch(model, compensator)
        self.temperature, self.amp = temperature, amp
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

    def outputs(self, x: Tensor, degree: int, source: Optional[int] = None):
        """The model's distillation output at ``degree``, compensated from ``source`` (None: uncompensated)."""
        set_degree(self.model, self.compensator.degrees[degree])
        self.branch.set_degrees(degree if source is None else source, degree)
        with autocast(self.amp, self.model):
            return self.host.distill_output(self.model, x)

    def loss(self, x: Tensor, student_degree: int, teacher_degree: int, compensate: bool = True) -> Tensor:
        with torch.no_grad():
            teacher, kind = self.outputs(x, teacher_degree)
        student, _ = self.outputs(x, student_degree, teacher_degree if compensate else None)
        return distill_loss(student, teacher, kind, self.temperature)

    @torch.no_grad()
    def divergence(self, x: Tensor, pairs: Optional[Sequence[Tuple[int, int]]] = None,
                   compensate: bool = True) -> float:
        """Mean distillation loss over ``pairs`` of (student, teacher) degrees (default: every ordered pair)."""
        n = self.compensator.num_steps + 1
        pairs = pairs or [(a, b) for a in range(n) for b in range(n) if a != b]
        return float(np.mean([float(self.loss(x, a, b, compensate)) for a, b in pairs]))

    def remove(self):
        self.branch.remove()


def sample_pair(rng: random.Random, num_degrees: int) -> Tuple[int, int]:
    """(student degree a, teacher degree b), a != b, uniform."""
    a = rng.randrange(num_degrees)
    b = rng.randrange(num_degrees - 1)
    return a, b + (b >= a)


def train_compensator(distill: SelfDistillation, images: Sequence[str], shape, mean, std, steps: int,
                      batch_size: int = 4, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                      work_dir: Optional[str] = None, resume: bool = False, save_interval: int = 50,
                      progress: bool = True, log=print, crop: Optional[Tuple[int, int]] = None):
    """AdamW with a cosine schedule on the compensator only. Batches and degree pairs are drawn from a generator
    seeded with (seed, step), so a resumed run sees what the uninterrupted one would have. With ``work_dir``:
    ``latest.pth`` (compensator + optimizer + scheduler + step) every ``save_interval`` steps and at the end, and
    the compensator file ``compensator.pth``. ``crop``: train on random (h, w) crops of the ``shape``-sized images
    (same object scale as at test time, fewer tokens: cheaper steps). Returns the list of per-step losses of this
    run."""
    comp = distill.compensator
    if crop is not None and not (0 < crop[0] <= shape[0] and 0 < crop[1] <= shape[1]):
        raise ValueError(f'crop {tuple(crop)} must fit in the image shape {tuple(shape)}')
    opt = torch.optim.AdamW(comp.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    start = 0
    latest = osp.join(work_dir, 'latest.pth') if work_dir else None
    if resume:
        if not latest or not osp.exists(latest):
            raise FileNotFoundError(f'--resume: no {latest} to resume from')
        state = torch.load(latest, map_location='cpu', weights_only=True)
        comp.load_state_dict(state['compensator'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        start = int(state['step'])
        log(f'resumed at step {start}')
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)

    def save(step):
        if not work_dir:
            return
        torch.save(dict(compensator=comp.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                        step=step), latest + '.tmp')
        os.replace(latest + '.tmp', latest)
        comp.save(osp.join(work_dir, 'compensator.pth'), extra=dict(steps=step, batch_size=batch_size, lr=lr))

    losses = []
    bar = progress_bar(steps - start, progress, 'ToCom', 'step')
    for step in range(start, steps):
        rng = random.Random(seed * 1_000_003 + step)
        a, b = sample_pair(rng, comp.num_steps + 1)
        idx = [rng.randrange(len(images)) for _ in range(batch_size)]
        crops = None
        if crop is not None:
            crops = [(rng.randrange(shape[0] - crop[0] + 1), rng.randrange(shape[1] - crop[1] + 1), *crop)
                     for _ in idx]
        x = load_images([images[i] for i in idx], shape, mean, std, [rng.random() < 0.5 for _ in idx], crops)
        loss = distill.loss(x, a, b)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'step {step}: the distillation loss is {float(loss)} (student degree {a}, '
                                     f'teacher degree {b}); the last saved state is in {work_dir}')
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if hasattr(bar, 'set_postfix'):
            bar.set_postfix(loss=f'{float(loss):.4f}', a=a, b=b)
        if (step + 1) % save_interval == 0 or step + 1 == steps:
            save(step + 1)
    bar.close()
    return losses
