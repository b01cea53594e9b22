"""Pictures of what a reducer did on one image.

    python tools/analysis_tools/visualize_tokens.py IMAGE CONFIG [--checkpoint CKPT] [--out FILE.png]
        [--cfg-options ...]      (default --out: work_dirs/tokens.png)

Token Adapter (paper Fig. 3 and 5): the removed rows and columns; the groups (grey = representative,
orange = unique, teal = normal); the matching of normal tokens to their representative token (one colour per
group). Expediting: the cluster each token is reconstructed from first (nearest centre). ToMe: the merge groups.
ViT and Swin hosts (Swin: the windows of the first reduced stage, laid out on the image).
With a checkpoint the predictions of the reduced and of the unreduced model (the same weights, reduction switched
off) are shown side by side, with a legend of the classes they contain. The picture shows the first reduction of
the first crop; the token panels show that crop as the backbone saw it. Panels are lettered (a), (b), ...
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

DEFAULT_OUT = osp.join('work_dirs', 'tokens.png')


def parse_args(argv=None):
    from mmtokred.utils.cli import add_cfg_options_arg, add_debug_arg
    p = argparse.ArgumentParser(description='Visualise a token reduction')
    p.add_argument('image')
    p.add_argument('config')
    p.add_argument('--checkpoint', help='trusted checkpoint; without it the weights are random')
    p.add_argument('--out', default=DEFAULT_OUT, help=f'picture to write (default: {DEFAULT_OUT})')
    p.add_argument('--device', default='cpu')
    add_cfg_options_arg(p)
    add_debug_arg(p)
    return p.parse_args(argv)


def capture_reduction(model, image):
    """Run mmseg inference on ``image`` and return (first Reduction, its input tokens, result, crop).

    The first reducer's first call is captured, whichever the host drives (once per span, per window or around every
    sub-block)."""
    from mmseg.apis import inference_model

    from mmtokred.hosts import reducers_of
    reducers = reducers_of(model)
    if not reducers:
        raise ValueError('the config has no active reducer (model.backbone.reducer): nothing to visualise')
    seen, crops = [], []
    hooks = [model.backbone.register_forward_pre_hook(lambda m, i: crops.append(i[0][:1].detach())),
             reducers[0].register_forward_hook(lambda m, inp, out: seen.append((out, inp[0])) if not seen else None)]
    try:
        result = inference_model(model, image)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise RuntimeError('the reducer did not run (is its ratio 0?)')
    return seen[0][0], seen[0][1], result, _denormalize(model, crops[0])


def _denormalize(model, x):
    """The first crop the backbone saw, as an RGB uint8 picture."""
    pre = model.data_preprocessor
    img = x[0] * pre.std + pre.mean                       # (3, h, w) in the channel order the model uses
    return img.clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def palette(n, seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(40, 255, size=(max(n, 1), 3)).astype(np.uint8)


def token_panels(model, reduction, image_hw):
    """(dict name -> (h, w, 3) uint8 picture at token resolution or (h, w) bool mask of kept tokens, pixels per
    token) for the first image. Every reduction gets its groups (the reduced token each position is restored
    from); what the reducer declares (``panels``) adds pictures, e.g. the Token Adapter's kept rows / columns and
    token roles. The host lays per-window reductions out on the image (``Host.token_map``)."""
    import torch

    from mmtokred.hosts import host_for_module, reducers_of
    host, reducer = host_for_module(model.backbone), reducers_of(model)[0]
    panels = {}
    for name, value in reducer.panels(reduction).items():
        value, patch = host.token_map(model.backbone, value, image_hw)
        value = value.cpu().numpy()
        if value.dtype != bool:
            colours = reducer.panel_colours.get(name)
            value = (np.asarray(colours, np.uint8) if colours else palette(int(value.max()) + 1))[value]
        panels[name] = value
    group = reduction.assignment()                                    # (B', h, w): one map per image or window
    group = group + torch.arange(group.shape[0], device=group.device)[:, None, None] * reduction.tokens.shape[1]
    group, patch = host.token_map(model.backbone, group, image_hw)
    group = group.cpu().numpy()
    panels['groups: reduced token restored from'] = palette(int(group.max()) + 1)[group]
    return panels, patch


def render(image_rgb, panels, prediction=None, pred_palette=None, patch=16, out=DEFAULT_OUT, title='',
           unreduced=None, classes=None):
    """Lettered panels: the input crop, the token panels, then the reduced model's prediction and the unreduced
    one's (``unreduced``) with a legend of the classes in either (names from ``classes``)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    H, W = next(iter(panels.values())).shape[:2]
    img = np.zeros((H * patch, W * patch, 3), np.uint8)     # the crop, padded like the patch embedding pads
    h, w = min(image_rgb.shape[0], H * patch), min(image_rgb.shape[1], W * patch)
    img[:h, :w] = image_rgb[:h, :w]
    pics = [('input', img)]
    for name, p in panels.items():
        up = np.kron(p, np.ones((patch, patch) + ((1,) if p.ndim == 3 else ()), dtype=p.dtype))
        if p.dtype == bool:   # darken removed rows / columns
            pic = (img * np.where(up[..., None], 1.0, 0.25)).astype(np.uint8)
        else:
            pic = (0.45 * img + 0.55 * up).astype(np.uint8)
        pics.append((name, pic))
    pal = np.asarray(pred_palette, np.uint8) if pred_palette is not None else None
    preds = [(n, p) for n, p in (('prediction, reduced', prediction), ('prediction, unreduced', unreduced))
             if p is not None]
    for name, pred in preds:
        pics.append((f'{name} (whole image)', pal[pred.astype(np.int64)]))
    legend = []
    if preds:
        present = np.unique(np.concatenate([p.ravel() for _, p in preds]))
        legend = [Patch(color=pal[k] / 255.0, label=classes[k] if classes and k < len(classes) else str(k))
                  for k in present]
    rows_legend = (len(legend) + 5) // 6
    fig, axes = plt.subplots(1, len(pics), figsize=(3.2 * len(pics), 3.2 * H / W + 0.6 + 0.25 * rows_legend))
    for i, (ax, (name, pic)) in enumerate(zip(np.atleast_1d(axes), pics)):
        ax.imshow(pic)
        ax.set_title(f'({chr(ord("a") + i)}) {name}', fontsize=8)
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if legend:
        fig.legend(handles=legend, loc='lower center', ncol=min(6, len(legend)), fontsize=7, frameon=False,
                   title='classes in the predictions', title_fontsize=7)
        fig.subplots_adjust(bottom=0.08 + 0.07 * rows_legend)
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def load_model(config, checkpoint=None, device='cpu', cfg_options=None):
    """The reduced model of ``config`` with a trusted checkpoint (any mmengine scheme, e.g. ``dinov2://``) and the
    checkpoint's class names / palette; random weights without one."""
    from mmseg.apis import init_model

    import mmtokred  # noqa: F401
    from mmtokred.hosts.settings import load_checked_config
    from mmtokred.utils import allow_trusted_checkpoints
    from mmtokred.utils.cli import check_file
    allow_trusted_checkpoints()
    check_file(checkpoint, 'checkpoint')
    cfg = load_checked_config(config, cfg_options)
    if (cfg.model.get('backbone') or {}).get('reducer') is None:    # checked before the model is built
        from mmtokred.utils.cli import InputError
        raise InputError(f'{config}: model.backbone has no reducer, so there is no reduction to show; give a reduced '
                         'config (e.g. configs/tiny/segmenter_tiny_tokenadapter_ade.py) or set '
                         'model.backbone.type / reducer with --cfg-options')
    model = init_model(cfg, None, device=device)
    if checkpoint:
        from mmtokred.utils import load_trusted_checkpoint
        ckpt = load_trusted_checkpoint(model, checkpoint, map_location=device)
        meta = ckpt.get('meta', {}).get('dataset_meta') if isinstance(ckpt, dict) else None
        if meta:
            model.dataset_meta = meta
    return model


def visualize_model(model, image, out=DEFAULT_OUT, title='', predict=True):
    """Picture of the reduction of ``model`` on ``image``. Returns (picture path, prediction of the reduced model,
    prediction of the unreduced one: the same weights with the reduction off), both (H, W) int arrays at the
    image's size, or None with ``predict=False`` (random weights)."""
    from mmtokred.utils.cli import check_file
    check_file(image, 'image')
    reduction, tokens, result, rgb = capture_reduction(model, image)
    panels, patch = token_panels(model, reduction, rgb.shape[:2])
    prediction = unreduced = None
    if predict:
        from mmseg.apis import inference_model

        from mmtokred.hosts import reduction_disabled
        prediction = result.pred_sem_seg.data[0].cpu().numpy()
        with reduction_disabled(model):
            unreduced = inference_model(model, image).pred_sem_seg.data[0].cpu().numpy()
    meta = getattr(model, 'dataset_meta', None) or dataset_metainfo(model.cfg)
    pal = meta.get('palette')
    if pal is None and prediction is not None:
        pal = palette(int(max(prediction.max(), unreduced.max())) + 1)
    out = render(np.ascontiguousarray(rgb), panels, prediction, pal, patch, out, title=title, unreduced=unreduced,
                 classes=meta.get('classes'))
    return out, prediction, unreduced


def visualize(image, config, checkpoint=None, out=DEFAULT_OUT, device='cpu', cfg_options=None):
    from mmtokred.utils.cli import check_file
    check_file(image, 'image')
    from mmtokred.hosts import reducers_of
    model = load_model(config, checkpoint, device, cfg_options)
    title = f'{osp.basename(config)}: {type(reducers_of(model)[0]).__name__}'
    return visualize_model(model, image, out, title, predict=bool(checkpoint))[0]


def dataset_metainfo(cfg) -> dict:
    """classes / palette of the config's test dataset class (for a checkpoint without ``dataset_meta``)."""
    from mmseg.registry import DATASETS
    dataset_cls = DATASETS.get((cfg.get('test_dataloader') or {}).get('dataset', {}).get('type', ''))
    return dict(getattr(dataset_cls, 'METAINFO', {}) or {})


def main(argv=None):
    args = parse_args(argv)
    path = visualize(args.image, args.config, args.checkpoint, args.out, args.device, args.cfg_options)
    print(f'wrote {path}')
    return path


if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
