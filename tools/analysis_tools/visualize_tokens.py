"""Pictures of what a reducer did on one image.

    python tools/analysis_tools/visualize_tokens.py IMAGE CONFIG [--checkpoint CKPT] [--out FILE.png]
        [--cfg-options ...]

Token Adapter (paper Fig. 3 and 5): the removed rows and columns; the groups (grey = representative,
orange = unique, teal = normal); the matching of normal tokens to their representative token (one colour per
group). Expediting: the cluster each token is reconstructed from first (nearest centre). ToMe: the merge groups.
With a checkpoint the prediction of the model is shown too. The picture shows the first reduction of the first
crop; the panels show that crop as the backbone saw it.
"""
import argparse
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

GROUP_COLOURS = {'representative': (150, 150, 150), 'unique': (255, 140, 0), 'normal': (0, 150, 150)}


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Visualise a token reduction')
    p.add_argument('image')
    p.add_argument('config')
    p.add_argument('--checkpoint', help='trusted checkpoint; without it the weights are random')
    p.add_argument('--out', default='tokens.png')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def capture_reduction(model, image):
    """Run mmseg inference on ``image`` and return (first Reduction, its input tokens (1, H, W, C), result, crop).

    The reducer's first call is captured, whichever the host drives (once per span, or around every sub-block)."""
    from mmseg.apis import inference_model

    reducer = getattr(model.backbone, 'token_reducer', None)
    if reducer is None:
        raise ValueError('the config has no reducer (model.backbone.reducer): nothing to visualise')
    seen, crops = [], []
    hooks = [model.backbone.register_forward_pre_hook(lambda m, i: crops.append(i[0][:1].detach())),
             reducer.register_forward_hook(lambda m, inp, out: seen.append((out, inp[0])) if not seen else None)]
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


def token_panels(reduction):
    """Dict name -> (H, W, 3) uint8 picture at token resolution, or (H, W) bool mask for 'removed'. Every
    reduction gets its groups (the reduced token each position is restored from); what a reducer records in
    ``info`` adds panels (kept rows / columns and token roles of the Token Adapter)."""
    info = reduction.info
    H, W = info['grid']
    panels = {}
    if 'rows' in info:      # rows / columns were removed
        rows, cols = info['rows'][0].tolist(), info['cols'][0].tolist()
        kept = np.zeros((H, W), bool)
        kept[np.ix_(rows, cols)] = True
        panels['removed rows / columns'] = kept
        ru = dict(zip(rows, info['row_unique'][0].tolist()))
        cu = dict(zip(cols, info['col_unique'][0].tolist()))
        roles = np.zeros((H, W, 3), np.uint8)
        roles[:] = GROUP_COLOURS['normal']
        for i in rows:
            for j in cols:
                roles[i, j] = GROUP_COLOURS['unique' if ru[i] or cu[j] else 'representative']
        panels['roles: grey rep. / orange unique / teal normal'] = roles
    group = reduction.assignment()[0].reshape(H, W).cpu().numpy()
    panels['groups: reduced token restored from'] = palette(int(group.max()) + 1)[group]
    return panels


def render(image_rgb, panels, prediction=None, pred_palette=None, patch=16, out='tokens.png', title=''):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
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
    if prediction is not None:
        pics.append(('prediction (whole image)', np.asarray(pred_palette, np.uint8)[prediction.astype(np.int64)]))
    fig, axes = plt.subplots(1, len(pics), figsize=(3.2 * len(pics), 3.2 * H / W + 0.6))
    for ax, (name, pic) in zip(np.atleast_1d(axes), pics):
        ax.imshow(pic)
        ax.set_title(name, fontsize=8)
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def visualize(image, config, checkpoint=None, out='tokens.png', device='cpu', cfg_options=None):
    from mmseg.apis import init_model

    import mmtokred  # noqa: F401
    from mmtokred.utils import allow_trusted_checkpoints
    allow_trusted_checkpoints()
    model = init_model(config, None, device=device, cfg_options=cfg_options)
    if checkpoint:
        from mmtokred.utils import load_trusted_checkpoint
        ckpt = load_trusted_checkpoint(model, checkpoint, map_location=device)
        meta = ckpt.get('meta', {}).get('dataset_meta') if isinstance(ckpt, dict) else None
        if meta:
            model.dataset_meta = meta
    reduction, tokens, result, rgb = capture_reduction(model, image)
    panels = token_panels(reduction)
    patch = model.backbone.patch_embed.projection.kernel_size[0]
    prediction = result.pred_sem_seg.data[0].cpu().numpy() if checkpoint else None
    pal = model.dataset_meta.get('palette') if getattr(model, 'dataset_meta', None) else None
    if pal is None and prediction is not None:
        pal = palette(int(prediction.max()) + 1)
    return render(np.ascontiguousarray(rgb), panels, prediction, pal, patch, out,
                  title=f'{osp.basename(config)}: {type(model.backbone.token_reducer).__name__}')


def main(argv=None):
    args = parse_args(argv)
    path = visualize(args.image, args.config, args.checkpoint, args.out, args.device, args.cfg_options)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
