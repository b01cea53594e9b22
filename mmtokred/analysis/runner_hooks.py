"""mmengine hooks of ``tools/test.py``: the GFLOPs of the first test image and a progress bar."""
import sys


def progress_and_flops_hook(show_progress: bool = True, stream=None):
    """A hook that counts the GFLOPs of the model's tensor forward on the first test image (one extra forward,
    before the test loop) and prints them to ``stream`` (default: the stdout of this call, even when the test's own
    output is captured later), and shows a progress bar; both on the main process only."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from ..utils.dist import is_main_process

    stream = stream or sys.stdout

    class _Hook(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.bar = None
            self.gflops = None

        def before_test_epoch(self, runner):
            from .timing import progress_bar
            if is_main_process():
                self.count_flops(runner)
            self.bar = progress_bar(len(runner.test_dataloader), show_progress and is_main_process(), 'testing',
                                    'batch')

        def count_flops(self, runner):
            model = runner.model
            while is_model_wrapper(model):
                model = model.module
            if isinstance(model, BaseTTAModel) or len(runner.test_dataloader) == 0:
                return      # TTA: several augmented views per image, no single forward to count
            import torch

            from .flops import count_model_macs
            from .models import tensor_forward
            with torch.no_grad():
                inputs = model.data_preprocessor(next(iter(runner.test_dataloader)), False)['inputs']
                counter = count_model_macs(model, inputs[:1], tensor_forward)
            self.gflops = counter.total() / 1e9
            backbone = sum(v for k, v in counter.by_phase().items() if k.startswith('backbone')) / 1e9
            h, w = inputs.shape[-2:]
            print(f'GFLOPs: {self.gflops:.2f} (backbone {backbone:.2f}) for the first test image at {h}x{w} '
                  '(model forward, no post-processing)', file=stream, flush=True)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.bar.update(1)

        def after_test_epoch(self, runner, metrics=None):
            self.bar.close()

    return _Hook()
