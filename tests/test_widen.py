"""The wider decoder: function-preserving widening, and its training (decoder only, EMA, losses)."""
from __future__ import annotations

import pytest
import torch

from maskgit_inpaint.config import merge, preset
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.tokenizer import VQGAN, TokenizerConfig
from maskgit_inpaint.checkpoints import WeightsError, load_safetensors
from maskgit_inpaint.training import (TokenizerModule, export_decoder_parts, export_run, load_run_config,
                                      train_tokenizer)
from maskgit_inpaint.widen import parameter_count, widen_decoder, widened_config


def _tokenizer(dec_cond: bool, attn: bool = True, seed: int = 0) -> VQGAN:
    cfg = TokenizerConfig.from_dict({**preset("tiny")["tokenizer"], "dec_cond": dec_cond, "dec_cond_width": 8})
    cfg.dec_stages[0][2] = attn  # attention at 32x32, so the widened attention is exercised
    torch.manual_seed(seed)
    vq = VQGAN(cfg).eval()
    with torch.no_grad():  # trained-looking weights: the zero-initialised injections made non-zero
        for p in vq.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vq


@pytest.mark.parametrize("dec_cond", [False, True])
@pytest.mark.parametrize("factor", [2, 3])
def test_widened_decoder_decodes_exactly_as_the_original(dec_cond, factor):
    vq = _tokenizer(dec_cond)
    wide = widen_decoder(vq, factor).eval()
    assert wide.cfg.dec_in == vq.cfg.dec_in * factor
    assert [s[0] for s in wide.cfg.dec_stages] == [s[0] * factor for s in vq.cfg.dec_stages]
    assert parameter_count(wide.decoder.model) > 0.8 * factor ** 2 * parameter_count(vq.decoder.model)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    idx = vq.encode(x)
    assert torch.equal(wide.encode(x), idx)  # encoder and quantiser untouched
    cond = VQGAN.condition(x, torch.rand(3, 64, 64) > 0.5) if dec_cond else None
    with torch.no_grad():
        torch.testing.assert_close(wide.decode(idx, cond), vq.decode(idx, cond), atol=1e-5, rtol=1e-4)


def test_widening_is_refused_for_a_fractional_factor():
    with pytest.raises(ValueError, match="widen_decoder"):
        widened_config(_tokenizer(False).cfg, 1.5)


def _config(data_dir, **tt) -> dict:
    t = {"batch_size": 8, "max_steps": 3, "precision": "32-true", "ckpt_every_steps": 3, "log_every": 1,
         "disc_start": 0, "gan_weight": 0.1, "disc_channels": 8, "disc_layers": 1, "warmup_steps": 1}
    t.update(tt)
    return merge(preset("tiny"), {"data": {"train": str(data_dir), "val_fraction": 0.12}, "tokenizer_training": t})


@pytest.fixture(scope="module")
def images(tmp_path_factory, tools):
    import numpy as np

    root = tmp_path_factory.mktemp("widen_images")
    rng = np.random.default_rng(2)
    for i in range(18):
        tools.write_png(tools.synthetic_image(rng), root / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, images):
    root = tmp_path_factory.mktemp("wide")
    cfg = preset("tiny")
    cfg["transformer"] = None
    torch.manual_seed(1)
    init = MaskGIT(cfg).save(root / "init")
    run = train_tokenizer(_config(images, freeze_encoder=True, widen_decoder=2, ema_decay=0.9, fm_weight=0.5,
                                  mse_weight=1.0, ffl_weight=1.0), root / "run", accelerator="cpu", init=init)
    return init, run


def test_decoder_only_widened_run_keeps_the_tokens_and_exports_the_ema(wide_run, tmp_path):
    init, run = wide_run
    cfg = load_run_config(run)
    assert cfg["tokenizer"]["dec_in"] == 2 * preset("tiny")["tokenizer"]["dec_in"]
    assert cfg["init"]["widened_decoder"] == 2
    sd = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    ema = {k[len("ema."):]: v for k, v in sd.items() if k.startswith("ema.")}
    assert ema and all(k.startswith(("decoder.", "post_quant_conv.")) for k in ema)
    live = {k[len("vqgan."):]: v for k, v in sd.items() if k.startswith("vqgan.")}
    assert any(not torch.equal(v, live[k]) for k, v in ema.items())  # the average lags the weights
    out = export_run(run, tmp_path / "model", which="last")
    model = MaskGIT.from_dir(out, require_transformer=False)
    for k, v in model.tokenizer.state_dict().items():
        assert torch.equal(v, ema.get(k, live[k])), k
    old = MaskGIT.from_dir(init, require_transformer=False)
    for k, v in old.tokenizer.state_dict().items():
        if k.startswith(("encoder.", "quant_conv.", "codebook.")):
            assert torch.equal(v, model.tokenizer.state_dict()[k]), k
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(model.tokenizer.encode(x), old.tokenizer.encode(x))


def test_feature_matching_mse_and_focal_frequency_losses_are_logged(wide_run):
    _, run = wide_run
    from maskgit_inpaint.training import read_metrics

    rows = read_metrics(run)
    for key in ("train/fm_loss", "train/mse", "train/ffl"):
        vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        assert vals and all(v > 0 for v in vals), key


def test_decoder_parts_warm_start_a_new_run_with_the_decoder_and_its_discriminator(wide_run, images, tmp_path):
    init, run = wide_run
    files = export_decoder_parts(run, tmp_path / "parts")
    assert [f.name for f in files] == ["decoder.safetensors", "discriminator.safetensors", "tokenizer.yaml"]
    sd = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    dec, disc = load_safetensors(files[0]), load_safetensors(files[1])
    assert all(torch.equal(v, sd["ema." + k]) for k, v in dec.items())  # the EMA, not the live decoder
    assert set(disc) == {k[len("disc."):] for k in sd if k.startswith("disc.")}
    # LR 0: the new run's weights stay what it loaded, so its checkpoint shows what it started from
    run2 = train_tokenizer(_config(images, freeze_encoder=True, widen_decoder=2, lr=0.0, disc_lr=0.0, max_steps=1,
                                   ckpt_every_steps=1, init_decoder=str(files[0]), init_disc=str(files[1])),
                           tmp_path / "run2", accelerator="cpu", init=init)
    sd2 = torch.load(run2 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for k, v in dec.items():
        assert torch.equal(sd2["vqgan." + k], v), k
    for k, v in disc.items():
        assert torch.equal(sd2["disc." + k], v), k
    assert any(not torch.equal(sd2["vqgan." + k], sd["vqgan." + k]) for k in dec)  # not the init's widened decoder


def test_decoder_parts_that_do_not_fit_are_refused_by_name(wide_run, images, tmp_path):
    init, run = wide_run
    dec, disc, _ = export_decoder_parts(run, tmp_path / "parts")
    with pytest.raises(WeightsError, match="init_decoder.*wrong shapes.*--widen-decoder"):
        train_tokenizer(_config(images, freeze_encoder=True, init_decoder=str(dec)), tmp_path / "a",
                        accelerator="cpu", init=init)
    with pytest.raises(WeightsError, match="init_disc.*disc_layers"):
        train_tokenizer(_config(images, freeze_encoder=True, disc_layers=2, widen_decoder=2, init_disc=str(disc)),
                        tmp_path / "b", accelerator="cpu", init=init)
    with pytest.raises(ValueError, match="init_disc.*no discriminator"):
        train_tokenizer(_config(images, freeze_encoder=True, gan_weight=0.0, widen_decoder=2, init_disc=str(disc)),
                        tmp_path / "c", accelerator="cpu", init=init)
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable"):
        train_tokenizer(_config(images, freeze_encoder=True, widen_decoder=2,
                                init_decoder=str(tmp_path / "junk.safetensors")), tmp_path / "d",
                        accelerator="cpu", init=init)


def test_widen_without_init_is_refused(images, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        train_tokenizer(_config(images, widen_decoder=2), tmp_path / "run", accelerator="cpu")


def test_ema_starts_at_the_weights_and_follows_them():
    cfg = merge(preset("tiny"), {"tokenizer_training": {"ema_decay": 0.5}})
    m = TokenizerModule(cfg)
    with torch.no_grad():
        for p in m.vqgan.decoder.parameters():
            p.add_(1.0)
    m.reset_ema()
    live, avg = m._ema_pairs()
    assert all(torch.equal(a, b) for a, b in zip(live, avg))
    m._swap_ema()  # swapping twice is the identity
    m._swap_ema()
    assert all(torch.equal(a, b) for a, b in zip(live, avg))


def test_cli_exports_decoder_parts_in_fp16(wide_run, tmp_path, capsys):
    from maskgit_inpaint.cli import main

    _, run = wide_run
    assert main(["export", str(run), "--out", str(tmp_path / "parts"), "--decoder-parts", "--fp16"]) == 0
    dec = load_safetensors(tmp_path / "parts" / "decoder.safetensors")
    assert dec and all(v.dtype == torch.float16 for v in dec.values())
    assert "discriminator.safetensors" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(tmp_path / "x"), "--decoder-parts", "--weak", "last"]) == 2


def test_focal_frequency_loss_weights_the_frequencies_that_are_furthest_off():
    from maskgit_inpaint.training.losses import focal_frequency_loss

    torch.manual_seed(0)
    real = torch.rand(2, 3, 16, 16)
    assert focal_frequency_loss(real, real) == 0
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    stripe = torch.cos(torch.pi * (xx + yy)).expand(2, 3, 16, 16) * 0.1  # one frequency off
    noise = torch.randn(2, 3, 16, 16)
    noise = noise / noise.pow(2).mean().sqrt() * stripe.pow(2).mean().sqrt()  # the same pixel MSE
    torch.testing.assert_close(((real + stripe - real) ** 2).mean(), ((real + noise - real) ** 2).mean())
    assert focal_frequency_loss(real + stripe, real) > 1.3 * focal_frequency_loss(real + noise, real)
    fake = (real + noise).requires_grad_()
    focal_frequency_loss(fake, real).backward()
    assert fake.grad.abs().sum() > 0


def test_a_decoder_only_run_exports_a_full_model_with_the_init_transformer(images, tmp_path):
    torch.manual_seed(3)
    full = MaskGIT(preset("tiny")).save(tmp_path / "full")
    run = train_tokenizer(_config(images, freeze_encoder=True, widen_decoder=2, max_steps=2), tmp_path / "run",
                          accelerator="cpu", init=full)
    out = export_run(run, tmp_path / "model", which="last", transformer_from=full)
    model, src = MaskGIT.from_dir(out), MaskGIT.from_dir(full)
    tok = MaskGIT.from_dir(export_run(run, tmp_path / "tok", which="last"), require_transformer=False)
    assert model.config["transformer"] == src.config["transformer"]
    assert model.config["tokenizer"]["dec_in"] == 2 * src.config["tokenizer"]["dec_in"]
    for k, v in model.transformer.state_dict().items():
        assert torch.equal(v, src.transformer.state_dict()[k]), k
    for k, v in model.tokenizer.state_dict().items():
        assert torch.equal(v, tok.tokenizer.state_dict()[k]), k
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(model.tokenizer.encode(x), src.tokenizer.encode(x))
    torch.manual_seed(4)
    other = MaskGIT(preset("tiny")).save(tmp_path / "other")
    with pytest.raises(ValueError, match="--transformer-from .*other.*encodes differently"):
        export_run(run, tmp_path / "bad", which="last", transformer_from=other)
