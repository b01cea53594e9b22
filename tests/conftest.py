import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


# Tools called in-process (``main(argv)``) may set torch's thread count (``--num-threads``): restore it after every
# test, so later tests run with the default (a few fixture comparisons depend on the float summation order).


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# Building an mmdet model sets mmengine's default scope to mmdet, and a later test that builds from mmseg's registry
# without naming a scope would then resolve types in mmdet's: restore the scopes after every test, so that no test
# depends on which ran before it.


@pytest.fixture(autouse=True)
def _restore_default_scope():
    from mmengine.registry import DefaultScope
    scopes = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict = scopes
