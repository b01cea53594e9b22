"""Speed as users measure it: the attention-kernel record and parity check, torch.compile of every reducer on a
tiny host (compiled == eager, graph breaks), and the benchmark / GPU-table tools on tiny configs (nothing timed is
asserted: only structure)."""
import importlib.util
import os.path as osp

import pytest
import torch

from mmtokred.analysis.compiled import count_graph_breaks
from mmtokred.analysis.kernels import kernel_parity, record_attention_kernels, summarize_kernels

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
TINY = osp.join(helpers.ROOT, 'configs', 'tiny')

REDUCERS = {
    'TokenAdapter': dict(type='TokenAdapter', r_h=0.3, r_w=0.3),
    'Expediting': dict(type='Expediting', cluster_grid=4, locality=3, topk=4),
    'ToMe': dict(type='ToMe', ratio=0.5),
    'ToMe-sub_block': dict(type='ToMe', ratio=0.5, mode='sub_block'),
    'EViT': dict(type='EViT', keep_rate=0.5),
    'MSTM': dict(type='MSTM', keep_rate=0.5),
    'Pooling': dict(type='Pooling', ratio=0.5),
}


def tiny_vit(reducer=None):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmtokred  # noqa: F401
    init_default_scope('mmseg')      # an earlier test may have left mmdet's scope
    torch.manual_seed(0)
    model = MODELS.build(dict(type='ReducedVisionTransformer', img_size=(64, 80), patch_size=8, embed_dims=32,
                              num_layers=4, num_heads=2, mlp_ratio=2, out_indices=(1, 3), final_norm=True,
                              with_cls_token=True, reducer=reducer, reduce_after_layer=1))
    model.eval()   # mmseg's VisionTransformer.train() returns None: do not chain
    return model


def kernels_of(model, x):
    return record_attention_kernels(model, lambda: model(x))


def test_kernel_parity_on_a_tiny_vit():
    x = torch.randn(2, 3, 64, 80)
    base = kernels_of(tiny_vit(), x)
    assert sorted(base) == [f'layers.{i}.attn.attn' for i in range(4)]
    # upstream mmseg ViT: nn.MultiheadAttention without batch_first, need_weights=True -> explicit math, weights
    assert summarize_kernels(base) == 'math + weights x4'
    for name in ('TokenAdapter', 'ToMe-sub_block', 'EViT'):
        reduced = kernels_of(tiny_vit(REDUCERS[name]), x)
        assert kernel_parity(base, reduced) == ([], []), name
        assert [c.tokens for c in reduced['layers.3.attn.attn']][0] < 81, name      # ran on fewer tokens
    # a block switched to the fused kernel (need_weights=False -> scaled_dot_product_attention) is named
    model = tiny_vit(REDUCERS['TokenAdapter'])
    model.layers[2].attn.attn.register_forward_pre_hook(lambda m, a, k: (a, dict(k, need_weights=False)),
                                                        with_kwargs=True)
    reduced = kernels_of(model, x)
    assert reduced['layers.2.attn.attn'][0].kernel.startswith('sdpa:') and not reduced['layers.2.attn.attn'][0].weights
    mismatches, payers = kernel_parity(base, reduced)
    assert len(mismatches) == 1 and mismatches[0].startswith('layers.2.attn.attn: baseline [\'math\']')
    assert kernel_parity(reduced, base)[1] == ['layers.2.attn.attn: returns attention weights (the baseline does not)']


@pytest.mark.parametrize('name', list(REDUCERS))
def test_compiled_equals_eager_and_graph_breaks(name):
    """torch.compile at a fixed input size (dynamic=False) with a graph-counting backend that runs each captured
    graph as is (dynamo's capture, guards and resumes are what is tested; inductor's code generation runs only in
    the benchmark tool, to keep the suite fast): outputs equal eager ones within atol = rtol = 1e-5, a second call
    compiles nothing new (the steady state), and there is one graph: no graph break, for every reducer."""
    model, x = tiny_vit(REDUCERS[name]), torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    eager, compiled, compiled_again, first, total = helpers.compile_twice(model, x)
    for e, c, c2 in zip(eager, compiled, compiled_again):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c2, e, atol=1e-5, rtol=1e-5)
    assert total == first, 'the second call recompiled'
    assert first == 1, f'{first} graphs: {first - 1} graph breaks'


def test_count_graph_breaks():
    assert count_graph_breaks(tiny_vit(REDUCERS['ToMe']), torch.randn(1, 3, 64, 80)).breaks == 0
    found = count_graph_breaks(lambda x: (x * 2)[:int(x.sum())] + 1, torch.ones(3))      # .item(): one break
    assert found.breaks == 1 and len(found.reasons) == 1


def test_kernel_parity_tool(capsys):
    rc = helpers.load_tool('analysis_tools/kernel_parity.py').main(
        [osp.join(TINY, 'segmenter_tiny_ade.py'), osp.join(TINY, 'segmenter_tiny_tokenadapter_ade.py')])
    out = capsys.readouterr().out
    assert rc == 0 and '| backbone.layers.3.attn.attn | math + weights | math + weights |' in out
    assert 'the same attention kernel as segmenter_tiny_ade in every attention module' in out


def test_benchmark_latency_throughput_precisions_kernels(capsys):
    configs = [osp.join(TINY, 'segmenter_tiny_ade.py'), osp.join(TINY, 'segmenter_tiny_tokenadapter_ade.py')]
    rows = helpers.load_tool('analysis_tools/benchmark.py').main(
        [configs[0], '--compare', configs[1], '--repeat-times', '2', '--warmup', '0', '--batch-size', 'auto',
         '--max-batch-size', '2', '--dtypes', 'fp32', 'bf16', '--no-progress', '--num-threads', '1'])
    assert [(r['name'], r['precision'], r['mode']) for r in rows] == [
        (n, p, 'eager') for n in ('segmenter_tiny_ade', 'segmenter_tiny_tokenadapter_ade') for p in ('fp32', 'bf16')]
    for r in rows:
        assert r['batch'] in (1, 2) and r['fps'] > 0 and r['kernels'] == 'math + weights x5'
        assert r['kernel_mismatches'] == [] and r['efficiency'] == pytest.approx(r['speedup'] / r['flops_ratio'])
        assert r['throughput_efficiency'] == pytest.approx(r['throughput_speedup'] / r['flops_ratio'])
    assert rows[0]['speedup'] == rows[1]['speedup'] == 1.0          # each precision has its own reference
    out = capsys.readouterr().out
    assert 'attention kernel' in out and 'kernel parity: every attention module runs the same kernel' in out


def test_benchmark_compile(capsys):
    configs = [osp.join(TINY, 'segmenter_tiny_ade.py'), osp.join(TINY, 'segmenter_tiny_tome_ade.py')]
    rows = helpers.load_tool('analysis_tools/benchmark.py').main(
        [configs[0], '--compare', configs[1], '--backbone-only', '--shape', '96', '96', '--repeat-times', '1',
         '--warmup', '1', '--compile', '--compile-backend', 'eager', '--no-kernels', '--no-progress',
         '--num-threads', '1'])
    assert [r['mode'] for r in rows] == ['eager', 'compiled'] * 2
    assert [r['graph_breaks'] for r in rows if r['mode'] == 'compiled'] == [0, 0]
    assert rows[1]['speedup'] == 1.0 and 'graph breaks' in capsys.readouterr().out


def test_gpu_table_tiny_cpu(tmp_path):
    """The GPU-table script on the tiny configs (CPU): its markdown, one table per protocol, kernel parity checked
    (Swin's reduced windows run the host's window_attention: recorded from the module's own sub-modules)."""
    out = tmp_path / 'table.md'
    text = helpers.load_tool('analysis_tools/gpu_table.py').main(['--tiny', '--out', str(out)])
    assert out.read_text() == text and text.startswith("## FPS at the papers' protocols: ")
    assert text.count('### tiny ') == 2 and text.count('| segmenter_tiny_tokenadapter_ade | eager |') == 1
    assert '| mask2former_tiny_expedit_coco-panoptic | eager |' in text and 'KERNEL MISMATCH' not in text
    assert text.count('* kernel parity: every attention module runs the same kernel') == 2
