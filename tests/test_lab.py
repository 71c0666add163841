"""The course lab's checkpoint layouts: VQGAN.pt (315 tensors, from the spec's list) and a
lab-layout transformer, imported into model directories, through the API and the CLI."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
import yaml

from maskgit_inpaint.pipeline import InpaintPipeline
from maskgit_inpaint.checkpoints import WeightsError
from maskgit_inpaint.cli import main
from maskgit_inpaint.lab import (LAB_NORMALIZATION, LAB_SAMPLER, import_lab, lab_transformer_config,
                                 load_lab_transformer, load_lab_vqgan)
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.sampling import SamplerConfig

HEADS = 4  # of the small lab transformer below (dim 64)


def read_spec(path) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(\S+) \(([\d, ]*)\)", line.strip())
        assert m, f"unparsable spec line {line!r}"
        out[m.group(1)] = tuple(int(v) for v in m.group(2).split(",") if v.strip())
    return out


@pytest.fixture(scope="module")
def spec(tools):
    if not tools.lab_vqgan_spec.is_file():
        pytest.skip(f"{tools.lab_vqgan_spec} not available")
    s = read_spec(tools.lab_vqgan_spec)
    assert len(s) == 315
    return s


def random_state_dict(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("gn.weight") or re.search(r"(LN|LayerNorm\d|Token_Prediction\.2)\.weight$", k):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[k] = 0.02 * torch.randn(shape, generator=g)
    return sd


def lab_transformer_shapes(dim=64, layers=2, codebook=1024, mlp=128, num_tokens=256) -> dict:
    """The lab layout's names and shapes, written from the spec (not from our model)."""
    v = codebook + 1
    s = {"tok_emb.weight": (v, dim), "pos_emb": (num_tokens, dim), "LN.weight": (dim,), "LN.bias": (dim,)}
    for i in range(layers):
        p = f"blocks.{i}."
        s.update({p + "Attention.qkv.weight": (3 * dim, dim), p + "Attention.qkv.bias": (3 * dim,),
                  p + "Attention.proj.weight": (dim, dim), p + "Attention.proj.bias": (dim,),
                  p + "LayerNorm1.weight": (dim,), p + "LayerNorm1.bias": (dim,),
                  p + "LayerNorm2.weight": (dim,), p + "LayerNorm2.bias": (dim,),
                  p + "MLP.0.weight": (mlp, dim), p + "MLP.0.bias": (mlp,),
                  p + "MLP.2.weight": (dim, mlp), p + "MLP.2.bias": (dim,)})
    s.update({"Token_Prediction.0.weight": (dim, dim), "Token_Prediction.0.bias": (dim,),
              "Token_Prediction.2.weight": (dim,), "Token_Prediction.2.bias": (dim,),
              "bias": (num_tokens, v)})
    return s


def reference_lab_logits(sd: dict, tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """The lab transformer's forward pass as the spec describes it, in plain tensor ops."""
    dim = sd["tok_emb.weight"].shape[1]
    ln = lambda x, p: F.layer_norm(x, (dim,), sd[p + ".weight"], sd[p + ".bias"], eps=1e-12)  # noqa: E731
    x = ln(sd["tok_emb.weight"][tokens] + sd["pos_emb"][: tokens.shape[1]], "LN")
    b, n, _ = x.shape
    i = 0
    while f"blocks.{i}.LayerNorm1.weight" in sd:
        p = f"blocks.{i}."
        q, k, v = F.linear(x, sd[p + "Attention.qkv.weight"], sd[p + "Attention.qkv.bias"]).split(dim, -1)
        q, k, v = (t.reshape(b, n, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // heads), -1) @ v
        att = F.linear(att.transpose(1, 2).reshape(b, n, dim), sd[p + "Attention.proj.weight"],
                       sd[p + "Attention.proj.bias"])
        x = ln(x + att, p + "LayerNorm1")
        h = F.linear(F.gelu(F.linear(x, sd[p + "MLP.0.weight"], sd[p + "MLP.0.bias"])),
                     sd[p + "MLP.2.weight"], sd[p + "MLP.2.bias"])
        x = ln(x + h, p + "LayerNorm2")
        i += 1
    h = F.gelu(F.linear(x, sd["Token_Prediction.0.weight"], sd["Token_Prediction.0.bias"]))
    h = ln(h, "Token_Prediction.2")
    return h @ sd["tok_emb.weight"].t() + sd["bias"][: tokens.shape[1]]


# ----------------------------------------------------------------------------- fixtures (files)
@pytest.fixture(scope="module")
def lab_sd(spec):
    return random_state_dict(spec, seed=0)


@pytest.fixture(scope="module")
def vqgan_file(lab_sd, tmp_path_factory):
    p = tmp_path_factory.mktemp("lab") / "VQGAN.pt"
    torch.save(lab_sd, p)
    return p


@pytest.fixture(scope="module")
def tf_sd():
    return random_state_dict(lab_transformer_shapes(), seed=1)


@pytest.fixture(scope="module")
def tf_file(tf_sd, tmp_path_factory):
    p = tmp_path_factory.mktemp("labtf") / "transformer.pth"
    torch.save(tf_sd, p)
    return p


@pytest.fixture(scope="module")
def imported_dir(vqgan_file, tf_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "model"
    assert import_lab(vqgan_file, tf_file, out, heads=HEADS) == out
    return out


def images(b=2, seed=0):
    return torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- VQGAN
def test_load_lab_vqgan_encode_decode(vqgan_file, lab_sd):
    vq = load_lab_vqgan(vqgan_file)
    assert not vq.training
    own = vq.state_dict()
    assert own.keys() == lab_sd.keys()
    assert all(torch.equal(own[k], lab_sd[k]) for k in lab_sd)
    assert sum(v.numel() for v in own.values()) == 70_775_299
    x = (images(2) - 0.5) / 0.25
    with torch.no_grad():
        z = vq.quant_conv(vq.encoder(x))
        assert z.shape == (2, 256, 16, 16)
        zq, idx, _, _ = vq.quant(z)
        assert idx.shape == (2, 256) and idx.dtype == torch.long
        assert (idx >= 0).all() and (idx < 1024).all()
        # nearest code by squared L2 distance (no normalisation in the lab's codebook)
        flat = z.permute(0, 2, 3, 1).reshape(-1, 256)
        ref = torch.cdist(flat.double(), lab_sd["codebook.embedding.weight"].double()).argmin(1)
        assert (ref.reshape(2, 256) == idx).float().mean() > 0.99
        out = vq.decode(idx)
        assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()


def test_import_lab_round_trip(imported_dir, vqgan_file, tf_file, tf_sd):
    d = imported_dir
    # the lab's 70.8M-parameter VQGAN is far over SPLIT_BYTES, so its decoder side gets its own file
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml", "decoder.safetensors", "tokenizer.safetensors",
                                                   "transformer.safetensors"]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["normalization"] == LAB_NORMALIZATION
    assert cfg["sampler"] == LAB_SAMPLER
    assert cfg["transformer"]["layout"] == "lab"
    assert {k: cfg["transformer"][k] for k in ("codebook_size", "num_tokens", "dim", "heads", "layers",
                                               "mlp_hidden")} == dict(codebook_size=1024, num_tokens=256, dim=64,
                                                                      heads=HEADS, layers=2, mlp_hidden=128)
    model = MaskGIT.from_dir(d)
    vq = load_lab_vqgan(vqgan_file)
    tf = load_lab_transformer(tf_file, heads=HEADS)
    x = model.normalize(images(1, seed=3))
    with torch.no_grad():
        idx = vq.encode(x)
        assert torch.equal(model.tokenizer.encode(x), idx)
        assert torch.equal(model.tokenizer.decode(idx), vq.decode(idx))
        tokens = torch.randint(0, 1025, (2, 256), generator=torch.Generator().manual_seed(0))
        logits = model.transformer(tokens)
        assert logits.shape == (2, 256, 1025)
        assert torch.equal(logits, tf(tokens))
        assert torch.allclose(logits, reference_lab_logits(tf_sd, tokens, HEADS), atol=1e-4)
    # the whole pipeline runs on the imported model (lab logits include the mask token)
    known = torch.ones(1, 64, 64, dtype=torch.bool)
    known[:, 20:40, 20:40] = False
    out = InpaintPipeline(model).generate(images(1, seed=3), known, SamplerConfig(gamma="linear", steps=2), seed=0)
    assert out.images.shape == (1, 3, 64, 64) and (out.tokens < 1024).all()


def test_cli_import_lab_matches_api(imported_dir, vqgan_file, tf_file, tmp_path, capsys):
    out = tmp_path / "cli_model"
    rc = main(["import-lab", "--vqgan", str(vqgan_file), "--transformer", str(tf_file),
               "--heads", str(HEADS), "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert str(out) in cap.out
    for name in ("config.yaml", "decoder.safetensors", "tokenizer.safetensors", "transformer.safetensors"):
        assert (out / name).read_bytes() == (imported_dir / name).read_bytes(), name
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_bad_vqgan_gives_one_error_listing_every_problem(lab_sd, tmp_path, capsys):
    sd = dict(lab_sd)
    missing = ["decoder.model.2.q.weight", "encoder.model.5.channel_up.bias"]
    for k in missing:
        del sd[k]
    sd["encoder.model.99.weight"] = torch.zeros(3)
    sd["quant_conv.weight"] = torch.zeros(256, 128, 1, 1)
    sd["codebook.embedding.weight"] = torch.zeros(512, 256)
    path = tmp_path / "bad_VQGAN.pt"
    torch.save(sd, path)
    del sd
    with pytest.raises(WeightsError) as e:
        load_lab_vqgan(path)
    msg = str(e.value)
    for s in (str(path), *missing, "encoder.model.99.weight", "quant_conv.weight", "codebook.embedding.weight",
              "(512, 256)", "(1024, 256)"):
        assert s in msg, s
    # the CLI turns it into exit code 2 with one line on stderr, and writes nothing
    out = tmp_path / "out"
    rc = main(["import-lab", "--vqgan", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err
    assert not out.exists()


def test_import_lab_rejects_a_transformer_with_another_codebook(vqgan_file, tmp_path):
    p = tmp_path / "tf512.pth"
    torch.save(random_state_dict(lab_transformer_shapes(codebook=512)), p)
    out = tmp_path / "out"
    with pytest.raises(WeightsError, match=r"tf512\.pth: codebook of 512 codes"):
        import_lab(vqgan_file, p, out, heads=HEADS)
    assert not out.exists() or not any(out.iterdir())


def test_cli_import_lab_missing_file(tmp_path, capsys):
    rc = main(["import-lab", "--vqgan", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.pt" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- lab transformer alone
def test_load_lab_transformer_reads_the_architecture(tf_file, tf_sd):
    tf = load_lab_transformer(tf_file, heads=HEADS)
    c = tf.cfg
    assert (c.layout, c.codebook_size, c.num_tokens, c.dim, c.layers, c.mlp_hidden, c.heads) == \
        ("lab", 1024, 256, 64, 2, 128, HEADS)
    assert not tf.training
    tokens = torch.randint(0, 1025, (3, 256), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = tf(tokens)
    assert logits.shape == (3, 256, 1025)
    assert torch.allclose(logits, reference_lab_logits(tf_sd, tokens, HEADS), atol=1e-4)
    # a different head count is a different function of the same weights
    assert not torch.allclose(logits, reference_lab_logits(tf_sd, tokens, 2), atol=1e-4)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_lab_transformer_wrapped_checkpoints(tf_sd, tmp_path, wrap):
    obj = {f"module.{k}": v for k, v in tf_sd.items()} if wrap == "module." else {wrap: tf_sd, "epoch": 3}
    if wrap != "module.":
        obj["epoch"] = torch.tensor(3)
    p = tmp_path / "wrapped.pth"
    torch.save(obj, p)
    tf = load_lab_transformer(p, heads=HEADS)
    assert all(torch.equal(tf.state_dict()[k], tf_sd[k]) for k in tf_sd)


def test_heads_from_yaml_config(tf_sd, tmp_path):
    y = tmp_path / "MaskGit.yml"
    y.write_text(yaml.safe_dump({"Transformer_param": {"num_heads": 8, "dim": 64}}))
    assert lab_transformer_config(tf_sd, y).heads == 8
    assert lab_transformer_config(tf_sd).heads == 16
    assert lab_transformer_config(tf_sd, y, heads=2).heads == 2
    with pytest.raises(FileNotFoundError):
        lab_transformer_config(tf_sd, tmp_path / "missing.yml")


def test_not_a_lab_transformer(tmp_path, tools):
    sd = random_state_dict(lab_transformer_shapes())
    del sd["pos_emb"]
    p = tmp_path / "t.pth"
    torch.save(sd, p)
    with pytest.raises(WeightsError, match="pos_emb"):
        load_lab_transformer(p, heads=HEADS)
    sd = random_state_dict(lab_transformer_shapes())
    sd["blocks.0.Attention.q.weight"] = sd.pop("blocks.0.Attention.qkv.weight")  # another student's naming
    torch.save(sd, p)
    with pytest.raises(WeightsError) as e:
        load_lab_transformer(p, heads=HEADS)
    assert "blocks.0.Attention.qkv.weight" in str(e.value) and "blocks.0.Attention.q.weight" in str(e.value)


def test_unreadable_checkpoints(tmp_path):
    p = tmp_path / "garbage.pth"
    p.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_lab_transformer(p)
    torch.save([torch.zeros(1)], p)
    with pytest.raises(WeightsError, match="state dict"):
        load_lab_transformer(p)
