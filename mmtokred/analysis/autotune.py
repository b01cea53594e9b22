"""Label-free choice of a token reduction for a model and a GFLOPs budget (``tools/analysis_tools/autotune.py``).

The unreduced model is the teacher: a candidate reduction is scored by how closely the reduced model reproduces
the teacher's outputs on a few calibration images (no annotation is read):

* segmentation (mmseg segmentors): agreement mIoU of the candidate's argmax map with the argmax of the teacher's
  logits *smoothed over two tokens* (a box filter :data:`SMOOTHING_TOKENS` patch strides wide, see
  :func:`smoothed_teacher_map`), with the plain agreement mIoU (the teacher's raw map as ground truth) and the mean
  pixel KL(teacher || candidate) as further columns. Why smoothed: the teacher's own map is noisy at the pixel
  scale (on 32 CamVid training images, smoothing the ViT-T teacher's logits over two tokens raises its labelled
  mIoU from 55.4 to 56.9), and reductions that restore by averaging over clusters (Expediting) remove part of that
  noise; the plain agreement counts every such correction as an error. Chosen on labelled *training* images among
  several label-free candidates (BENCHMARKS.md section 12): rank correlation with the training mIoU of the 15
  ViT-T sweep settings 0.82, against 0.66 for the plain agreement (DINOv2 ViT-S/14, 8 images, 16 settings: 0.985
  against 0.953);
* mmdet Mask2Former / MaskDINO: what the head consumes, the backbone's multi-scale outputs: 100 * (1 - mean over
  scales of ||f - f_teacher|| / ||f_teacher||) per image;
* timm classifiers: top-1 agreement (%) with the teacher, mean KL as a second column.

Search: per method a few placements and method parameters (:data:`METHOD_SPACES`); the budget fixes the method's
amount parameter (ratio, grid, keep rate) on the MAC counter (:mod:`.flops`): the least aggressive value whose
MACs fit, by a bisection that tries the linearly interpolated value first. Scores are per-image statistics, so
a candidate is first scored on a few images (``screen_images``), the best are extended to all of them (at once,
or with ``finalists`` by successive halving: twice the images for the better half, for slow models), and
Expediting's temperature -- whose right value changes by orders of magnitude between backbones -- is searched
coarse to fine (decades, then half decades). The blocks before a reduction site run once per image, on the
teacher, and are replayed for every candidate that reduces there. Finished work (scores per image, MAC counts) is
kept in ``--work-dir`` (resumable); ``--max-minutes`` stops with the best found.

Candidates are built through the config interface (a deep copy of ``cfg.model`` with the backbone's reduction
settings replaced), so the written config is exactly what was scored. Everything that depends on the host lives in
:class:`AutotuneHost`.
"""
import copy
import hashlib
import json
import math
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..compensators.distill import IMAGE_EXTENSIONS
from ..compensators.distill import list_images as all_images
from ..utils.cli import InputError

SCREEN_IMAGES = 8            # images every candidate is scored on before the best are extended to all
KEEP_SHARE = 0.25            # share of the screened candidates (per budget) extended to all images
MIN_KEPT = 4
STATE_VERSION = 2            # of the per-image statistics kept in --work-dir (2: smoothed-teacher score)
SMOOTHING_TOKENS = 2         # the teacher's logits are smoothed over this many patch strides (segmentation score)
BISECTION_STEPS = 5          # at most this many MAC counts per budget for a continuous amount
CLOSE_ENOUGH = 0.98          # stop once the chosen amount's MACs are within 2% under the budget
COARSE_TEMPERATURES = (0.01, 0.1, 1.0, 10.0, 100.0)


# ----------------------------------------------------------------------------------------------------------------
# settings and candidates
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Amount:
    """The method parameter the budget fixes.

    Args:
        name: reducer argument (e.g. 'r_h', 'cluster_ratio', 'grid').
        mild, strong: the ends of the search range: ``mild`` removes nothing (never run), ``strong`` the most.
        integer: integer values (Swin window grids, ToMe's r).
        square: the value is written as (v, v) (a k x k window grid).
        tied: (other argument, factor): set to factor * value too (Token Adapter's r_w from r_h).
    """
    name: str
    mild: float
    strong: float
    integer: bool = False
    square: bool = False
    tied: Optional[Tuple[str, float]] = None

    def reducer_args(self, value) -> dict:
        if self.integer:
            value = int(value)
            args = {self.name: (value, value) if self.square else value}
        else:
            value = round(float(value), 4)
            args = {self.name: value}
        if self.tied:
            args[self.tied[0]] = round(self.tied[1] * value, 4)
        return args


@dataclass(frozen=True)
class Setting:
    """One method at one placement with its parameters; the budget then fixes ``amount``."""
    method: str
    placement: Tuple[Tuple[str, object], ...]     # host keys (reduce_after_layer, restore_site, ...), sorted
    params: Tuple[Tuple[str, object], ...]        # reducer arguments besides the amount, sorted
    amount: Amount
    label: str
    cost_free: Tuple[str, ...] = ()               # params that leave the MACs unchanged (Expediting's temperature)

    def reducer(self, value) -> dict:
        return dict(type=self.method, **dict(self.params), **self.amount.reducer_args(value))

    def cost_key(self, value) -> str:
        reducer = {k: v for k, v in self.reducer(value).items() if k not in self.cost_free}
        return json.dumps([_jsonable(dict(self.placement)), _jsonable(reducer)], sort_keys=True)


def _setting(method, placement: dict, params: dict, amount: Amount, label: str, cost_free=()) -> Setting:
    return Setting(method, tuple(sorted(placement.items())), tuple(sorted(params.items())), amount, label,
                   tuple(cost_free))


@dataclass
class Candidate:
    setting: Setting
    value: float
    budget: float
    gflops: float

    @property
    def reducer(self) -> dict:
        return self.setting.reducer(self.value)

    @property
    def placement(self) -> dict:
        return dict(self.setting.placement)

    @property
    def key(self) -> str:
        return json.dumps(dict(placement=self.placement, reducer=_jsonable(self.reducer)), sort_keys=True)

    @property
    def description(self) -> str:
        args = ', '.join(f'{k}={v}' for k, v in self.reducer.items() if k != 'type')
        return f'{self.setting.label}: {args}'


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------------------
# HOST ADAPTER: everything the autotuner knows about hosts is in this class (placements a host allows, its depth,
# how its config states a reduction, how a model is built, fed and run, which blocks a candidate shares with the
# unreduced model). At the merge with the host registry of issue
# 22, repoint these methods at its Host objects / placement plan.
# ----------------------------------------------------------------------------------------------------------------
VIT_TYPES = ('VisionTransformer', 'ReducedVisionTransformer')
SWIN_TYPES = ('SwinTransformer', 'ReducedSwinTransformer')
TIMM_TYPE = 'TimmVisionTransformer'


class AutotuneHost:
    """The host of ``cfg.model`` as the autotuner sees it.

    Attributes:
        kind: 'vit' (mmseg ViT), 'swin' (mmseg / mmdet Swin) or 'timm' (timm classifier).
        task: 'segmentation', 'backbone' (mmdet: the backbone's multi-scale outputs) or 'classification'.
        depth: number of blocks; stages: Swin stage depths; window: Swin window size; patch: the patch
        embedding's stride in input pixels (mmseg hosts).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        model = cfg.model
        if model.get('type') == TIMM_TYPE:
            self.kind, self.task = 'timm', 'classification'
            import timm
            self.probe = timm.create_model(model['name'], pretrained=False,
                                           **{k: v for k, v in model.items() if k not in ('type', 'name')})
            self.depth = len(self.probe.blocks)
            self.grid = tuple(self.probe.patch_embed.grid_size)
            return
        backbone = model.get('backbone') or {}
        name = str(backbone.get('type', '')).split('.')[-1]
        from ..hosts import host_for_type
        self.registry_host = host_for_type(name)
        if name in VIT_TYPES:
            from mmseg.models.backbones import VisionTransformer

            from ..hosts.registry import upstream_defaults
            self.kind = 'vit'
            default = upstream_defaults(VisionTransformer, 'num_layers', 'patch_size')
            self.depth = backbone.get('num_layers', default['num_layers'])
            self.patch = backbone.get('patch_size', default['patch_size'])
        elif name in SWIN_TYPES:
            from mmseg.models.backbones import SwinTransformer

            from ..hosts.registry import upstream_defaults
            default = upstream_defaults(SwinTransformer, 'depths', 'window_size', 'patch_size')
            self.kind = 'swin'
            self.patch = backbone.get('patch_size', default['patch_size'])
            self.stages = list(backbone.get('depths', default['depths']))
            self.window = backbone.get('window_size', default['window_size'])
            self.depth = sum(self.stages)
        else:
            from ..hosts.registry import supported_hosts
            raise InputError(f'autotune: model.backbone.type {backbone.get("type")!r} is not a supported host; '
                             f'supported: {supported_hosts()}; timm classifiers: type={TIMM_TYPE!r}')
        self.task = 'backbone' if cfg.get('default_scope') == 'mmdet' else 'segmentation'

    # --- placements -----------------------------------------------------------------------------------------
    def reduce_sites(self) -> List[int]:
        """Where a span starts, as ``reduce_after_layer``: after the first block and after a quarter of the
        blocks (the two insertion points of the hand-made sweeps); Swin: in its largest stage, at its start and
        a third in."""
        if self.kind == 'swin':
            stage = max(range(len(self.stages)), key=lambda i: self.stages[i])
            start = sum(self.stages[:stage])
            return sorted({start - 1, start - 1 + self.stages[stage] // 3} - {start - 1 + self.stages[stage]})
        return sorted({0, self.depth // 4} - {self.depth - 1})

    def grid_placements(self) -> List[Tuple[dict, str]]:
        """Placements of a grid reducer (reduced tokens form a grid): the head restores the logits on an mmseg
        ViT segmentor (as the Expediting and Token Adapter references do), else the backbone restores."""
        out = []
        for s in self.reduce_sites():
            if self.kind == 'vit' and self.task == 'segmentation':
                out.append((dict(reduce_after_layer=s, restore_site='head'), f'after {s}, logits'))
            else:   # timm: nothing to restore; Swin: each stage is restored before its PatchMerging
                out.append((dict(reduce_after_layer=s), f'after {s}'))
        return out

    def span_placements(self, sites=None) -> List[Tuple[dict, str]]:
        """Token-set reducers (ToMe span, MSTM, EViT) restore the features after the last block (Swin, timm:
        stated so that the host's own validator says why it refuses them)."""
        out = []
        for s in (sites or self.reduce_sites()):
            if self.kind == 'vit':
                out.append((dict(reduce_after_layer=s, restore_after_layer=self.depth - 1, restore_site='backbone'),
                             f'after {s}'))
            elif self.kind == 'swin':   # each stage is restored before its PatchMerging
                out.append((dict(reduce_after_layer=s), f'after {s}'))
            else:
                out.append((dict(reduce_after_layer=s), f'after {s}'))
        return out

    # --- configs and models ---------------------------------------------------------------------------------
    def teacher_cfg(self):
        """The config with any reduction removed (the unreduced model)."""
        cfg = copy.deepcopy(self.cfg)
        if self.kind == 'timm':
            cfg.reduction = dict()
        else:
            cfg.model.backbone.pop('reducer', None)
        return cfg

    def candidate_cfg(self, placement: dict, reducer: dict):
        cfg = self.teacher_cfg()
        if self.kind == 'timm':
            cfg.reduction = dict(reducer=copy.deepcopy(reducer), **placement)
            return cfg
        backbone = cfg.model.backbone
        backbone.type = 'ReducedVisionTransformer' if self.kind == 'vit' else 'ReducedSwinTransformer'
        for key in ('reduce_after_layer', 'restore_after_layer', 'restore_site'):
            backbone.pop(key, None)
        backbone.update(copy.deepcopy(placement), reducer=copy.deepcopy(reducer))
        if placement.get('restore_site') == 'head':
            cfg.model.type = 'TokenReductionEncoderDecoder'
        return cfg

    def check(self, placement: dict, reducer: dict):
        """Raise ValueError / TypeError when the host refuses the reduction (its own validator, nothing built)."""
        if self.kind == 'timm':
            from ..hosts import host_for_module
            settings = dict(dict(restore_after_layer=None, restore_site='backbone'), **placement)
            host_for_module(self.probe).plan_module(self.probe, reducer=reducer, **settings)
            return
        cfg = self.candidate_cfg(placement, reducer)
        settings = {k: v for k, v in cfg.model.backbone.items()
                    if k in ('reduce_after_layer', 'restore_after_layer', 'restore_site')}
        self.registry_host.plan_cfg(cfg.model.backbone.to_dict(), reducer=reducer, **settings)

    def build(self, cfg, state_dict: Optional[dict] = None, checkpoint: Optional[str] = None):
        """The model of ``cfg`` in eval mode on the CPU, weights from ``state_dict`` (strict) or ``checkpoint``."""
        if self.kind == 'timm':
            from ..compensators import build_classifier
            model = build_classifier(cfg, checkpoint if state_dict is None else None)
        else:
            from .models import build_model
            model = build_model(cfg, checkpoint if state_dict is None else None)
        if state_dict is not None:
            model.load_state_dict(state_dict, strict=True)
        return model.eval()

    def config_text(self, base_path: str, placement: dict, reducer: dict, base_has_reducer: bool) -> str:
        """The body of a config that inherits ``base_path`` and states only the reduction. ``_delete_`` where the
        base already holds a reducer dict (mmengine would merge the two reducers' keys otherwise)."""
        reducer = dict(reducer)
        if base_has_reducer:
            reducer = dict(_delete_=True, **reducer)
        lines = [f'_base_ = [{base_path!r}]']
        if self.kind == 'timm':
            lines.append(f'reduction = dict(_delete_=True, reducer={_py(reducer)}, '
                         f'reduce_after_layer={placement.get("reduce_after_layer")!r})')
            return '\n'.join(lines) + '\n'
        backbone = dict(type='ReducedVisionTransformer' if self.kind == 'vit' else 'ReducedSwinTransformer',
                        reduce_after_layer=placement['reduce_after_layer'],
                        restore_after_layer=placement.get('restore_after_layer'))
        if self.kind == 'vit':
            backbone['restore_site'] = placement.get('restore_site', 'backbone')
        head = placement.get('restore_site') == 'head'
        model = (f"model = dict({'type=' + repr('TokenReductionEncoderDecoder') + ', ' if head else ''}"
                 f"backbone=dict({', '.join(f'{k}={v!r}' for k, v in backbone.items())}, reducer={_py(reducer)}))")
        lines.append(model)
        return '\n'.join(lines) + '\n'

    # --- the blocks before a reduction site run once per image --------------------------------------------------
    def shared_prefix(self, placement: dict, reducer: dict) -> Optional[int]:
        """The last block whose output a candidate shares with the unreduced model (the blocks up to it run
        unchanged), or None. mmseg ViT only: blocks up to ``reduce_after_layer`` (the one before it for reducers
        that run inside their layer, ranked by its attention)."""
        if self.kind != 'vit':
            return None
        site = placement['reduce_after_layer']
        site = site[0] if isinstance(site, (list, tuple)) else site
        from ..reducers import build_reducer
        last = site - 1 if build_reducer(reducer).needs_importance else site
        outs = self.cfg.model.backbone.get('out_indices', -1)       # an output taken before the site is recorded
        outs = [o % self.depth for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
        last = min([last] + outs)
        return last if last >= 0 else None

    def record_blocks(self, model, blocks: Sequence[int]):
        """Context: every forward of ``model`` appends {block: output} of ``blocks`` to the returned list (one dict
        per backbone call: slide inference calls it once per crop)."""
        import contextlib
        layers = model.backbone.layers
        calls: List[dict] = []

        @contextlib.contextmanager
        def recording():
            handles = [model.backbone.register_forward_pre_hook(lambda m, a: calls.append({}))]
            for b in blocks:
                handles.append(layers[b].register_forward_hook(
                    lambda m, a, out, b=b: calls[-1].__setitem__(b, out.detach())))
            try:
                yield calls
            finally:
                for h in handles:
                    h.remove()
        return recording()

    def replay_blocks(self, model, block: int, outputs: Sequence[dict]):
        """Context: the backbone's blocks 0..``block`` are skipped, block ``block`` returning the recorded outputs
        (one per backbone call, in order) instead: exactly what they compute, since they run unchanged."""
        import contextlib
        layers = model.backbone.layers
        saved = [layers[i] for i in range(block + 1)]
        queue = [o[block] for o in outputs]

        class Recorded(torch.nn.Module):
            def forward(self, x):
                return queue.pop(0)

        @contextlib.contextmanager
        def replaying():
            for i in range(block):
                layers[i] = torch.nn.Identity()
            layers[block] = Recorded()
            try:
                yield
            finally:
                for i, layer in enumerate(saved):
                    layers[i] = layer
        return replaying()

    # --- inputs and outputs ----------------------------------------------------------------------------------
    def load_inputs(self, model, paths: Sequence[str]) -> List[object]:
        """One preprocessed input per image, as the model consumes it: mmseg / mmdet: the data preprocessor's
        ``dict(inputs, data_samples)`` of the config's test pipeline without its annotation loaders; timm: the
        classification preprocessing of ``cfg.data``."""
        if self.kind == 'timm':
            preprocess = _classification_preprocess()
            return [preprocess(p, self.cfg.data)[None] for p in paths]
        from mmcv.transforms import Compose
        from mmengine.dataset import pseudo_collate
        steps = [dict(t) for t in self.cfg.test_dataloader.dataset.pipeline if 'Annotation' not in str(t['type'])]
        pipeline = Compose(steps)
        out = []
        with torch.no_grad():
            for p in paths:
                data = pipeline(dict(img_path=p, img_id=0))
                out.append(model.data_preprocessor(pseudo_collate([data]), False))
        return out

    def mac_input(self, data):
        """The tensor the MAC counter runs (one preprocessed input) and the forward that runs it."""
        if self.task == 'classification':
            return data, None
        from .models import tensor_forward
        return data['inputs'], tensor_forward

    def run(self, model, data):
        """What the score compares: (K, H, W) logits (segmentation), the backbone's outputs (backbone) or (K,)
        logits (classification)."""
        with torch.no_grad():
            if self.task == 'classification':
                return model(data).float()[0]
            if self.task == 'backbone':
                return [f.float() for f in model.backbone(data['inputs'])]
            return model.predict(data['inputs'], data['data_samples'])[0].seg_logits.data.float()

    def smoothing_window(self, data, logits) -> int:
        """Segmentation: the (odd) side in output pixels of :data:`SMOOTHING_TOKENS` patch strides, for the
        teacher's map smoothing (:func:`smoothed_teacher_map`); the input ``data`` and the (K, H, W) ``logits``
        give the output pixels per input pixel."""
        scale = logits.shape[-2] / data['inputs'].shape[-2]
        return 2 * int(round(SMOOTHING_TOKENS * self.patch * scale / 2)) + 1

    def base_has_reducer(self) -> bool:
        if self.kind == 'timm':
            return bool((self.cfg.get('reduction') or {}).get('reducer'))
        return self.cfg.model.backbone.get('reducer') is not None
# ---------------------------------------------------------------------------------------------------------------- #
# end of the host adapter


def _py(d: dict) -> str:
    """A dict as Python source ``dict(k=v, ...)`` (keys are identifiers)."""
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in d.items()) + ')'


# ----------------------------------------------------------------------------------------------------------------
# per-method candidate spaces (the parameters that matter, from the hand-made sweeps and the reducers' docstrings)
# ----------------------------------------------------------------------------------------------------------------
def _token_adapter(host: AutotuneHost) -> List[Setting]:
    params = dict(unique_ratio_h=0.1, unique_ratio_w=0.05, eject_mode='max')
    if host.kind == 'swin':    # a K x K window becomes k x k
        amount = Amount('grid', host.window, 1, integer=True, square=True)
        return [_setting('TokenAdapter', p, params, amount, f'Token Adapter ({lab})') for p, lab in
                host.grid_placements()]
    out = []
    for p, lab in host.grid_placements():
        for aspect in (1.0, 0.75):    # r_w = aspect * r_h (the hand-made DINOv2 choice: 0.2 x 0.15)
            amount = Amount('r_h', 0.0, 0.9, tied=('r_w', aspect))
            out.append(_setting('TokenAdapter', p, params, amount, f'Token Adapter ({lab}, r_w={aspect} r_h)'))
    return out


def _expediting(host: AutotuneHost, temperatures=COARSE_TEMPERATURES) -> List[Setting]:
    base = dict(locality=5, iterations=5, topk=20) if host.kind != 'swin' else dict(locality=5, iterations=3)
    if host.kind == 'swin':
        amount = Amount('cluster_grid', host.window, max(1, host.window // 2), integer=True, square=True)
    else:
        amount = Amount('cluster_ratio', 1.0, 0.3)
    out = []
    for p, lab in host.grid_placements():
        for t in temperatures:
            params = dict(base, temperature=t)
            if host.kind == 'swin':
                params['topk'] = min(20, max(1, (host.window // 2) ** 2))
            out.append(_setting('Expediting', p, params, amount, f'Expediting ({lab}, t {t:g})', ['temperature']))
    return out


def _tome(host: AutotuneHost) -> List[Setting]:
    if host.kind == 'timm':   # ToMe's classification form: r tokens merged in every block
        n = host.grid[0] * host.grid[1]
        return [_setting('ToMe', dict(reduce_after_layer=None), dict(mode='layer'),
                         Amount('r', 0, max(1, n // host.depth), integer=True), 'ToMe (every block)')]
    out = []
    for p, lab in host.span_placements(sorted({0, 1} | set(host.reduce_sites()))):
        for rounds in (1, 2):
            out.append(_setting('ToMe', p, dict(mode='span', rounds=rounds), Amount('ratio', 0.0, 0.5),
                                f'ToMe span ({lab}, {rounds} round{"s" if rounds > 1 else ""})'))
    for p, lab in host.span_placements([0, 1]):
        out.append(_setting('ToMe', p, dict(mode='sub_block'), Amount('ratio', 0.0, 0.5),
                            f'ToMe sub-block (from {p["reduce_after_layer"] + 1})'))
    return out


def _evit(host: AutotuneHost) -> List[Setting]:
    """EViT prunes inside three layers at a quarter, half and three quarters of the depth (its paper's 4, 7, 10
    of 12, our DINOv2 sweep's 3, 6, 9)."""
    sites = sorted({max(1, host.depth * k // 4) - 1 for k in (1, 2, 3)})
    return [_setting('EViT', p, dict(fuse=True), Amount('keep_rate', 1.0, 0.1), f'EViT (inside {sites})')
            for p, _ in host.span_placements([sites])]


def _mstm(host: AutotuneHost) -> List[Setting]:
    return [_setting('MSTM', p, {}, Amount('keep_rate', 1.0, 0.1), f'MSTM ({lab})')
            for p, lab in host.span_placements([max(1, host.depth // 6)])]


def _pooling(host: AutotuneHost) -> List[Setting]:
    params = dict(mode='avg', restore_mode='bilinear')
    amount = (Amount('grid', host.window, 1, integer=True, square=True) if host.kind == 'swin'
              else Amount('ratio', 1.0, 0.2))
    return [_setting('Pooling', p, params, amount, f'Pooling ({lab})') for p, lab in host.grid_placements()]


METHOD_SPACES: Dict[str, Callable[[AutotuneHost], List[Setting]]] = dict(
    TokenAdapter=_token_adapter, Expediting=_expediting, ToMe=_tome, EViT=_evit, MSTM=_mstm, Pooling=_pooling)


def method_settings(host: AutotuneHost, methods: Sequence[str]) -> List[Setting]:
    """Every setting of ``methods`` the host accepts; a method it cannot run at all is one InputError line."""
    settings = []
    for m in methods:
        if m not in METHOD_SPACES:
            raise InputError(f'--methods: unknown method {m!r}; valid: {" ".join(METHOD_SPACES)}')
        accepted, reasons = [], []
        for s in METHOD_SPACES[m](host):
            try:
                host.check(dict(s.placement), s.reducer(s.amount.strong))
            except (ValueError, TypeError, KeyError) as e:
                from ..utils.cli import message
                reasons.append(message(e))
                continue
            accepted.append(s)
        if not accepted:
            why = reasons[0] if reasons else 'it has no placement on this host'
            raise InputError(f'--methods: {m} cannot run on this host ({host.kind}, {host.task}): {why}')
        settings += accepted
    return settings


# ----------------------------------------------------------------------------------------------------------------
# calibration images (images only: the annotation loaders of the test pipeline are dropped)
# ----------------------------------------------------------------------------------------------------------------
def list_images(folder: str, num: Optional[int]) -> List[str]:
    if not osp.isdir(folder):
        raise InputError(f'--images: folder not found: {folder}')
    try:
        paths = all_images(folder)      # the compensator trainer's listing: the same images in the same order
    except ValueError:
        raise InputError(f'--images: no image ({"/".join(IMAGE_EXTENSIONS)}) in {folder}') from None
    if num is not None and num < len(paths):   # evenly spread over the sorted names (not one video sequence)
        paths = [paths[i * len(paths) // num] for i in range(num)]
    for p in paths:
        _check_image(p)
    return paths


def _check_image(path: str):
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a broken file
        raise InputError(f'--images: cannot read {path} as an image ({type(e).__name__})') from e


# ----------------------------------------------------------------------------------------------------------------
# teacher outputs and per-image statistics
# ----------------------------------------------------------------------------------------------------------------
def box_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """(C, H, W) -> the mean over the k x k window around each pixel (odd k; the window clipped at the borders:
    ``F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)``), by cumulative sums: O(HW) for any k."""
    if k <= 1:
        return x
    r = k // 2

    def along(v, dim):
        n = v.shape[dim]
        c = torch.cat([torch.zeros_like(v.narrow(dim, 0, 1)), v.cumsum(dim)], dim)
        idx = torch.arange(n, device=v.device)
        hi, lo = (idx + r + 1).clamp(max=n), (idx - r).clamp(min=0)
        shape = [1] * v.dim()
        shape[dim] = n
        return (c.index_select(dim, hi) - c.index_select(dim, lo)) / (hi - lo).to(v.dtype).view(shape)
    return along(along(x.double(), -2), -1).to(x.dtype)


def smoothed_teacher_map(logits: torch.Tensor, window: int) -> torch.Tensor:
    """(K, H, W) teacher logits -> (H, W) the argmax of the logits averaged over ``window`` x ``window`` pixels:
    the segmentation score's ground truth (a teacher with its pixel-scale noise removed)."""
    return box_filter(logits, window).argmax(0)


def image_statistics(host: AutotuneHost, out, ref, target=None) -> Tuple[List[float], float]:
    """Per-image (stats, kl): the statistics whose sum over images gives the score (:func:`score_from_stats`) and
    the mean KL(teacher || candidate) (NaN for the backbone task). Segmentation: ``target`` is the teacher's
    smoothed map (:func:`smoothed_teacher_map`); the stats are the (2, 3, K) class areas of the candidate's map
    against it and against the teacher's raw map, flattened."""
    if host.task == 'backbone':
        errs = [float((o - r).norm() / r.norm().clamp_min(1e-12)) for o, r in zip(out, ref)]
        return [100 * (1 - sum(errs) / len(errs)), 1.0], float('nan')
    logp_t = F.log_softmax(ref, 0)
    kl = float((logp_t.exp() * (logp_t - F.log_softmax(out, 0))).sum(0).mean())
    if host.task == 'classification':
        return [float(out.argmax() == ref.argmax()) * 100, 1.0], kl
    from .evaluate import class_areas
    k, pred = ref.shape[0], out.argmax(0)
    areas = torch.stack([class_areas(pred, target, k, ignore_index=-1), class_areas(pred, ref.argmax(0), k, -1)])
    return areas.flatten().tolist(), kl


def score_from_stats(host: AutotuneHost, stats: torch.Tensor, plain: bool = False) -> torch.Tensor:
    """stats: (..., D) summed per-image statistics -> (...) score (higher is better). ``plain``: segmentation's
    agreement mIoU with the teacher's raw map (the score: with its smoothed map)."""
    if host.task == 'segmentation':
        from .evaluate import miou_from_areas
        return miou_from_areas(stats.view(*stats.shape[:-1], 2, 3, -1)[..., int(plain), :, :])
    return stats[..., 0] / stats[..., 1].clamp_min(1e-12)


def score_interval(host: AutotuneHost, per_image: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                   seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap over images of the score: (low, high)."""
    n = per_image.shape[0]
    if n < 2:
        return float('nan'), float('nan')
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=g)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(resamples, n, dtype=torch.float64))
    scores = score_from_stats(host, weights @ per_image.double())
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(scores, q).tolist()
    return low, high


# ----------------------------------------------------------------------------------------------------------------
# the search
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    """Per-image statistics of one reduction (shared by the budgets that chose the same one)."""
    stats: List[List[float]] = field(default_factory=list)     # per image, in image order
    kl: List[float] = field(default_factory=list)

    def score(self, host, n=None) -> float:
        rows = self.stats[:n] if n else self.stats
        return float(score_from_stats(host, torch.tensor(rows, dtype=torch.float64).sum(0)))


class Autotuner:
    """Search a reduction for ``config`` / ``checkpoint`` on the calibration ``images``.

    Args:
        cfg: the loaded config (its reduction, if any, is removed for the teacher).
        checkpoint: weights (trusted file).
        images: calibration image paths (images only).
        budgets: target shares of the unreduced model's GFLOPs, each in (0, 1].
        methods: reducer types to search (default: all of :data:`METHOD_SPACES` the host runs).
        work_dir: resumable state (``autotune_state.json``) and outputs.
        max_minutes: stop scoring after this long and report the best found.
        progress: tqdm progress bar with the best so far.
        screen_images: every candidate is first scored on this many images (default :data:`SCREEN_IMAGES`).
        finalists: None (default): the best quarter (at least :data:`MIN_KEPT`) of the screened candidates of each
            budget are extended to all images. K: successive halving: the images are doubled and the better half
            (at least K) kept until K remain or the next rung would reach all images, then the K best are extended
            to all images (for slow models: far fewer image passes).
    """

    def __init__(self, cfg, checkpoint, images, budgets, methods=None, work_dir=None, max_minutes=None,
                 progress=True, log=print, screen_images: int = SCREEN_IMAGES, finalists: Optional[int] = None):
        for name, value in (('--screen-images', screen_images), ('--finalists', finalists)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f'{name} must be an integer >= 1, got {value!r}')
        for b in budgets:
            if not isinstance(b, (int, float)) or not 0 < b <= 1:
                raise InputError(f'--budget must be in (0, 1] (a share of the unreduced GFLOPs), got {b!r}')
        self.cfg, self.checkpoint, self.images = cfg, checkpoint, list(images)
        self.budgets = sorted(set(float(b) for b in budgets), reverse=True)
        self.host = AutotuneHost(cfg)
        self.methods = list(methods or METHOD_SPACES)
        self.work_dir, self.max_minutes, self.progress, self.log = work_dir, max_minutes, progress, log
        self.screen_images, self.finalists = screen_images, finalists
        self.results: Dict[str, Result] = {}
        self.failed: Dict[str, str] = {}             # candidate key -> why it cannot run on these images
        self.macs_cache: Dict[str, int] = {}
        self.stopped = False
        self.start = time.time()

    # --- setup: everything that can fail on bad input happens here, before any long work ---------------------
    def prepare(self, search: bool = True):
        """Build the teacher, load the images, count the unreduced MACs; with ``search``, solve the budgets for
        every setting (every bad input is reported here, before any long work)."""
        explicit = self.methods != list(METHOD_SPACES)
        if explicit:
            self.settings = method_settings(self.host, self.methods)
        else:   # default: every method the host runs
            self.settings = []
            for m in METHOD_SPACES:
                try:
                    self.settings += method_settings(self.host, [m])
                except InputError:
                    continue
        self.teacher = self.host.build(self.host.teacher_cfg(), checkpoint=self.checkpoint)
        self.state_dict = self.teacher.state_dict()
        self.inputs = self.host.load_inputs(self.teacher, self.images)
        self._load_state()
        self.base_macs = self.count_macs(self.teacher)
        self.candidates = self.solve_budgets(self.settings) if search else []

    def score_configs(self, named_cfgs: Sequence[Tuple[str, str, object]]) -> List[dict]:
        """Score given reduced configs (e.g. the points of a hand-made sweep) on the calibration images, as the
        search scores its candidates: [dict(method, setting, score, kl, GFLOPs)]. Needs :meth:`teacher_outputs`."""
        rows = []
        bar = _bar(len(named_cfgs) * len(self.inputs), self.progress, 'scoring')
        for method, setting, cfg in named_cfgs:
            model = self.host.build(cfg, self.state_dict)
            stats, kls = [], []
            for data, ref, target in zip(self.inputs, self.reference, self.targets):
                st, kl = image_statistics(self.host, self.host.run(model, data), ref, target)
                stats.append(st)
                kls.append(kl)
                bar.update(1)
            per_image = torch.tensor(stats, dtype=torch.float64)
            low, high = score_interval(self.host, per_image)
            rows.append(dict(method=method, setting=setting, score=float(score_from_stats(self.host, per_image.sum(0))),
                             low=low, high=high, kl=sum(kls) / len(kls), GFLOPs=self.count_macs(model) / 1e9,
                             plain=self.plain_agreement(per_image)))
        bar.close()
        return rows

    def plain_agreement(self, per_image: torch.Tensor) -> float:
        """Segmentation: the agreement mIoU with the teacher's raw map (NaN for the other tasks)."""
        if self.host.task != 'segmentation':
            return float('nan')
        return float(score_from_stats(self.host, per_image.sum(0), plain=True))

    def count_macs(self, model) -> int:
        from .flops import count_model_macs
        x, forward = self.host.mac_input(self.inputs[0])
        return count_model_macs(model, x, forward).total()

    def macs_of(self, setting: Setting, value) -> Optional[int]:
        """MACs of the setting at amount ``value``; None when the reduction does not fit this input (e.g. more
        top-k clusters than clusters)."""
        key = setting.cost_key(value)
        if key not in self.macs_cache:
            cfg = self.host.candidate_cfg(dict(setting.placement), setting.reducer(value))
            try:
                self.macs_cache[key] = self.count_macs(self.host.build(cfg, self.state_dict))
            except ValueError:
                self.macs_cache[key] = None
        return self.macs_cache[key]

    def strongest(self, setting: Setting):
        """The strongest amount that runs on this input: ``amount.strong``, else halfway to ``mild`` (5 times)."""
        a = setting.amount
        value = a.strong
        for _ in range(6):
            if self.macs_of(setting, value) is not None:
                return value
            value = (value + a.mild) / 2
            value = (math.floor(value) if a.mild < a.strong else math.ceil(value)) if a.integer else round(value, 4)
        return None

    def solve(self, setting: Setting, budget: float) -> Tuple[Optional[float], float]:
        """The mildest amount whose MACs fit ``budget`` (None if the strongest does not), and the share of the
        unreduced MACs at the strongest amount."""
        a = setting.amount
        target = budget * self.base_macs
        strong = self.strongest(setting)
        if strong is None:
            return None, float('inf')
        strongest = self.macs_of(setting, strong) / self.base_macs
        if strongest * self.base_macs > target:
            return None, strongest
        # invariant: ``strong`` fits, ``mild`` does not (mild is unreduced). Each step tries the point where the
        # MACs, interpolated linearly between the two ends, meet the target (kept away from the ends), then halves;
        # it stops when the fitting end is within CLOSE_ENOUGH of the target.
        mild, m_mild, m_strong = a.mild, self.base_macs, strongest * self.base_macs
        for step in range(BISECTION_STEPS if not a.integer else 64):
            if m_strong >= CLOSE_ENOUGH * target or (a.integer and abs(strong - mild) <= 1):
                break
            if a.integer:
                share = 0.5
            else:
                share = min(0.9, max(0.1, (m_mild - target) / max(m_mild - m_strong, 1))) if step % 2 == 0 else 0.5
            mid = mild + share * (strong - mild)
            mid = (math.floor(mid) if mild < strong else math.ceil(mid)) if a.integer else round(mid, 4)
            if mid in (mild, strong):
                mid = mild + (1 if strong > mild else -1) if a.integer else round((mild + strong) / 2, 4)
            macs = self.macs_of(setting, mid)
            if macs is not None and macs <= target:
                strong, m_strong = mid, macs
            else:
                mild, m_mild = mid, macs if macs is not None else m_mild
        return strong, strongest

    def solve_budgets(self, settings: Sequence[Setting]) -> List[Candidate]:
        candidates, reachable = [], []
        bar = _bar(len(settings), self.progress, 'fitting the budgets (MAC counter)', 'setting')
        for s in settings:
            for b in self.budgets:
                value, strongest = self.solve(s, b)
                reachable.append(strongest)
                if value is not None:
                    candidates.append(Candidate(s, value, b, self.macs_of(s, value) / 1e9))
            bar.update(1)
        bar.close()
        self._save_state()
        for b in self.budgets:
            if not any(c.budget == b for c in candidates):
                raise InputError(f'--budget {b:g} cannot be reached by {" ".join(self.methods)} on this model: the '
                                 f'smallest reachable is {min(reachable):.3f} of the unreduced GFLOPs')
        return candidates

    # --- resumable state --------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        text = json.dumps([self.cfg.pretty_text, str(self.checkpoint), [osp.abspath(p) for p in self.images],
                           STATE_VERSION])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _state_path(self) -> Optional[str]:
        return osp.join(self.work_dir, 'autotune_state.json') if self.work_dir else None

    def _load_state(self):
        path = self._state_path()
        self.saved = {}
        if path and osp.isfile(path):
            with open(path) as f:
                state = json.load(f)
            if state.get('fingerprint') != self._fingerprint():
                raise InputError(f'--work-dir {self.work_dir} holds a run of another config, checkpoint or image '
                                 'list: give an empty folder')
            self.saved = state.get('results', {})
            self.failed.update(state.get('failed', {}))
            self.macs_cache.update(state.get('macs', {}))

    def _save_state(self):
        path = self._state_path()
        if not path:
            return
        os.makedirs(self.work_dir, exist_ok=True)
        data = dict(fingerprint=self._fingerprint(), failed=self.failed, macs=self.macs_cache,
                    results=dict(self.saved, **{k: dict(stats=r.stats, kl=r.kl) for k, r in self.results.items()}))
        with open(path + '.tmp', 'w') as f:
            json.dump(data, f)
        os.replace(path + '.tmp', path)

    # --- scoring ----------------------------------------------------------------------------------------------
    def teacher_outputs(self):
        """The teacher's outputs (and for segmentation its smoothed map, the score's ground truth), and the
        outputs of the blocks the candidates share with it (run once)."""
        blocks = sorted({self.host.shared_prefix(c.placement, c.reducer) for c in self.candidates} - {None})
        bar = _bar(len(self.inputs), self.progress, 'teacher')
        self.reference, self.targets, self.prefixes = [], [], []
        for data in self.inputs:
            if blocks:
                with self.host.record_blocks(self.teacher, blocks) as calls:
                    out = self.host.run(self.teacher, data)
            else:
                out, calls = self.host.run(self.teacher, data), []
            self.reference.append(out)
            self.targets.append(smoothed_teacher_map(out, self.host.smoothing_window(data, out))
                                if self.host.task == 'segmentation' else None)
            self.prefixes.append(calls)
            bar.update(1)
        bar.close()

    def run_candidate(self, c: Candidate, model, i: int):
        """The candidate's output on image ``i``, its shared blocks replayed from the teacher's run."""
        block = self.host.shared_prefix(c.placement, c.reducer)
        if block is None or not self.prefixes[i] or block not in self.prefixes[i][0]:
            return self.host.run(model, self.inputs[i])
        with self.host.replay_blocks(model, block, self.prefixes[i]):
            return self.host.run(model, self.inputs[i])

    def result(self, c: Candidate) -> Result:
        if c.key not in self.results:
            saved = self.saved.get(c.key, {})
            self.results[c.key] = Result(list(saved.get('stats', [])), list(saved.get('kl', [])))
        return self.results[c.key]

    def evaluate(self, candidates: Sequence[Candidate], n_images: int, bar) -> None:
        """Extend every candidate's per-image statistics to the first ``n_images`` images."""
        for c in candidates:
            if c.key in self.failed:
                self._leave_out(c, self.failed[c.key])
                continue
            r = self.result(c)
            if len(r.stats) >= n_images:
                continue
            if self.out_of_time():
                return
            model = self.host.build(self.host.candidate_cfg(c.placement, c.reducer), self.state_dict)
            try:
                for i in range(len(r.stats), n_images):
                    stats, kl = image_statistics(self.host, self.run_candidate(c, model, i), self.reference[i],
                                                 self.targets[i])
                    r.stats.append(stats)
                    r.kl.append(kl)
                    bar.update(1)
            except ValueError as e:   # the reduction does not fit an image of another size than the first
                from ..utils.cli import message
                self.failed[c.key] = message(e)
                self._leave_out(c, self.failed[c.key])
                self._save_state()
                continue
            self._save_state()
            best = self.ranked(n_images, c.budget)[:1]
            if best:
                bar.set_postfix_str(f'budget {c.budget:g} best {best[0][2]:.2f}: {best[0][0].description[:70]}')

    def _leave_out(self, c: Candidate, why: str):
        self.log(f'left out {c.description}: {why}')
        self.candidates = [d for d in self.candidates if d.key != c.key]
        self.results.pop(c.key, None)

    def out_of_time(self) -> bool:
        if self.max_minutes is not None and time.time() - self.start > 60 * self.max_minutes:
            if not self.stopped:
                self.log(f'--max-minutes {self.max_minutes:g} reached: reporting the best found so far')
            self.stopped = True
        return self.stopped

    def ranked(self, n_images: Optional[int] = None, budget: Optional[float] = None,
               at_least: bool = True) -> List[Tuple[Candidate, Result, float]]:
        """(candidate, result, score on the first ``n_images``) of the candidates of ``budget`` scored on at least
        ``n_images`` images (default: all), best first. ``at_least=False``: those scored on fewer, on what they
        have."""
        n = n_images or len(self.inputs)
        seen, rows = set(), []
        for c in self.candidates:
            r = self.results.get(c.key)
            if (budget is not None and c.budget != budget) or c.key in seen or r is None or not r.stats:
                continue
            if (len(r.stats) >= n) != at_least:
                continue
            seen.add(c.key)
            rows.append((c, r, r.score(self.host, n if at_least else None)))
        return sorted(rows, key=lambda t: -t[2])

    def refine_temperatures(self, n: int) -> List[Candidate]:
        """Expediting: half-decade temperatures around the best decade, per placement and budget."""
        extra = []
        for b in self.budgets:
            best = {}
            for c, _, _ in self.ranked(n, b):
                if c.setting.method == 'Expediting':
                    best.setdefault(json.dumps(_jsonable(c.placement), sort_keys=True), c)
            for c in best.values():
                t = dict(c.setting.params)['temperature']
                for f in (10 ** -0.5, 10 ** 0.5):
                    new_t = float(f'{t * f:.2g}')
                    params = dict(c.setting.params, temperature=new_t)
                    lab = c.setting.label.replace(f't {t:g}', f't {new_t:g}')
                    s = _setting('Expediting', dict(c.setting.placement), params, c.setting.amount, lab,
                                 c.setting.cost_free)
                    extra.append(Candidate(s, c.value, b, c.gflops))   # the temperature leaves the MACs unchanged
        return extra

    def run(self) -> Dict[float, List[Tuple[Candidate, Result, float]]]:
        """Score the candidates; returns per budget the ranking (complete ones first, then screened ones)."""
        n_all = len(self.inputs)
        n_screen = min(self.screen_images, n_all)
        self.teacher_outputs()
        bar = _bar(None, self.progress, 'autotune')
        self.evaluate(self.candidates, n_screen, bar)
        refined = [c for c in self.refine_temperatures(n_screen) if c.key not in {d.key for d in self.candidates}]
        self.candidates += refined
        self.evaluate(refined, n_screen, bar)
        for b in self.budgets:
            ranked = self.ranked(n_screen, b)
            if self.finalists is None:
                keep = max(MIN_KEPT, math.ceil(KEEP_SHARE * len(ranked)))
            else:   # successive halving: twice the images for the better half, down to the finalists
                n, keep = n_screen, self.finalists
                while len(ranked) > keep and 2 * n < n_all:
                    n *= 2
                    self.evaluate([c for c, _, _ in ranked[:max(keep, math.ceil(len(ranked) / 2))]], n, bar)
                    ranked = self.ranked(n, b)
            self.evaluate([c for c, _, _ in ranked[:keep]], n_all, bar)
        bar.close()
        return {b: self.ranked(n_all, b) + self.ranked(n_all, b, at_least=False) for b in self.budgets}


def _classification_preprocess():
    """``preprocess(path, data)`` of tools/test_classifier.py (the classifier's evaluation transform)."""
    import importlib.util
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    path = osp.join(root, 'tools', 'test_classifier.py')
    if not osp.isfile(path):    # a non-editable install ships no tools/
        raise InputError(f'autotune on a timm classifier needs the clone\'s tools/test_classifier.py (its '
                         f'evaluation transform); not found at {path}')
    spec = importlib.util.spec_from_file_location('mmtokred_test_classifier', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.preprocess


def _bar(total, enabled, desc, unit='img'):
    from .timing import progress_bar
    bar = progress_bar(total, enabled, desc, unit)
    if not hasattr(bar, 'set_postfix_str'):
        bar.set_postfix_str = lambda *a, **k: None
    return bar


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------
SCORE_NAMES = dict(segmentation='agreement mIoU (smoothed teacher)', backbone='feature agreement',
                   classification='top-1 agreement')


def table_rows(tuner: Autotuner, ranking) -> List[dict]:
    rows = []
    for c, r, score in ranking:
        low, high = score_interval(tuner.host, torch.tensor(r.stats, dtype=torch.float64))
        kl = [v for v in r.kl if v == v]
        rows.append(dict(method=c.setting.method, setting=c.description, GFLOPs=c.gflops,
                         GFLOPs_share=c.gflops * 1e9 / tuner.base_macs, score=score, low=low, high=high,
                         plain=tuner.plain_agreement(torch.tensor(r.stats, dtype=torch.float64)),
                         kl=sum(kl) / len(kl) if kl else float('nan'), images=len(r.stats),
                         complete=len(r.stats) >= len(tuner.inputs), candidate=c))
    return rows


def markdown_table(tuner: Autotuner, rows: List[dict], budget: float) -> str:
    name = SCORE_NAMES[tuner.host.task]
    head = f'budget {budget:g} x {tuner.base_macs / 1e9:.2f} GFLOPs (unreduced); score: {name}'
    out = [head, '', f'| rank | method | setting | GFLOPs | share | {name} [95% interval over images] | '
                     'agreement mIoU (raw teacher) | mean KL | images |', '|---|---|---|---|---|---|---|---|---|']
    for i, r in enumerate(rows):
        mark = '' if r['complete'] else ' (screened only)'
        interval = '' if r['low'] != r['low'] else f" [{r['low']:.2f}, {r['high']:.2f}]"
        kl = '-' if r['kl'] != r['kl'] else f"{r['kl']:.4f}"
        plain = '-' if r['plain'] != r['plain'] else f"{r['plain']:.2f}"
        out.append(f"| {i + 1} | {r['method']} | {r['setting']} | {r['GFLOPs']:.3f} | {r['GFLOPs_share']:.3f} | "
                   f"{r['score']:.2f}{interval} | {plain} | {kl} | {r['images']}{mark} |")
    return '\n'.join(out)


def plot_scores(tuner: Autotuner, rows_by_budget: Dict[float, List[dict]], path: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.6))
    rows = [r for rows in rows_by_budget.values() for r in rows if r['complete']]
    for m in dict.fromkeys(r['method'] for r in rows):
        pts = [r for r in rows if r['method'] == m]
        ax.errorbar([r['GFLOPs'] for r in pts], [r['score'] for r in pts],
                    yerr=[[max(0.0, r['score'] - r['low']) if r['low'] == r['low'] else 0 for r in pts],
                          [max(0.0, r['high'] - r['score']) if r['high'] == r['high'] else 0 for r in pts]],
                    fmt='o', capsize=2, label=m)
    for b in rows_by_budget:
        ax.axvline(b * tuner.base_macs / 1e9, ls='--', color='grey', lw=1)
    ax.set_xlabel('GFLOPs (dashed: budgets)')
    ax.set_ylabel(SCORE_NAMES[tuner.host.task] + ' with the unreduced model')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f'autotune: {len(tuner.inputs)} calibration images; bars: 95% interval over images', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_config(tuner: Autotuner, candidate: Candidate, config_path: str, out_path: str, score: float) -> str:
    """A config inheriting ``config_path`` that states only ``candidate``'s reduction."""
    out_dir = osp.dirname(osp.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    base = osp.relpath(osp.abspath(config_path), out_dir)
    header = (f'# Written by tools/analysis_tools/autotune.py: {candidate.description}\n'
              f'# {candidate.gflops:.3f} GFLOPs ({candidate.gflops * 1e9 / tuner.base_macs:.3f} of the unreduced '
              f'model, budget {candidate.budget:g}); {SCORE_NAMES[tuner.host.task]} with the unreduced model on '
              f'{len(tuner.inputs)} calibration images: {score:.2f}\n')
    text = header + tuner.host.config_text(base, candidate.placement, candidate.reducer, tuner.host.base_has_reducer())
    with open(out_path, 'w') as f:
        f.write(text)
    return out_path


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = torch.tensor(ranks(list(xs))), torch.tensor(ranks(list(ys)))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()).clamp_min(1e-12))
