"""FEC-Small/Base/Large as registered with timm: exact sizes, shapes, gradients, MACs, feature pyramid."""
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import dist_cluster.models  # noqa: F401  (registers the models)
from dist_cluster.models.fec import checkpoint_filter_fn

torch.set_num_threads(2)


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name,count", [("fec_small", 5_727_528), ("fec_base", 15_086_848),
                                        ("fec_large", 29_720_344)])
def test_exact_parameter_count(name, count):
    model = timm.create_model(name, num_classes=1000, pretrained=False)
    assert numel(model) == count
    assert name in timm.list_models("fec_*")


def test_small_per_module_counts():
    m = timm.create_model("fec_small")
    got = {"embed": numel(m.patch_embed), "head": numel(m.norm) + numel(m.head)}
    for i, stage in enumerate(m.stages):
        got[f"stage{i + 1}"] = numel(stage.blocks)
        if stage.downsample is not None:
            got[f"pool{i}->{i + 1}"] = numel(stage.downsample)
    assert got == {"embed": 2592, "stage1": 78918, "pool1->2": 22848, "stage2": 340744, "pool2->3": 138964,
                   "stage3": 2114810, "pool3->4": 691520, "stage4": 2015492, "head": 321640}


def test_small_224_forward_backward_shapes_and_gradients():
    torch.manual_seed(0)
    m = timm.create_model("fec_small", num_classes=1000)
    x = torch.randn(2, 3, 224, 224)
    logits, trace = m(x, return_assignments=True)
    assert logits.shape == (2, 1000)
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    frozen = sorted(n for n, p in m.named_parameters() if not p.requires_grad)
    assert frozen == sorted(f"stages.{i}.downsample.conv_f.{w}" for i in (1, 2, 3) for w in ("weight", "bias"))
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    alphas = [n for n, _ in m.named_parameters() if n.endswith("sim_alpha")]
    assert len(alphas) == 14
    assert [a.shape for a in trace.assignments] == [(2, 3136), (2, 784), (2, 196)]
    assert [tuple(p.values.shape) for p in trace.pools] == [(2, 784, 64), (2, 196, 196), (2, 49, 320)]


def test_stage_shapes_and_feature_pyramid():
    torch.manual_seed(0)
    m = timm.create_model("fec_small").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        final, inter = m.forward_intermediates(x)
    assert [tuple(t.shape[1:]) for t in inter] == [(32, 56, 56), (64, 28, 28), (196, 14, 14), (320, 7, 7)]
    feats = timm.create_model("fec_small", features_only=True).eval()
    assert feats.feature_info.channels() == [32, 64, 196, 320]
    assert feats.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = feats(torch.randn(1, 3, 64, 96))
    assert [tuple(t.shape) for t in maps] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 196, 4, 6), (1, 320, 2, 3)]
    # each dense output is GroupNorm'ed: zero mean, unit variance per sample
    assert all(abs(float(t.mean())) < 1e-4 and abs(float(t.var(unbiased=False)) - 1) < 1e-2 for t in maps)


def test_64px_inputs_and_size_check():
    m = timm.create_model("fec_small", num_classes=10)
    out, trace = m(torch.randn(3, 3, 64, 64), return_assignments=True)
    assert out.shape == (3, 10)
    assert [a.shape[1] for a in trace.assignments] == [256, 64, 16]
    with pytest.raises(ValueError, match="divisible by 32"):
        m(torch.randn(1, 3, 48, 64))


@pytest.mark.parametrize("name,paper_gmacs", [("fec_small", 1.4), ("fec_base", 3.4), ("fec_large", 6.5)])
def test_macs_within_5_percent_of_paper(name, paper_gmacs):
    m = timm.create_model(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.randn(1, 3, 224, 224))
    gmacs = counter.get_total_flops() / 2e9   # the counter reports 2 FLOPs per multiply-add
    assert abs(gmacs - paper_gmacs) / paper_gmacs < 0.05, gmacs


def test_drop_path_is_linear_over_all_blocks_and_options_reach_layers():
    m = timm.create_model("fec_small", drop_path_rate=0.1, assign_on="refined", agg_weight="sim")
    rates = [b.drop_path.drop_prob for s in m.stages for b in s.blocks if hasattr(b.drop_path, "drop_prob")]
    assert rates == pytest.approx([0.1 * j / 13 for j in range(1, 14)])
    assert all(b.token_mixer.assign_on == "refined" for s in m.stages for b in s.blocks)
    assert all(p.requires_grad for p in m.parameters())        # pool keys train when aggregation is weighted


def _to_reference_layout(sd):
    """The authors' module names: network.{2i} = stage i blocks, network.{2i+1} = pool into stage i+1."""
    out = {}
    for k, v in sd.items():
        k = k.replace("patch_embed.", "patch_embed.proj.")
        k = re.sub(r"\.ls(\d)\.gamma$", r".layer_scale_\1", k)
        k = re.sub(r"^stages\.(\d+)\.downsample\.norm\.", lambda m: f"network.{2 * int(m[1]) - 1}.norm2.", k)
        k = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"network.{2 * int(m[1]) - 1}.", k)
        k = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"network.{2 * int(m[1])}.", k)
        out[k] = v
    return out


def test_reference_checkpoint_layout_loads():
    src = timm.create_model("fec_small", num_classes=10)
    ref_sd = _to_reference_layout(src.state_dict())
    assert "network.1.conv_f.weight" in ref_sd and "network.0.2.layer_scale_1" in ref_sd
    dst = timm.create_model("fec_small", num_classes=10)
    dst.load_state_dict(checkpoint_filter_fn({"state_dict": ref_sd}), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_reference_weights_load_through_timm_pretrained_file(tmp_path):
    src = timm.create_model("fec_small")
    path = tmp_path / "fec_small_reference.pth"
    torch.save({"state_dict": _to_reference_layout(src.state_dict())}, path)
    same = timm.create_model("fec_small", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), src.state_dict().values()))
    tuned = timm.create_model("fec_small", num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    body = [k for k in src.state_dict() if not k.startswith("head.")]
    assert all(torch.equal(tuned.state_dict()[k], src.state_dict()[k]) for k in body)   # new 10-way head only
    assert tuned.head.weight.shape == (10, 320)
