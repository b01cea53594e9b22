"""A new host is one thin file: a toy ViT, its reduced class and its Host, run by the tools with three reducers."""
import copy
import runpy

import pytest
import torch
from mmseg.registry import MODELS

from mmtokred.hosts import Host, TokenReductionHook, insert_token_reduction, plan_vit, register_host, run_span, set_plan


class Block(torch.nn.Linear):                              # token mixing + a linear layer, with a residual
    def forward(self, x):
        return x + super().forward(torch.softmax(x @ x.mT / x.shape[-1] ** 0.5, -1) @ x)


@MODELS.register_module()
class ToyViT(torch.nn.Module):                             # the "upstream" model: cls token, patch grid, blocks
    def __init__(self, dim=16, depth=4):
        super().__init__()
        self.embed, self.cls_token = torch.nn.Conv2d(3, dim, 4, 4), torch.nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = torch.nn.Sequential(*(Block(dim, dim) for _ in range(depth)))

    def forward(self, x, run_blocks=None):
        x = self.embed(x)
        hw, x = tuple(x.shape[2:]), torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).mT], 1)
        return [(run_blocks(x, hw) if run_blocks else self.blocks(x))[:, 1:].mT.reshape(len(x), -1, *hw)]


@MODELS.register_module()
class ReducedToyViT(ToyViT):                               # the host's class: the shared span driver runs the plan
    def __init__(self, reducer=None, reduce_after_layer=None, **kwargs):
        super().__init__(**kwargs)
        set_plan(self, plan_vit(len(self.blocks), True, reducer, reduce_after_layer))

    def forward(self, x):
        plan = self.token_reduction.plan
        return super().forward(x, plan.active and (lambda x, hw: run_span(self.blocks, x, plan, 1, hw)[0]))


register_host(Host('toy ViT', (ToyViT,), ('ReducedToyViT',), lambda cfg, **kw: plan_vit(cfg.get('depth', 4), True,
                   **kw), lambda model, **kw: plan_vit(len(model.blocks), True, **kw), reduced_class=ReducedToyViT))


@pytest.mark.parametrize('reducer', [dict(type='TokenAdapter', r_h=0.5, r_w=0.5), dict(type='ToMe', ratio=0.5),
                                     dict(type='Expediting', cluster_grid=4, locality=3, topk=4)])
def test_toy_host(reducer, tmp_path):
    model = dict(type='EncoderDecoder', backbone=dict(type='ToyViT'), decode_head=dict(
        type='FCNHead', in_channels=16, channels=16, num_convs=0, concat_input=False, num_classes=3))
    upstream, x, flops = MODELS.build(model).eval(), torch.randn(2, 3, 32, 40), []
    runner = type('Runner', (), dict(model=copy.deepcopy(upstream)))
    TokenReductionHook(reducer=reducer, reduce_after_layer=1).before_run(runner)       # the hook, then the function
    with torch.no_grad():
        out, ref = insert_token_reduction(copy.deepcopy(upstream), reducer, 1)(x, mode='tensor'), upstream(x, 'tensor')
        assert torch.equal(runner.model(x, mode='tensor'), out) and out.shape == ref.shape and not torch.equal(out, ref)
    get_flops = runpy.run_path(__file__.replace('tests/test_toy_host.py', 'tools/analysis_tools/get_flops.py'))['main']
    for backbone in (dict(type='ToyViT'), dict(type='ReducedToyViT', reducer=reducer, reduce_after_layer=1)):
        (tmp_path / 'toy.py').write_text(f'model = {dict(model, backbone=backbone)!r}\n')
        flops.append(get_flops([str(tmp_path / 'toy.py'), '--shape', '32', '40']).by_phase())
    assert 'backbone: reduced span' in flops[1] and sum(flops[1].values()) < sum(flops[0].values())
