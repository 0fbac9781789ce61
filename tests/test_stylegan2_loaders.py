"""StyleGAN-2 checkpoint loaders: NVIDIA pickles (PyTorch and TensorFlow), rosinality .pt, our .pt,
refusal of pickles that would run code, and the download cache (never touching the network)."""

from __future__ import annotations

import builtins
import collections
import io
import math
import os
import pickle
import subprocess
import sys
import types
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ilo.generators import registry
from ilo.generators import stylegan2 as sg
from ilo.generators import stylegan2_net as sgnet
from ilo.generators import CheckpointError, GeneratorUnavailable, UnsafeCheckpointError, load_generator
from ilo.generators.convert import rosinality_to_nvidia
from ilo.generators.files import load_checkpoint, save_checkpoint
from ilo.generators.hub import fetch


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(res: int = 16, seed: int = 0, **kw) -> sg.StyleGAN2Generator:
    """A random generator with non-zero biases, noise strengths and w_avg."""
    torch.manual_seed(seed)
    kw = dict(dict(z_dim=8, w_dim=12, channel_base=128, channel_max=16, mapping_layers=3), **kw)
    g = sg.StyleGAN2Generator(res, **kw)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, t in list(g.named_parameters()) + list(g.named_buffers()):
            if name.endswith("noise_strength"):
                t.copy_(0.2 + 0.3 * torch.rand(t.shape, generator=gen))
            elif (name.endswith(".bias") and "affine" not in name) or name.endswith("w_avg"):
                t.copy_(0.3 * torch.randn(t.shape, generator=gen))
    return g.eval().requires_grad_(False)


def same_output(a: sg.StyleGAN2Generator, b: sg.StyleGAN2Generator, exact: bool = True) -> bool:
    s = a.sample_latent(2, torch.Generator().manual_seed(7), noise_mode="random")
    z = torch.randn(2, a.z_dim, generator=torch.Generator().manual_seed(8))
    pairs = [(a(s), b(s)), (a.generate(z, psi=0.7, noise_mode="const"), b.generate(z, psi=0.7, noise_mode="const"))]
    if exact:
        return all(torch.equal(x, y) for x, y in pairs)
    return all(torch.allclose(x, y, rtol=1e-5, atol=1e-5 * y.abs().max().item()) for x, y in pairs)


@pytest.fixture(scope="module")
def g16():
    return tiny(16)


@pytest.fixture
def flag(tmp_path):
    """A file that exists only if code from a checkpoint ran."""
    path = tmp_path / "code-ran"
    yield path
    assert not path.exists(), "code from the checkpoint was executed"


# ---------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch / stylegan3 pickles, synthesised with a fake persistence module


@pytest.fixture
def nvidia_env(monkeypatch):
    """Fake ``torch_utils.persistence`` and ``dnnlib.util`` so that pickles look like NVIDIA's."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's loader calls (it would exec module_src)
        raise AssertionError("the loader must not call the file's reconstruction function")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easydict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    for name, mod in [("torch_utils", torch_utils), ("torch_utils.persistence", persistence), ("dnnlib", dnnlib), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=easydict)


class Persisted:
    """Pickles exactly like a ``@persistent_class`` network: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, reconstruct, class_name: str, state: dict, source: str):
        self.reconstruct, self.class_name, self.state, self.source = reconstruct, class_name, state, source

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.source, class_name=self.class_name, state=self.state)
        return self.reconstruct, (meta,)


_CLASS_NAMES = {
    sg.StyleGAN2Generator: "Generator", sgnet.MappingNetwork: "MappingNetwork", sgnet.SynthesisNetwork: "SynthesisNetwork",
    sgnet.SynthesisBlock: "SynthesisBlock", sgnet.SynthesisLayer: "SynthesisLayer", sgnet.ToRGBLayer: "ToRGBLayer",
    sgnet.FullyConnectedLayer: "FullyConnectedLayer",
}


def persist(env, module: torch.nn.Module, source: str, layout: str = "ada") -> Persisted:
    """Our module tree as NVIDIA's pickled records (instance attributes as their classes set them)."""
    attrs: dict = {"training": False}
    kwargs: dict = {}
    if isinstance(module, sg.StyleGAN2Generator):
        attrs.update(z_dim=module.z_dim, c_dim=0, w_dim=module.w_dim, img_resolution=module.img_resolution,
                     img_channels=module.img_channels, num_ws=module.num_ws)
        cfg = module.config
        synth = dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], num_fp16_res=4, conv_clamp=cfg["conv_clamp"])
        kwargs = dict(z_dim=module.z_dim, c_dim=0, w_dim=module.w_dim, img_resolution=module.img_resolution, img_channels=3,
                      mapping_kwargs=env.EasyDict(num_layers=cfg["mapping_layers"]))
        if layout == "ada":
            kwargs["synthesis_kwargs"] = env.EasyDict(synth)
        else:  # stylegan3's networks_stylegan2: flat synthesis kwargs
            kwargs.update(synth, fused_modconv_default="inference_only")
    elif isinstance(module, sgnet.FullyConnectedLayer):
        # NVIDIA computes gains with NumPy: they are pickled as numpy.float64 scalars
        attrs.update(in_features=module.in_features, out_features=module.out_features, activation=module.activation,
                     weight_gain=np.float64(module.weight_gain), bias_gain=module.bias_gain)
    elif isinstance(module, sgnet.SynthesisLayer):
        attrs.update(in_channels=module.in_channels, out_channels=module.out_channels, resolution=module.resolution,
                     up=2 if module.up else 1, use_noise=module.use_noise, activation="lrelu", conv_clamp=module.conv_clamp,
                     padding=1, act_gain=np.sqrt(2))
    elif isinstance(module, sgnet.ToRGBLayer):
        attrs.update(conv_clamp=module.conv_clamp, weight_gain=module.weight_gain)
    elif isinstance(module, sgnet.SynthesisBlock):
        attrs.update(in_channels=module.in_channels, resolution=module.resolution, architecture="skip", is_last=False,
                     num_conv=module.num_conv, num_torgb=1, use_fp16=False)
    state = dict(
        attrs,
        _parameters=collections.OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in module._parameters.items()),
        _buffers=collections.OrderedDict((k, v.clone()) for k, v in module._buffers.items()),
        _non_persistent_buffers_set=set(),
        _modules=collections.OrderedDict((k, c if type(c).__module__.startswith("torch.nn") else persist(env, c, source, layout))
                                         for k, c in module._modules.items()),
        _init_args=(),
        _init_kwargs=kwargs,
        _forward_hooks=collections.OrderedDict(),
    )
    return Persisted(env.reconstruct, _CLASS_NAMES.get(type(module), type(module).__name__), state, source)


def write_nvidia_pkl(env, path, g_ema, g=None, flag=None, layout="ada", protocol=4):
    source = f"open({str(flag)!r}, 'w').write('ran')\n" if flag else "raise SystemExit('embedded source ran')\n"
    disc = torch.nn.Module()  # holds plain torch.nn modules, pickled without the persistence wrapper
    disc.register_parameter("b4_out_weight", torch.nn.Parameter(torch.randn(1, 4)))
    disc.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.LeakyReLU(0.2)])
    data = dict(
        G=persist(env, g if g is not None else g_ema, source, layout),
        D=persist(env, disc, source, layout),
        G_ema=persist(env, g_ema, source, layout),
        augment_pipe=None,
        training_set_kwargs=env.EasyDict(resolution=g_ema.img_resolution, xflip=True),
        progress=dict(cur_nimg=torch.tensor(1000)),
    )
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)


def test_plain_torch_modules_become_inert_records(tmp_path):
    from ilo.generators.records import TorchModuleRecord
    from ilo.generators.unpickler import restricted_load

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ModuleList([torch.nn.Conv2d(2, 2, 1)]))
    rec = restricted_load(io.BytesIO(pickle.dumps(net)))
    assert isinstance(rec, TorchModuleRecord) and rec.class_name == "torch.nn.modules.container.Sequential"
    sd = rec.state_dict()
    assert set(sd) == set(net.state_dict()) and all(torch.equal(sd[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("layout,protocol", [("ada", 4), ("stylegan3", 2)])
def test_nvidia_pickle_loads_identically_without_running_its_source(nvidia_env, g16, tmp_path, flag, layout, protocol):
    path = tmp_path / "network-snapshot.pkl"
    write_nvidia_pkl(nvidia_env, path, g16, flag=flag, layout=layout, protocol=protocol)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, sg.StyleGAN2Generator) and loaded.name == "network-snapshot"
    assert loaded.config == g16.config
    assert same_output(g16.eval(), loaded.eval())


@pytest.mark.parametrize("name", ["network-snapshot.pt", "network-snapshot"])
def test_nvidia_pickle_is_recognised_by_content_not_name(nvidia_env, g16, tmp_path, flag, name, monkeypatch):
    monkeypatch.setattr(registry, "_CACHE", {})
    path = tmp_path / name
    write_nvidia_pkl(nvidia_env, path, g16, flag=flag)
    assert same_output(g16.eval(), load_checkpoint(path).eval())
    assert same_output(g16.eval(), load_generator(str(path)))


def test_nvidia_pickle_picks_g_or_g_ema_and_keeps_conv_clamp(nvidia_env, tmp_path, flag):
    g_ema, g = tiny(16, seed=1, conv_clamp=0.5), tiny(16, seed=2, conv_clamp=0.5)
    path = tmp_path / "snap.pkl"
    write_nvidia_pkl(nvidia_env, path, g_ema, g, flag=flag)
    a, b = load_checkpoint(path), load_checkpoint(path, network="G")
    assert a.synthesis.b16.conv1.conv_clamp == 0.5
    assert same_output(g_ema, a) and same_output(g, b) and not same_output(g, a)
    with pytest.raises(GeneratorUnavailable, match="no 'D_ema'"):
        load_checkpoint(path, network="D_ema")


def test_registry_path_loading_is_frozen_eval(nvidia_env, g16, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_CACHE", {})
    path = tmp_path / "ffhq-like.pkl"
    write_nvidia_pkl(nvidia_env, path, g16)
    g = load_generator(str(path))
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    assert same_output(g16, g)


def test_stylegan3_architecture_is_refused_clearly(nvidia_env, tmp_path):
    net = torch.nn.Module()
    net.synthesis = torch.nn.Module()
    net.synthesis.input = torch.nn.Linear(2, 2)
    path = tmp_path / "sg3.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": persist(nvidia_env, net, "")}, f)
    with pytest.raises(GeneratorUnavailable, match="StyleGAN3"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# pickles that would run code are refused before anything runs


class Evil:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _evil_payloads(flag):
    touch = f"open({str(flag)!r}, 'w').write('ran')"
    inner = pickle.dumps(Evil(os.system, f"touch {flag}"), protocol=2)
    return {
        "os.system": Evil(os.system, f"touch {flag}"),
        "builtins.eval": Evil(builtins.eval, touch),
        "builtins.exec": Evil(builtins.exec, touch),
        "subprocess.call": Evil(subprocess.call, ["touch", str(flag)]),
        "nested in G_ema": {"G_ema": {"init_kwargs": [1, 2, Evil(os.system, f"touch {flag}")]}},
        "storage bytes": Evil(torch.storage._load_from_bytes, inner),
    }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "builtins.exec", "subprocess.call", "nested in G_ema", "storage bytes"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, flag, case):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(_evil_payloads(flag)[case], f)
    expected = GeneratorUnavailable if case == "storage bytes" else UnsafeCheckpointError
    with pytest.raises(expected) as info:
        load_checkpoint(path)
    if expected is UnsafeCheckpointError:
        assert "nothing from the file was executed" in str(info.value)
    assert not flag.exists()


def test_malicious_pt_is_refused(tmp_path, flag):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil(os.system, f"touch {flag}")}, path)
    with pytest.raises(UnsafeCheckpointError, match="posix.system.*nothing from the file was executed") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert not flag.exists()


def test_corrupt_and_missing_files(tmp_path, nvidia_env, g16):
    path = tmp_path / "cut.pkl"
    write_nvidia_pkl(nvidia_env, path, g16)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cut.pkl: .*left in the file"):
        load_checkpoint(path)
    with pytest.raises(GeneratorUnavailable, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pkl")


# ---------------------------------------------------------------------------------------------
# NVIDIA TensorFlow pickles (the original StyleGAN-2 release)


def tf_pickle(g: sg.StyleGAN2Generator, path, flag, monkeypatch) -> None:
    """Write ``g`` as the TensorFlow release would (fake ``dnnlib.tflib.network.Network``)."""
    net_mod = types.ModuleType("dnnlib.tflib.network")
    for name in ("dnnlib", "dnnlib.tflib"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "dnnlib.tflib.network", net_mod)

    class Network:
        def __init__(self, name, variables, components=None, static_kwargs=None):
            self.state = dict(version=4, name=name, static_kwargs=static_kwargs or {}, components=components or {},
                              build_module_src=f"open({str(flag)!r}, 'w').write('ran')\n", build_func_name=name, variables=variables)

        def __getstate__(self):
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    net_mod.Network = Network
    sd = {k: v.detach().clone() for k, v in g.state_dict().items()}
    npy = lambda t: t.numpy().copy()
    tfw = lambda w, flip=False: npy((w.flip([2, 3]) if flip else w).permute(2, 3, 1, 0).contiguous())
    mapping = []
    for i in range(g.mapping.num_layers):
        mapping += [(f"Dense{i}/weight", npy(sd[f"mapping.fc{i}.weight"].t().contiguous())), (f"Dense{i}/bias", npy(sd[f"mapping.fc{i}.bias"]))]
    synth = [("4x4/Const/const", npy(sd["synthesis.b4.const"][None])), ("lod", npy(torch.zeros([])))]
    for i, (r, name) in enumerate(g.synthesis.layers):
        theirs = "Conv" if r == 4 else ("Conv0_up" if name == "conv0" else "Conv1")
        p = f"synthesis.b{r}.{name}"
        synth += [(f"{r}x{r}/{theirs}/weight", tfw(sd[f"{p}.weight"], flip=name == "conv0")), (f"{r}x{r}/{theirs}/bias", npy(sd[f"{p}.bias"])),
                  (f"{r}x{r}/{theirs}/mod_weight", npy(sd[f"{p}.affine.weight"].t().contiguous())),
                  (f"{r}x{r}/{theirs}/mod_bias", npy(sd[f"{p}.affine.bias"] - 1)),
                  (f"{r}x{r}/{theirs}/noise_strength", npy(sd[f"{p}.noise_strength"])), (f"noise{i}", npy(sd[f"{p}.noise_const"][None, None]))]
    for r in g.synthesis.block_resolutions:
        p = f"synthesis.b{r}.torgb"
        synth += [(f"{r}x{r}/ToRGB/weight", tfw(sd[f"{p}.weight"])), (f"{r}x{r}/ToRGB/bias", npy(sd[f"{p}.bias"])),
                  (f"{r}x{r}/ToRGB/mod_weight", npy(sd[f"{p}.affine.weight"].t().contiguous())), (f"{r}x{r}/ToRGB/mod_bias", npy(sd[f"{p}.affine.bias"] - 1))]
    kw = dict(resolution=g.img_resolution, num_channels=3, latent_size=g.z_dim, dlatent_size=g.w_dim, mapping_layers=g.mapping.num_layers,
              fmap_base=g.config["channel_base"] // 2, fmap_max=g.config["channel_max"], truncation_psi=0.5)
    gs = Network("G", [("dlatent_avg", npy(sd["mapping.w_avg"]))],
                 {"mapping": Network("G_mapping", mapping), "synthesis": Network("G_synthesis", synth)}, kw)
    disc = Network("D", [("Output/weight", npy(torch.randn(3, 1)))])
    with open(path, "wb") as f:
        pickle.dump((gs, disc, gs), f, protocol=3)
    monkeypatch.undo()  # the loader must not need (or import) any of these modules


def test_tensorflow_pickle_converts(g16, tmp_path, flag, monkeypatch):
    path = tmp_path / "stylegan2-tiny-config-f.pkl"
    tf_pickle(g16, path, flag, monkeypatch)
    loaded = load_checkpoint(path)
    assert loaded.config == g16.config
    # kernels are transposed/flipped exactly; mod_bias - 1 + 1 may round: float tolerance
    assert same_output(g16, loaded, exact=False)


# ---------------------------------------------------------------------------------------------
# rosinality .pt


def _make_kernel(taps=(1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    k = torch.tensor(taps)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def to_rosinality(g: sg.StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """Our state dict in rosinality's layout and conventions (the inverse of the loader's key map)."""
    sd = {k: v.detach().clone() for k, v in g.state_dict().items()}
    out = {}
    for i in range(g.mapping.num_layers):
        out[f"style.{i + 1}.weight"], out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(dst, src, noise_idx, up):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"], out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.weight"], sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{noise_idx}"] = sd[f"{src}.noise_const"][None, None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = _make_kernel() * 4

    def to_rgb(dst, src, up):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"], out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.weight"], sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = _make_kernel() * 4

    styled("conv1", "synthesis.b4.conv1", 0, False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    for j, r in enumerate(g.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", 2 * j + 1, True)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", 2 * j + 2, False)
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb", True)
    return out


def _upfirdn(x, k, up, pad0, pad1):
    """upfirdn2d as rosinality's op defines it: zero insertion, padding, convolution with the flipped kernel."""
    b, c, h, w = x.shape
    if up > 1:
        z = torch.zeros(b, c, h, up, w, up, dtype=x.dtype)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    return F.conv2d(x, torch.flip(k, [0, 1]).expand(c, 1, *k.shape).to(x.dtype), groups=c)


def rosinality_forward(sd, z, noises, lr_mlp=0.01):
    """rosinality's Generator maths, written from its conventions, on its own state dict."""
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        w_, b_ = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = F.leaky_relu(F.linear(x, w_ * (lr_mlp / math.sqrt(w_.shape[1]))) + b_ * lr_mlp, 0.2) * math.sqrt(2)
        i += 1
    latent = x

    def modconv(inp, prefix, demod, up):
        wt = sd[f"{prefix}.conv.weight"]  # [1, O, I, k, k]
        _, o, c, k, _ = wt.shape
        s = F.linear(latent, sd[f"{prefix}.conv.modulation.weight"] / math.sqrt(latent.shape[1]), sd[f"{prefix}.conv.modulation.bias"])
        wmod = wt / math.sqrt(c * k * k) * s.view(-1, 1, c, 1, 1)
        if demod:
            wmod = wmod * torch.rsqrt(wmod.pow(2).sum([2, 3, 4]) + 1e-8).view(-1, o, 1, 1, 1)
        bsz = inp.shape[0]
        if up:
            wmod = wmod.transpose(1, 2).reshape(bsz * c, o, k, k)
            out = F.conv_transpose2d(inp.reshape(1, bsz * c, *inp.shape[2:]), wmod, stride=2, groups=bsz)
            out = out.view(bsz, o, *out.shape[2:])
            return _upfirdn(out, _make_kernel() * 4, 1, 1, 1)
        out = F.conv2d(inp.reshape(1, bsz * c, *inp.shape[2:]), wmod.reshape(bsz * o, c, k, k), padding=k // 2, groups=bsz)
        return out.view(bsz, o, *out.shape[2:])

    def styled(inp, prefix, noise, up=False):
        out = modconv(inp, prefix, True, up) + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(inp, prefix, skip):
        out = modconv(inp, prefix, False, False) + sd[f"{prefix}.bias"]
        return out if skip is None else out + _upfirdn(skip, _make_kernel() * 4, 2, 2, 1)

    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = styled(out, "conv1", noises[0])
    skip = to_rgb(out, "to_rgb1", None)
    j = 0
    while f"to_rgbs.{j}.conv.weight" in sd:
        out = styled(out, f"convs.{2 * j}", noises[2 * j + 1], up=True)
        out = styled(out, f"convs.{2 * j + 1}", noises[2 * j + 2])
        skip = to_rgb(out, f"to_rgbs.{j}", skip)
        j += 1
    return skip


def test_rosinality_pt_round_trip_is_identical(g16, tmp_path):
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": to_rosinality(g16), "latent_avg": g16.mapping.w_avg.clone()}, path)
    loaded = load_checkpoint(path)
    assert loaded.config == g16.config and same_output(g16, loaded)


def test_rosinality_conventions_match_its_maths(g16):
    """Our generator, loaded from a rosinality state dict, reproduces rosinality's own forward."""
    ros = to_rosinality(g16)
    loaded = sg.StyleGAN2Generator(16, z_dim=8, w_dim=12, channel_base=128, channel_max=16, mapping_layers=3)
    loaded.load_state_dict(dict(rosinality_to_nvidia(ros), **{"mapping.w_avg": torch.zeros(12)}), strict=True)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    noises = [torch.randn(3, 1, r, r, generator=torch.Generator().manual_seed(i)) for i, r in enumerate(loaded.noise_resolutions)]
    want = rosinality_forward(ros, z, noises)
    for impl in ("fast", "reference"):
        loaded.impl = impl
        got = loaded.synthesis(loaded.mapping(z), noises=noises, impl=impl)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item()), impl


def test_rosinality_training_checkpoint_with_args(g16, tmp_path):
    import argparse

    other = tiny(16, seed=5)
    path = tmp_path / "ckpt.pt"
    torch.save({"g": to_rosinality(other), "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": to_rosinality(g16),
                "g_optim": {"state": {}, "param_groups": []}, "args": argparse.Namespace(size=16, channel_multiplier=2)}, path)
    with pytest.warns(UserWarning, match="no w_avg"):
        ema = load_checkpoint(path)
    with pytest.warns(UserWarning):
        g = load_checkpoint(path, network="g")
    s = g16.sample_latent(1, torch.Generator().manual_seed(0))
    assert torch.equal(ema(s), g16(s)) and torch.equal(g(s), other(s))
    assert torch.allclose(ema.mapping.w_avg, g16.mapping(torch.randn(4000, 8), broadcast=False).mean(0), atol=0.1)


def test_rosinality_unexpected_keys_are_an_error(g16, tmp_path):
    ros = to_rosinality(g16)
    ros["convs.0.conv.extra"] = torch.zeros(1)
    with pytest.raises(GeneratorUnavailable, match="unexpected keys"):
        rosinality_to_nvidia(ros)


# ---------------------------------------------------------------------------------------------
# our own .pt, bare state dicts, DCGAN passthrough


def test_own_format_and_bare_state_dict(g16, tmp_path):
    clamped = tiny(16, seed=3, conv_clamp=0.5)
    save_checkpoint(clamped, tmp_path / "mine.pt")
    again = load_checkpoint(tmp_path / "mine.pt")
    assert again.config == clamped.config and same_output(clamped, again)
    torch.save(g16.state_dict(), tmp_path / "bare.pth")
    assert same_output(g16, load_checkpoint(tmp_path / "bare.pth"))


def test_dcgan_pt_still_loads(tmp_path):
    from ilo.generators import DCGANGenerator

    d = DCGANGenerator(nz=4, ngf=4, size=16)
    torch.save({"netG_state_dict": d.state_dict()}, tmp_path / "dcgan.pt")
    assert isinstance(load_checkpoint(tmp_path / "dcgan.pt"), DCGANGenerator)


# ---------------------------------------------------------------------------------------------
# registry entries and the download cache, never touching the network


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("ILO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_CACHE", {})
    return tmp_path / "cache"


def test_offline_registry_entry_says_what_to_do(no_network, monkeypatch):
    monkeypatch.setenv("ILO_OFFLINE", "1")
    with pytest.raises(GeneratorUnavailable) as info:
        load_generator("stylegan2-ffhq-1024")
    msg = str(info.value)
    assert "stylegan2-ffhq-1024x1024.pkl" in msg and str(no_network) in msg and "--generator PATH" in msg
    assert "https://" in msg


def test_network_failure_is_a_clear_error(no_network, monkeypatch):
    def fail(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.delenv("ILO_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", fail)
    with pytest.raises(GeneratorUnavailable, match="cannot download stylegan2-ffhq-256x256.pkl .*no route to host"):
        load_generator("stylegan2-ffhq-256")
    assert not list(no_network.glob("*.part"))


def test_registry_entry_loads_a_file_placed_in_the_cache(no_network, monkeypatch, nvidia_env, g16):
    monkeypatch.setenv("ILO_OFFLINE", "1")
    no_network.mkdir(parents=True)
    write_nvidia_pkl(nvidia_env, no_network / "stylegan2-ffhq-1024x1024.pkl", g16)
    g = load_generator("stylegan2-ffhq-1024")
    assert g.name == "stylegan2-ffhq-1024" and same_output(g16, g)
    assert (no_network / "stylegan2-ffhq-1024x1024.pkl.sha256").is_file()  # first use recorded
    # a recorded checksum that does not match is refused
    monkeypatch.setattr(registry, "_CACHE", {})
    (no_network / "stylegan2-ffhq-1024x1024.pkl.sha256").write_text("0" * 64 + "  stylegan2-ffhq-1024x1024.pkl\n")
    with pytest.raises(GeneratorUnavailable, match="checksum mismatch"):
        load_generator("stylegan2-ffhq-1024")


def test_fetch_downloads_verifies_and_records(no_network, monkeypatch):
    import hashlib

    payload = b"weights" * 1000

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.delenv("ILO_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(payload))
    digest = hashlib.sha256(payload).hexdigest()
    path = fetch("https://example.invalid/w.pkl", "w.pkl", digest)
    assert path.read_bytes() == payload and (no_network / "w.pkl.sha256").read_text().startswith(digest)
    with pytest.raises(GeneratorUnavailable, match="expected"):
        fetch("https://example.invalid/v.pkl", "v.pkl", "f" * 64)
    assert not (no_network / "v.pkl").exists() and not (no_network / "v.pkl.part").exists()
    # without a published checksum, the first download is recorded and later uses are verified
    path = fetch("https://example.invalid/u.pkl", "u.pkl")
    path.write_bytes(b"tampered")
    with pytest.raises(GeneratorUnavailable, match="checksum mismatch"):
        fetch("https://example.invalid/u.pkl", "u.pkl")
