"""Shared helpers for the tests (imported by path: tests/ has no __init__.py, to not collide with mmseg's)."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')


def load_cfg(path, **options):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, path) if not osp.isabs(path) else path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def build_model(cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmtokred  # noqa: F401
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def build_model_on_meta(cfg):
    """Build ``cfg.model`` with every parameter and buffer on the meta device: shapes only, no memory, no init
    time (full-size models in a second). Swin reads its drop-path schedule with ``.item()``: ``torch.linspace``
    runs on the CPU."""
    import torch
    from torch.overrides import TorchFunctionMode

    class LinspaceOnCpu(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if func is torch.linspace:
                kwargs['device'] = 'cpu'
            return func(*args, **kwargs)

    with torch.device('meta'), LinspaceOnCpu():
        return build_model(cfg)


def load_tool(path):
    """Import a script under tools/ (``path`` relative to tools/, e.g. 'analysis_tools/get_flops.py') as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('tool_' + osp.basename(path)[:-3], osp.join(ROOT, 'tools', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_ade_and_checkpoint(tmp, num=3, config='configs/tiny/segmenter_tiny_ade.py', meta=None, seed=0):
    """A tiny generated ADE20K folder under ``tmp`` and a checkpoint of ``config``'s model (random weights, seeded)
    saved as ``tmp/tiny.pth`` with ``meta``. Returns (data folder, checkpoint path, state dict)."""
    import sys

    import torch
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_data import make_tiny_ade
    data = make_tiny_ade(str(tmp / 'tiny_ade'), num=num, size=(128, 96))
    torch.manual_seed(seed)
    state = build_model(load_cfg(config)).state_dict()
    ckpt = str(tmp / 'tiny.pth')
    torch.save(dict(state_dict=state, meta=meta or dict()), ckpt)
    return data, ckpt, state


def compile_twice(model, x):
    """Eager output, then two calls of ``torch.compile(model, dynamic=False)`` with a backend that counts the
    captured graphs and runs each as is (dynamo's capture, guards and resumes; no code generation). Returns
    (eager, first compiled output, second compiled output, graphs after the first call, graphs after both)."""
    import torch
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    try:
        with torch.no_grad():
            eager = model(x)
            compiled_model = torch.compile(model, backend=counting_backend, dynamic=False)
            first = compiled_model(x)
            n_first = len(graphs)
            again = compiled_model(x)
    finally:
        torch._dynamo.reset()
    return eager, first, again, n_first, len(graphs)


def smooth_tokens(B, H, W, C, seed=0):
    """(B, H, W, C) tokens with spatial structure (bilinearly upsampled noise plus a little pixel noise)."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, max(2, H // 3), max(2, W // 3), generator=g)
    x = F.interpolate(x, size=(H, W), mode='bilinear', align_corners=False)
    return (x + 0.1 * torch.randn(B, C, H, W, generator=g)).permute(0, 2, 3, 1).contiguous()
