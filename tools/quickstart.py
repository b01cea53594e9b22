"""A first smoke test in one command (``make quickstart``; CI runs it too): makes a tiny ADE20K-format dataset and
a checkpoint of the tiny 4-layer Segmenter (random weights, seeded), then runs ``tools/test.py`` (in this process,
with the arguments it prints) with the Token Adapter on it, as a user would run it on a real model. Takes well
under a minute on a laptop CPU; the printed mIoU is that of random weights (a smoke test, not a result).

    python tools/quickstart.py [--work-dir work_dirs/quickstart]

Everything it writes goes to the work dir. No download.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

BASE = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_ade.py')
REDUCED = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')


def make_tiny_checkpoint(path: str, seed: int = 0) -> str:
    """The tiny Segmenter's weights (random, seeded) saved as a plain state dict."""
    import torch

    from mmtokred.analysis.models import build_model, load_config
    torch.manual_seed(seed)
    model = build_model(load_config(BASE))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(note='tools/quickstart.py: random tiny weights')), path)
    return path


def main(argv=None):
    from mmtokred.utils.cli import add_debug_arg
    p = argparse.ArgumentParser(description='mmtokred quick start: tiny data + tiny checkpoint + tools/test.py')
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'quickstart'))
    add_debug_arg(p)
    args = p.parse_args(argv)

    from make_tiny_data import make_tiny_ade

    from mmtokred.analysis.timing import stage
    with stage('making 3 tiny ADE20K-format images and a tiny checkpoint'):
        data = make_tiny_ade(osp.join(args.work_dir, 'tiny_ade'), num=3, size=(128, 96))
        ckpt = make_tiny_checkpoint(osp.join(args.work_dir, 'tiny_segmenter.pth'))
    argv = [REDUCED, ckpt, '--work-dir', args.work_dir, '--cfg-options', f'test_dataloader.dataset.data_root={data}']
    print('running: python tools/test.py ' + ' '.join(osp.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv),
          flush=True)
    metrics = load_tool('test').main(argv)
    print(f'\nquick start passed: tools/test.py ran the tiny Token Adapter config, mIoU {metrics["mIoU"]:.2f} with '
          f'random weights (outputs in {args.work_dir})')
    return metrics


def load_tool(name):
    """tools/<name>.py as a module (tools/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'mmtokred_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

if __name__ == '__main__':
    from mmtokred.utils import run_cli
    sys.exit(run_cli(main))
