"""Tests for geoidec.models: backbones, DeepLabV3 forward, MiB classifier growth, weights."""
# mypy: disable-error-code="index,union-attr,operator"

from __future__ import annotations

import math
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

from geoidec.models import (
    BACKBONES,
    FEATURE_NAMES,
    SegmentationModel,
    SegOutput,
    WeightsError,
    build_model,
    load_backbone_weights,
)
from geoidec.models.backbones import build_backbone

EXPECTED_CHANNELS = {
    "resnet101": (256, 512, 1024, 2048),
    "resnet50": (256, 512, 1024, 2048),
    "resnet18": (64, 128, 256, 512),
    "mobilenet_v3_large": (24, 40, 112, 960),
    "mobilenet_v3_small": (16, 24, 48, 576),
    "mobilenet_v2": (24, 32, 96, 1280),
}
SIZE = 64
ASPP = 16


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny convolutions run faster on one thread, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_output(model: SegmentationModel, out: SegOutput, batch: int, output_stride: int) -> None:
    name = model.config["backbone"]
    c1, c2, c3, c4 = EXPECTED_CHANNELS[name]
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (batch, model.num_classes, SIZE, SIZE)
    assert tuple(out.features) == FEATURE_NAMES
    expected = {
        "layer1": (c1, 4),
        "layer2": (c2, 8),
        "layer3": (c3, min(16, output_stride)),
        "layer4": (c4, output_stride),
        "aspp": (ASPP, output_stride),
        "logits": (model.num_classes, output_stride),
    }
    for key, (channels, stride) in expected.items():
        feat = out.features[key]
        assert feat.shape == (batch, channels, SIZE // stride, SIZE // stride), key
    assert model.feature_channels == {k: v[0] for k, v in expected.items()}
    assert model.feature_strides == {k: v[1] for k, v in expected.items()}


def test_registry_names() -> None:
    assert set(BACKBONES) == set(EXPECTED_CHANNELS)


@pytest.mark.parametrize("name", [n for n in EXPECTED_CHANNELS if n != "resnet101"])
def test_backbone_forward_os16(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, [5, 2], aspp_channels=ASPP)
    assert model.num_classes == 7
    model.train()
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE))
    _check_output(model, out, batch=2, output_stride=16)
    assert torch.isfinite(out.logits).all()


def test_resnet101_builds() -> None:
    backbone = build_backbone("resnet101")
    assert tuple(backbone.channels.values()) == EXPECTED_CHANNELS["resnet101"]
    assert backbone.strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 16}
    n_params = sum(p.numel() for p in backbone.parameters())
    assert 42e6 < n_params < 43e6  # torchvision resnet101 without fc: 42.5 M
    # layer4 is dilated (stride 1), as in torchvision's deeplabv3_resnet101
    assert backbone.layer4[0].conv2.stride == (1, 1)
    assert backbone.layer4[1].conv2.dilation == (2, 2)
    model = SegmentationModel(backbone, [3], aspp_channels=ASPP).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.logits.shape == (1, 3, 32, 32)
    assert out.features["aspp"].shape == (1, ASPP, 2, 2)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v2"])
def test_output_stride_8(name: str) -> None:
    model = build_model(name, [3], aspp_channels=ASPP, output_stride=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    _check_output(model, out, batch=1, output_stride=8)
    assert model.config["output_stride"] == 8


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_mobilenet_v3_matches_torchvision_dilated(name: str) -> None:
    """Our OS16 MobileNetV3 equals torchvision's ``dilated=True`` network (DeepLabV3's)."""
    torch.manual_seed(0)
    reference = getattr(tvm, name)(dilated=True).eval()
    ours = build_backbone(name).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier")}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["layer4"], reference.features(x))


def test_invalid_output_stride() -> None:
    with pytest.raises(ValueError, match="output_stride"):
        build_model("resnet18", [3], output_stride=32)


def test_unknown_backbone_message() -> None:
    with pytest.raises(ValueError) as info:
        build_model("resnet05", [3])
    message = str(info.value)
    assert "\n" not in message
    assert "Did you mean 'resnet50'" in message
    for name in BACKBONES:
        assert name in message
    with pytest.raises(ValueError, match="mobilenet_v3_large' or 'mobilenet_v3_small"):
        build_model("mobilenetv3", [3])
    # case and dash insensitive
    assert build_model("MobileNet-V3-Small", [3]).config["backbone"] == "mobilenet_v3_small"


def test_mib_add_step() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", [5], aspp_channels=ASPP).eval()
    with torch.no_grad():  # make the background bias non-trivial
        model.classifier[0].bias.normal_()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        old = model(x).logits.softmax(dim=1)
        model.add_step(2)
        new = model(x).logits.softmax(dim=1)
    assert model.num_classes == 7
    assert model.classes_per_step == [5, 2]
    assert new.shape[1] == 7
    torch.testing.assert_close(new[:, 1:5], old[:, 1:5], atol=1e-5, rtol=0)
    torch.testing.assert_close(new[:, 0] + new[:, 5] + new[:, 6], old[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(new[:, 5], new[:, 6], atol=1e-6, rtol=0)
    torch.testing.assert_close(new[:, 5], new[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(new[:, 0], old[:, 0] / 3, atol=1e-5, rtol=0)
    head = model.classifier[1]
    assert isinstance(head, torch.nn.Conv2d) and head.weight.requires_grad
    assert head.bias is not None
    expected_bias = model.classifier[0].bias[0].item()
    assert head.bias.tolist() == pytest.approx([expected_bias] * 2)
    with pytest.raises(ValueError):
        model.add_step(0)


def test_config_roundtrip_and_strict_load() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", [3], in_channels=4, aspp_channels=ASPP)
    model.add_step(1)
    model.add_step(2)
    config = model.config
    assert config == {
        "backbone": "resnet18",
        "classes_per_step": [3, 1, 2],
        "in_channels": 4,
        "aspp_channels": ASPP,
        "output_stride": 16,
        "dropout": model.config["dropout"],
        "first_stride": 2,
        "head": "aspp",
    }
    rebuilt = build_model(**config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    rebuilt.eval()
    x = torch.randn(1, 4, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).logits, model(x).logits)


def test_parameter_groups_partition() -> None:
    model = build_model("mobilenet_v3_small", [3, 1], aspp_channels=ASPP)
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert backbone and head and not backbone & head
    assert backbone | head == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.classifier[1].parameters()} <= head


def test_batch_of_one() -> None:
    model = build_model("mobilenet_v3_small", [3], aspp_channels=ASPP)
    x = torch.randn(1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="batch of at least 2"):
        model.train()(x)
    with torch.no_grad():
        assert model.eval()(x).logits.shape == (1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(1, 4, SIZE, SIZE))


# -- weights ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A torchvision resnet18 classification checkpoint (random init, with ``fc.*`` keys)."""
    torch.manual_seed(1)
    state = tvm.resnet18(weights=None).state_dict()
    assert "fc.weight" in state
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(state, path)
    return path, state


def test_local_torchvision_checkpoint(resnet18_checkpoint: tuple[Path, dict]) -> None:
    path, state = resnet18_checkpoint
    model = build_model("resnet18", [3], aspp_channels=ASPP, weights=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"]
    )


def test_local_checkpoint_with_prefixes(
    resnet18_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    """A DataParallel-style or full-model state dict (``module.``/``backbone.``) loads."""
    _, state = resnet18_checkpoint
    wrapped = {
        "model": {"backbone": "resnet18"},  # like a geoidec checkpoint's architecture entry
        "state_dict": {f"module.backbone.{k}": v for k, v in state.items()},
    }
    path = tmp_path / "wrapped.pt"
    torch.save(wrapped, path)
    backbone = build_backbone("resnet18")
    report = load_backbone_weights(backbone, "resnet18", str(path))
    assert report.matched == report.total
    torch.testing.assert_close(backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_bad_weights_files(resnet18_checkpoint: tuple[Path, dict], tmp_path: Path) -> None:
    _, state = resnet18_checkpoint
    # wrong shapes: resnet18 weights for resnet50
    path, _ = resnet18_checkpoint
    with pytest.raises(WeightsError) as info:
        build_model("resnet50", [3], weights=str(path))
    message = str(info.value)
    assert "\n" not in message and "matched" in message and "resnet50" in message
    # unrelated keys
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, unrelated)
    with pytest.raises(WeightsError, match=r"only 0/\d+ tensors matched") as info:
        build_model("resnet18", [3], weights=str(unrelated))
    assert "\n" not in str(info.value)
    # missing file
    with pytest.raises(WeightsError, match="not found") as info:
        build_model("resnet18", [3], weights=str(tmp_path / "missing.pth"))
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="Did you mean 'imagenet'"):
        build_model("resnet18", [3], weights="imagnet")
    # unreadable file
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint\nat all")
    with pytest.raises(WeightsError, match="Could not read") as info:
        build_model("resnet18", [3], weights=str(garbage))
    assert "\n" not in str(info.value)


def test_imagenet_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        build_model("mobilenet_v3_small", [3], weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "--weights" in message and "mobilenet_v3_small" in message and "offline" in message


def test_imagenet_uses_torchvision_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the download mocked, ``imagenet`` loads torchvision's default checkpoint."""
    torch.manual_seed(2)
    state = tvm.mobilenet_v3_small(weights=None).state_dict()
    urls: list[str] = []

    def fake_download(url: str, *args: object, **kwargs: object) -> dict:
        urls.append(url)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = build_model("mobilenet_v3_small", [3], weights="imagenet")
    assert urls == [tvm.MobileNet_V3_Small_Weights.DEFAULT.url]
    torch.testing.assert_close(
        model.backbone.features[0][0].weight, state["features.0.0.weight"], rtol=0, atol=0
    )


def test_four_band_input_from_rgb_checkpoint(resnet18_checkpoint: tuple[Path, dict]) -> None:
    path, state = resnet18_checkpoint
    model = build_model("resnet18", [3], in_channels=4, aspp_channels=ASPP, weights=str(path))
    weight = model.backbone.conv1.weight
    rgb = state["conv1.weight"]
    assert weight.shape == (64, 4, 7, 7)
    torch.testing.assert_close(weight[:, :3], rgb, rtol=0, atol=0)
    # hand check one filter: extra band = mean of the RGB filters * 3/4
    f = 5
    expected = (rgb[f, 0] + rgb[f, 1] + rgb[f, 2]) / 3 * (3 / 4)
    torch.testing.assert_close(weight[f, 3], expected)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 4, SIZE, SIZE))
    assert out.logits.shape == (1, 3, SIZE, SIZE)


def test_single_band_input_from_rgb_checkpoint(resnet18_checkpoint: tuple[Path, dict]) -> None:
    path, state = resnet18_checkpoint
    backbone = build_backbone("resnet18", in_channels=1)
    report = load_backbone_weights(backbone, "resnet18", str(path))
    assert report.adapted_first_conv
    torch.testing.assert_close(backbone.conv1.weight[:, 0], state["conv1.weight"].sum(dim=1))


def test_fresh_first_conv_without_weights() -> None:
    model = build_model("mobilenet_v2", [3], in_channels=5, aspp_channels=ASPP)
    conv = model.backbone.features[0][0]
    assert conv.weight.shape[1] == 5
    assert not math.isclose(conv.weight.std().item(), 0.0)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "resnet18"])
def test_first_stride_one_halves_every_stride(name: str) -> None:
    model = build_model(name, [3], aspp_channels=ASPP, first_stride=1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    strides = {"layer1": 2, "layer2": 4, "layer3": 8, "layer4": 8, "aspp": 8, "logits": 8}
    assert model.feature_strides == strides
    for key, stride in strides.items():
        assert out.features[key].shape[-1] == SIZE // stride, key
    assert model.config["first_stride"] == 1
    with pytest.raises(ValueError, match="first_stride must be 1 or 2"):
        build_model(name, [3], first_stride=4)


def test_lraspp_head_adds_a_low_level_classifier_and_keeps_mib_init() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", [3], aspp_channels=ASPP, head="lraspp").eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        before = torch.softmax(model(x).logits, 1)
        model.add_step(2)
        out = model(x)
    after = torch.softmax(out.logits, 1)
    # old foreground probabilities unchanged; the old background split over bg + 2 new
    torch.testing.assert_close(after[:, 1:3], before[:, 1:3])
    torch.testing.assert_close(after[:, [0, 3, 4]].sum(1), before[:, 0])
    torch.testing.assert_close(after[:, 3], after[:, 0])
    assert model.low_classifier is not None
    assert model.low_classifier.classes_per_step == [3, 2]
    assert model.feature_strides["logits"] == model.feature_strides["layer2"] == 8
    assert out.features["logits"].shape[-1] == SIZE // 8
    low = {id(p) for p in model.low_classifier.parameters()}
    assert low <= {id(p) for p in model.head_parameters()}
    rebuilt = build_model(**model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="unknown head 'lrasp'"):
        build_model("mobilenet_v3_small", [3], head="lrasp")


def test_torchgeo_weights_by_name_with_band_matching(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """``--weights ResNet50_Weights.SENTINEL2_ALL_MOCO`` loads torchgeo's file (here a state
    dict in torchgeo's format put in the torch hub cache, as a download would): the first
    convolution gets the filters of the dataset's bands, matched by name (B02 = B2) and in
    the dataset's order; the other tensors are taken as they are."""
    from torchgeo.models import ResNet50_Weights

    weights = ResNet50_Weights.SENTINEL2_ALL_MOCO
    bands = weights.meta["bands"]  # B1 ... B12, 13 bands
    torch.manual_seed(3)
    state = tvm.resnet50(weights=None).state_dict()
    state["conv1.weight"] = torch.randn(64, len(bands), 7, 7)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    net = build_backbone("resnet50", in_channels=3)
    with caplog.at_level("WARNING", logger="geoidec"):
        loaded = load_backbone_weights(net, "resnet50", "ResNet50_Weights.SENTINEL2_ALL_MOCO",
                                       band_names=["B04", "B03", "B02"])
    assert "not with the weights' pretraining normalisation" in caplog.text
    assert loaded.matched == loaded.total
    picked = state["conv1.weight"][:, [bands.index("B4"), bands.index("B3"), bands.index("B2")]]
    torch.testing.assert_close(net.state_dict()["conv1.weight"], picked)
    torch.testing.assert_close(net.state_dict()["layer4.2.conv3.weight"],
                               state["layer4.2.conv3.weight"])
    # the same file passed as a local path (no band names: the 13 filters are averaged)
    local = load_backbone_weights(build_backbone("resnet50", in_channels=3), "resnet50",
                                  str(cache / weights.url.rsplit("/", 1)[-1]))
    assert local.matched == local.total and local.adapted_first_conv
    with pytest.raises(WeightsError, match="band\\(s\\) NIR are not among them"):
        load_backbone_weights(build_backbone("resnet50", in_channels=2), "resnet50",
                              "ResNet50_Weights.SENTINEL2_ALL_MOCO", band_names=["B02", "NIR"])
    with pytest.raises(WeightsError, match="name the dataset's bands"):
        load_backbone_weights(build_backbone("resnet50", in_channels=3), "resnet50",
                              "ResNet50_Weights.SENTINEL2_ALL_MOCO")
    with pytest.raises(WeightsError, match="are for a resnet50, not the backbone 'resnet18'"):
        load_backbone_weights(build_backbone("resnet18", in_channels=3), "resnet18",
                              "ResNet50_Weights.SENTINEL2_ALL_MOCO", band_names=["B2"] * 3)


def _no_network(url: str, *args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_torchgeo_weights_offline_and_typos(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(WeightsError) as info:
        build_model("resnet50", [3], weights="ResNet50_Weights.SENTINEL2_ALL_MOCO",
                    band_names=["B2", "B3", "B4"])
    message = str(info.value)
    assert "\n" not in message and "offline" in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "--weights /path/to/" in message
    with pytest.raises(WeightsError, match="did you mean 'ResNet50_Weights.SENTINEL2_ALL_MOCO'"):
        build_model("resnet50", [3], weights="ResNet50_Weights.SENTINEL2_ALL_MOKO")
