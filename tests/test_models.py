"""Tokenizer, quantisers, transformer layouts, the inpainting pipeline and model directories."""
from __future__ import annotations

import copy

import pytest
import torch
import yaml
from safetensors.torch import save_file

from maskgit_inpaint.pipeline import InpaintPipeline
from maskgit_inpaint.checkpoints import WeightsError, load_strict
from maskgit_inpaint.masks import harmonic_fill, pixel_to_token_mask
from maskgit_inpaint.model import MaskGIT, ModelDirError, model_hash
from maskgit_inpaint.precision import auto_precision
from maskgit_inpaint.sampling import SamplerConfig
from maskgit_inpaint.tokenizer import FSQ, VQGAN, TokenizerConfig
from maskgit_inpaint.transformer import MaskTransformer, TransformerConfig


@pytest.fixture(scope="module")
def tiny(tools):
    return tools.make_tiny_model(0)


def fsq_config(tools, levels=(4, 4, 4, 4)) -> dict:
    cfg = tools.tiny_config()
    cfg["tokenizer"].update(quantizer="fsq", fsq_levels=list(levels), codebook_size=256)
    return cfg


def images(b=2, seed=0):
    return torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def hole_mask(b=2):
    known = torch.ones(b, 64, 64, dtype=torch.bool)
    known[:, 10:30, 20:50] = False
    if b > 1:
        known[1, 40:60, 0:12] = False
    return known


# ----------------------------------------------------------------------------- tokenizer (VQ)
def test_tiny_vqgan_encode_decode_shapes(tiny):
    x = images(2)
    idx = tiny.tokenizer.encode(tiny.normalize(x))
    assert idx.shape == (2, 256) and idx.dtype == torch.long
    assert (idx >= 0).all() and (idx < 256).all()
    assert tiny.latent_size == 16 and tiny.image_size == 64 and tiny.codebook_size == 256
    rec = tiny.tokenizer.decode(idx)
    assert rec.shape == (2, 3, 64, 64) and rec.dtype == torch.float32
    assert torch.isfinite(rec).all()
    out = tiny.decode(tiny.encode(x))
    assert out.shape == (2, 3, 64, 64)
    assert torch.equal(tiny.encode(x), idx)


def test_vq_quantised_latents_are_the_looked_up_codes(tiny):
    with torch.no_grad():
        zq, idx, loss, _ = tiny.tokenizer.quantize(tiny.normalize(images(2)))
        assert zq.shape == (2, tiny.tokenizer.cfg.latent_dim, 16, 16)
        assert torch.allclose(zq, tiny.tokenizer.quant.lookup(idx), atol=1e-6)
        assert loss.dim() == 0 and torch.isfinite(loss)
        rec, idx2, _ = tiny.tokenizer(tiny.normalize(images(2)))
        assert torch.equal(idx, idx2)
        assert torch.allclose(rec, tiny.tokenizer.decode(idx), atol=1e-5)


def test_encode_is_per_image(tiny):
    x = images(3, seed=1)
    batch = tiny.encode(x)
    for i in range(3):
        assert torch.equal(tiny.encode(x[i:i + 1])[0], batch[i])


def test_tokenizer_batches_only_where_a_batch_matches_images_alone(tiny, monkeypatch):
    """A CPU convolution's kernel, and so its last bits, can depend on the batch size (a batch of
    one differs from larger ones on the development Xeon). An image alone runs as a batch of two;
    the first batch of each shape is checked against its first and last images run so, and only
    if they match is that shape batched from then on, else every image runs on its own: an
    image's result is the same alone or in any batch, on any CPU. (fp32: the injected 1e-7
    below would round away in a bf16 decoder's output.)"""
    sizes = []
    enc, dec = tiny.tokenizer.encode, tiny.tokenizer.decode
    monkeypatch.setattr(tiny.tokenizer, "encode", lambda x: sizes.append(("encode", len(x))) or enc(x))
    monkeypatch.setattr(tiny.tokenizer, "decode",
                        lambda idx, cond=None: sizes.append(("decode", len(idx))) or dec(idx, cond))
    monkeypatch.setattr(tiny, "_batch_verdicts", {}, raising=False)
    x, known = images(3), hole_mask(3)
    out = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=2), seed=torch.tensor([1, 2, 3]), composite=False, precision="fp32")
    assert sizes == [("encode", 3), ("encode", 2), ("encode", 2), ("decode", 3), ("decode", 2), ("decode", 2)]
    sizes.clear()
    again = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=2), seed=torch.tensor([1, 2, 3]), composite=False, precision="fp32")
    assert sizes == [("encode", 3), ("decode", 3)]  # checked once per shape
    assert torch.equal(again.images, out.images)
    sizes.clear()
    alone = InpaintPipeline(tiny).generate(x[1:2], known[1:2], SamplerConfig(steps=2), seed=torch.tensor([2]), composite=False, precision="fp32")
    assert sizes == [("encode", 2), ("decode", 2)]
    assert torch.equal(alone.tokens[0], out.tokens[1]) and torch.equal(alone.images[0], out.images[1])

    # a CPU whose batched kernel rounds otherwise: the check fails and every image runs alone
    monkeypatch.setattr(tiny, "_batch_verdicts", {}, raising=False)
    monkeypatch.setattr(tiny.tokenizer, "decode", lambda idx, cond=None: sizes.append(("decode", len(idx)))
                        or dec(idx, cond) + (1e-7 if len(idx) > 2 else 0.0))
    sizes.clear()
    for _ in range(2):
        res = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=2), seed=torch.tensor([1, 2, 3]), composite=False, precision="fp32")
        assert torch.equal(res.images, out.images)
    assert sizes == [("encode", 3), ("encode", 2), ("encode", 2), ("decode", 3)] + [("decode", 2)] * 4 \
        + [("encode", 3)] + [("decode", 2)] * 3


# ----------------------------------------------------------------------------- FSQ
def test_fsq_tokenizer_shapes_and_consistency(tools):
    torch.manual_seed(0)
    model = MaskGIT(fsq_config(tools)).eval()
    vq = model.tokenizer
    assert isinstance(vq.quant, FSQ) and vq.codebook_size == 256
    x = model.normalize(images(2))
    with torch.no_grad():
        zq, idx, loss, _ = vq.quantize(x)
        assert idx.shape == (2, 256) and idx.dtype == torch.long
        assert (idx >= 0).all() and (idx < 256).all()
        assert zq.shape == (2, 4, 16, 16)
        assert torch.allclose(vq.quant.lookup(idx), zq, atol=1e-6)
        rec = vq.decode(idx)
        assert rec.shape == (2, 3, 64, 64)
        assert torch.allclose(rec, vq.decode_latents(zq), atol=1e-5)
    # the full pipeline runs with an FSQ tokenizer too
    out = InpaintPipeline(model).generate(images(2), hole_mask(2), SamplerConfig(steps=3), seed=0)
    assert out.images.shape == (2, 3, 64, 64) and (out.tokens < 256).all()


@pytest.mark.parametrize("levels", [[4, 4, 4, 4], [5, 3, 8], [7, 5, 5, 5], [2, 3]])
def test_fsq_lookup_inverts_quantisation_for_every_index(levels):
    fsq = FSQ(levels)
    n = fsq.num_codes
    # pad to a square grid of tokens, as lookup expects (B, h*w)
    side = int(n ** 0.5) + 1
    idx = torch.arange(side * side) % n
    codes = fsq.lookup(idx[None])                                   # (1, D, side, side)
    flat = codes.permute(0, 2, 3, 1).reshape(-1, len(levels))
    assert len({tuple(c.tolist()) for c in flat[:n]}) == n          # every index its own code
    assert flat.min() >= -1 and flat.max() <= 1
    # latents that land on each code quantise back to that index and to exactly that code
    half_w = torch.div(fsq.levels, 2, rounding_mode="floor")
    offset = torch.where(fsq.levels % 2 == 0, 0.5, 0.0)
    half_l = (fsq.levels - 1) * (1 + 1e-3) / 2
    q = flat * half_w
    z = torch.atanh((q + offset) / half_l) - torch.atanh(offset / half_l)
    z = z.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    zq, got, _, _ = fsq(z)
    assert torch.equal(got, idx[None])
    assert torch.allclose(zq, codes, atol=1e-6)


def test_fsq_random_latents_cover_the_codebook():
    fsq = FSQ([4, 4, 4, 4])
    z = torch.randn(8, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.5
    zq, idx, loss, _ = fsq(z)
    assert idx.min() >= 0 and idx.max() < 256
    assert len(idx.unique()) > 200   # nearly every code is used
    assert torch.allclose(fsq.lookup(idx), zq, atol=1e-6)
    assert loss.item() == 0.0


@pytest.mark.parametrize("change,match", [
    (dict(quantizer="fsq", fsq_levels=[4, 4, 4], codebook_size=256), "product"),
    (dict(quantizer="fsq", fsq_levels=[], codebook_size=256), "fsq_levels"),
    (dict(quantizer="lfq"), "quantizer"),
    (dict(enc_stages=[[16, 1, False, True]]), "downsamples"),
])
def test_tokenizer_config_validation(tools, change, match):
    d = tools.tiny_config()["tokenizer"]
    d.update(change)
    with pytest.raises(ValueError, match=match):
        TokenizerConfig.from_dict(d)


def test_tokenizer_config_rejects_unknown_keys(tools):
    d = tools.tiny_config()["tokenizer"]
    d["latent_dims"] = 3
    with pytest.raises(ValueError, match="latent_dims"):
        TokenizerConfig.from_dict(d)


# ----------------------------------------------------------------------------- transformer
@pytest.mark.parametrize("layout,vocab", [("prenorm", 256), ("lab", 257)])
def test_transformer_logit_shapes(tools, layout, vocab):
    cfg = TransformerConfig.from_dict({**tools.tiny_config()["transformer"], "layout": layout})
    torch.manual_seed(0)
    tf = MaskTransformer(cfg).eval()
    assert tf.mask_token_id == 256
    tokens = torch.randint(0, 257, (3, 256))
    logits = tf(tokens)
    assert logits.shape == (3, 256, vocab)
    assert torch.isfinite(logits).all()
    # per-image: the same image alone gives the same logits
    assert torch.allclose(tf(tokens[1:2])[0], logits[1], atol=1e-5)
    # bidirectional: changing the last token changes the first token's logits
    t2 = tokens.clone()
    t2[:, -1] = (t2[:, -1] + 1) % 256
    assert not torch.allclose(tf(t2)[:, 0], logits[:, 0])


def test_lab_layout_output_is_tied_to_the_embedding(tools):
    cfg = TransformerConfig.from_dict({**tools.tiny_config()["transformer"], "layout": "lab"})
    tf = MaskTransformer(cfg).eval()
    names = set(tf.state_dict())
    assert {"tok_emb.weight", "pos_emb", "LN.weight", "bias", "Token_Prediction.0.weight",
            "Token_Prediction.2.weight", "blocks.0.Attention.qkv.weight", "blocks.1.Attention.proj.bias",
            "blocks.0.LayerNorm1.weight", "blocks.0.MLP.0.weight", "blocks.0.MLP.2.weight"} <= names
    assert not any(k.startswith("head") for k in names)
    assert tf.bias.shape == (256, 257)
    tokens = torch.randint(0, 257, (1, 256))
    before = tf(tokens)
    with torch.no_grad():
        tf.bias[:, 5] += 1.0
    assert torch.allclose(tf(tokens)[..., 5], before[..., 5] + 1.0, atol=1e-5)


@pytest.mark.parametrize("change,match", [(dict(dim=33), "divisible"), (dict(layout="postnorm"), "layout")])
def test_transformer_config_validation(tools, change, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig.from_dict({**tools.tiny_config()["transformer"], **change})


@pytest.mark.parametrize("key,value", [("codebook_size", 512), ("num_tokens", 64)])
def test_transformer_must_fit_the_tokenizer(tools, key, value):
    cfg = tools.tiny_config()
    cfg["transformer"][key] = value
    with pytest.raises(ModelDirError, match=key):
        MaskGIT(cfg)


# ----------------------------------------------------------------------------- inpainting
def test_inpaint_outputs_and_composite(tiny):
    x, known = images(2), hole_mask(2)
    out = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=4), seed=torch.tensor([1, 2]), return_steps=True)
    assert out.images.shape == (2, 3, 64, 64)
    assert torch.equal(out.images[known[:, None].expand_as(x)], x[known[:, None].expand_as(x)])
    assert torch.equal(out.unknown, pixel_to_token_mask(known, 16))
    assert out.tokens.shape == (2, 256) and (out.tokens < 256).all()
    assert len(out.step_images) == len(out.step_masks) == 4
    assert all(s.shape == (2, 3, 64, 64) for s in out.step_images)
    raw = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=4), seed=torch.tensor([1, 2]), composite=False)
    assert torch.equal(raw.tokens, out.tokens)
    assert torch.allclose(raw.images, tiny.decode(out.tokens, precision="auto"))
    assert not torch.equal(raw.images, out.images)


@pytest.mark.parametrize("fill", ["harmonic", "mean"])
def test_inpaint_keeps_known_tokens_and_ignores_hole_content(tiny, fill):
    x, known = images(2), hole_mask(2)
    y = x.clone()
    y[~known[:, None].expand_as(x)] = torch.rand(int((~known).sum()) * 3)  # different hole content
    cfg = SamplerConfig(steps=4)
    a = InpaintPipeline(tiny).generate(x, known, cfg, seed=3, hole_fill=fill)
    b = InpaintPipeline(tiny).generate(y, known, cfg, seed=3, hole_fill=fill)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.images[known[:, None].expand_as(x)], b.images[known[:, None].expand_as(x)])
    hole = ~known[:, None].expand_as(x)
    assert torch.equal(a.images[hole], b.images[hole])
    # known tokens are those of the image with its holes filled as asked
    xn = tiny.normalize(x)
    filled = xn * known[:, None] if fill == "mean" else harmonic_fill(xn, known)
    enc = tiny.tokenizer.encode(filled)
    assert torch.equal(a.tokens[~a.unknown], enc[~a.unknown])


def test_token_threshold_keeps_the_encoded_tokens_of_grazed_patches(tiny):
    """hole_mask's first hole (rows 10-29, columns 20-49) covers at most half of the patches along
    its top, bottom and right edges: at threshold 0.5 those tokens keep the encoder's token of
    the hole-filled image, every other hole token is generated, and the composite still keeps
    the known pixels."""
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=4, token_threshold=0.5)
    out = InpaintPipeline(tiny).generate(x, known, cfg, seed=torch.tensor([1, 2]))
    lab = pixel_to_token_mask(known, 16)
    assert torch.equal(out.unknown, pixel_to_token_mask(known, 16, threshold=0.5))
    grazed = lab & ~out.unknown
    assert grazed[0].sum() == 8 + 8 + 4  # token rows 2 and 7 (columns 5-12), column 12 of rows 3-6
    assert torch.equal(grazed[1], grazed[0])  # the second image's other hole is patch-aligned
    enc = tiny.tokenizer.encode(harmonic_fill(tiny.normalize(x), known))
    assert torch.equal(out.tokens[~out.unknown], enc[~out.unknown])
    assert torch.equal(out.images[known[:, None].expand_as(x)], x[known[:, None].expand_as(x)])
    # the kept tokens come from the fill of the known pixels: what the hole held cannot leak in
    y = x.clone()
    y[~known[:, None].expand_as(x)] = torch.rand(int((~known).sum()) * 3)
    assert torch.equal(InpaintPipeline(tiny).generate(y, known, cfg, seed=torch.tensor([1, 2])).images, out.images)
    # a hole below the threshold everywhere: nothing to generate, the fill's tokens are decoded
    dot = torch.ones(1, 64, 64, dtype=torch.bool)
    dot[0, 5, 5] = False
    res = InpaintPipeline(tiny).generate(x[:1], dot, cfg, seed=0, composite=False, return_steps=True)
    assert not res.unknown.any()
    assert torch.equal(res.tokens, tiny.tokenizer.encode(harmonic_fill(tiny.normalize(x[:1]), dot)))


def test_hole_fill_default_comes_from_config_and_is_checked(tiny):
    assert tiny.default_settings.hole_fill == "harmonic"
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=4)
    default = InpaintPipeline(tiny).generate(x, known, cfg, seed=3)
    assert torch.equal(default.tokens, InpaintPipeline(tiny).generate(x, known, cfg, seed=3, hole_fill="harmonic").tokens)
    lab_like = MaskGIT({**tiny.config, "hole_fill": "mean"})
    lab_like.load_state_dict(tiny.state_dict())
    assert lab_like.default_settings.hole_fill == "mean"
    assert torch.equal(InpaintPipeline(lab_like).generate(x, known, cfg, seed=3).tokens,
                       InpaintPipeline(tiny).generate(x, known, cfg, seed=3, hole_fill="mean").tokens)
    with pytest.raises(ValueError, match="hole_fill"):
        InpaintPipeline(tiny).generate(x, known, cfg, hole_fill="zeros")
    with pytest.raises(ValueError, match="hole_fill"):
        MaskGIT({**tiny.config, "hole_fill": "blur"})


def test_blend_default_comes_from_config_and_is_checked(tiny):
    from maskgit_inpaint.compositing import paste_known

    assert tiny.default_settings.blend == "poisson"
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=4)
    raw = InpaintPipeline(tiny).generate(x, known, cfg, seed=3, composite=False).images
    default = InpaintPipeline(tiny).generate(x, known, cfg, seed=3).images
    assert torch.allclose(default, paste_known(raw, x, known, "poisson"))
    pasted = InpaintPipeline(tiny).generate(x, known, cfg, seed=3, blend="paste").images
    assert torch.equal(pasted, torch.where(known[:, None], x, raw))
    plain = MaskGIT({**tiny.config, "blend": "paste"})
    plain.load_state_dict(tiny.state_dict())
    assert torch.equal(InpaintPipeline(plain).generate(x, known, cfg, seed=3).images, pasted)
    with pytest.raises(ValueError, match="blend"):
        InpaintPipeline(tiny).generate(x, known, cfg, blend="feather")
    with pytest.raises(ValueError, match="blend"):
        MaskGIT({**tiny.config, "blend": "feather"})


def test_a_configured_sweet_spot_at_t_is_no_early_stop(tiny):
    from dataclasses import replace

    full = MaskGIT({**tiny.config, "sampler": {"steps": 4, "sweet_spot": 4}})
    assert full.default_settings.sweet_spot is None and full.default_settings.stop == 4
    # raising the steps of such a config runs them all (it used to stop at the old T)
    x, known = images(1), hole_mask(1)
    full.load_state_dict(tiny.state_dict())
    out = InpaintPipeline(full).generate(x, known, replace(full.default_settings, steps=6), return_steps=True)
    assert len(out.step_masks) == 6
    early = MaskGIT({**tiny.config, "sampler": {"steps": 4, "sweet_spot": 2}})
    assert early.default_settings.sweet_spot == 2 and early.default_settings.stop == 2


def test_inpaint_batch_equals_one_by_one(tiny):
    x, known = images(3, seed=5), hole_mask(3)
    seeds = torch.tensor([10, 20, 30])
    batch = InpaintPipeline(tiny).generate(x, known, SamplerConfig(steps=6), seed=seeds)
    for i in range(3):
        alone = InpaintPipeline(tiny).generate(x[i:i + 1], known[i:i + 1], SamplerConfig(steps=6), seed=seeds[i:i + 1])
        assert torch.equal(alone.tokens[0], batch.tokens[i])
        # batched convolutions may differ from single ones in the last float bits
        assert torch.allclose(alone.images[0], batch.images[i], atol=1e-5)


def test_cpu_transformer_calls_are_sliced_without_changing_the_logits(tiny, monkeypatch):
    """On a CPU a large batch runs through the transformer in slices of about
    CPU_TOKENS_PER_CALL tokens (for speed); the logits and the inpainting stay the same."""
    import maskgit_inpaint.model as model_module

    x, known = images(5, seed=6), hole_mask(5)
    cfg = SamplerConfig(steps=4, guidance=2.0)
    whole = InpaintPipeline(tiny).generate(x, known, cfg, seed=3)
    n = tiny.latent_size ** 2
    monkeypatch.setattr(model_module, "CPU_TOKENS_PER_CALL", 2 * n)
    sizes = []
    hook = tiny.transformer.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    try:
        sliced = InpaintPipeline(tiny).generate(x, known, cfg, seed=3)
        probe = torch.randint(0, tiny.codebook_size + 1, (5, n))
        full = tiny.transformer(probe)
        assert torch.equal(tiny.logits_fn("fp32")(probe, "all"), full)
        # by default only the positions holding the mask token, the same bit for bit; the rest 0
        masked, is_mask = tiny.logits_fn("fp32")(probe), probe == tiny.codebook_size
        assert torch.equal(masked[is_mask], full[is_mask]) and not masked[~is_mask].any()
        # "compact": those rows alone, in row-major order, across the slices
        assert torch.equal(tiny.logits_fn("fp32")(probe, "compact"), full[is_mask])
    finally:
        hook.remove()
    assert sizes[:5] == [2, 2, 2, 2, 2]  # the guided batch of 10 in slices of 2 sequences
    assert torch.equal(whole.tokens, sliced.tokens)


# ----------------------------------------------------------------------------- model directories
def test_save_load_round_trip(tiny, tmp_path, tools):
    d = tiny.save(tmp_path / "m")
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml", "tokenizer.safetensors", "transformer.safetensors"]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["format"] == "maskgit-inpaint/1"
    assert cfg["transformer"] == tools.tiny_config()["transformer"]
    loaded = MaskGIT.from_dir(d)
    assert not loaded.training
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x, known = images(2), hole_mask(2)
    assert torch.equal(loaded.encode(x), tiny.encode(x))
    tok = tiny.encode(x)
    assert torch.equal(loaded.decode(tok), tiny.decode(tok))
    assert torch.equal(loaded.transformer(tok), tiny.transformer(tok))
    assert loaded.default_settings == tiny.default_settings
    o1 = InpaintPipeline(tiny).generate(x, known, seed=4)
    o2 = InpaintPipeline(loaded).generate(x, known, seed=4)
    assert torch.equal(o1.images, o2.images) and torch.equal(o1.tokens, o2.tokens)
    # saving again gives byte-identical files
    d2 = loaded.save(tmp_path / "m2")
    for name in ("config.yaml", "tokenizer.safetensors", "transformer.safetensors"):
        assert (d / name).read_bytes() == (d2 / name).read_bytes()
    assert model_hash(d) == model_hash(d2)


def test_a_large_tokenizer_keeps_its_decoder_side_in_its_own_file(tiny, tmp_path, monkeypatch):
    """Over `SPLIT_BYTES` the decoder side goes to decoder.safetensors (each file stays small
    enough to commit); the directory loads as before, and saving it small again drops the file."""
    import maskgit_inpaint.model as model_mod

    full = sum(v.numel() * v.element_size() for v in tiny.tokenizer.state_dict().values())
    monkeypatch.setattr(model_mod, "SPLIT_BYTES", full // 2)
    d = tiny.save(tmp_path / "split")
    assert (d / "decoder.safetensors").is_file()
    from safetensors import safe_open
    with safe_open(str(d / "decoder.safetensors"), "pt") as f:
        dec_keys = set(f.keys())
    with safe_open(str(d / "tokenizer.safetensors"), "pt") as f:
        enc_keys = set(f.keys())
    assert dec_keys and all(k.startswith(("decoder.", "post_quant_conv.")) for k in dec_keys)
    assert enc_keys and not enc_keys & dec_keys and enc_keys | dec_keys == set(tiny.tokenizer.state_dict())
    loaded = MaskGIT.from_dir(d)
    x = images(2)
    tok = tiny.encode(x)
    assert torch.equal(loaded.encode(x), tok) and torch.equal(loaded.decode(tok), tiny.decode(tok))
    monkeypatch.setattr(model_mod, "SPLIT_BYTES", full * 2)
    loaded.save(d)
    assert not (d / "decoder.safetensors").exists()
    assert torch.equal(MaskGIT.from_dir(d).decode(tok), tiny.decode(tok))


def test_a_decoder_file_that_repeats_tokenizer_weights_is_refused(tiny, tmp_path):
    d = tiny.save(tmp_path / "m")
    sd = tiny.tokenizer.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if k.startswith("decoder.")}, str(d / "decoder.safetensors"))
    with pytest.raises(ModelDirError, match=r"tokenizer.safetensors and decoder.safetensors both hold decoder\."):
        MaskGIT.from_dir(d)


def test_fp16_save_loads_into_fp32(tiny, tmp_path):
    d = tiny.save(tmp_path / "half", dtype=torch.float16)
    loaded = MaskGIT.from_dir(d)
    assert all(v.dtype == torch.float32 for v in loaded.state_dict().values() if v.is_floating_point())
    tok = tiny.encode(images(1))
    assert torch.allclose(loaded.transformer(tok), tiny.transformer(tok), atol=1e-2)
    assert model_hash(d) != model_hash(tiny.save(tmp_path / "full"))


def test_weak_transformer_round_trips_and_guides(tools, tmp_path):
    """A model directory may carry a weak transformer; `weak_guidance` runs the guidance's free
    pass on it, which changes the fill, and nothing else changes."""
    m = tools.make_tiny_model(0)
    m.set_weak_transformer(tools.make_tiny_model(1).transformer.state_dict())
    d = m.save(tmp_path / "m")
    assert (d / "weak_transformer.safetensors").is_file()
    loaded = MaskGIT.from_dir(d)
    assert loaded.has_weak_transformer
    tok = m.encode(images(1))
    assert torch.equal(loaded.weak_transformer(tok), m.weak_transformer(tok))
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(gamma="cosine", steps=4, guidance=2.0)
    weak_cfg = SamplerConfig(gamma="cosine", steps=4, guidance=2.0, weak_guidance=True)
    plain = InpaintPipeline(loaded).generate(x, known, cfg, seed=1)
    assert torch.equal(plain.tokens, InpaintPipeline(tools.make_tiny_model(0)).generate(x, known, cfg, seed=1).tokens)
    weak = InpaintPipeline(loaded).generate(x, known, weak_cfg, seed=1)
    assert torch.equal(weak.tokens, InpaintPipeline(m).generate(x, known, weak_cfg, seed=1).tokens)
    assert not torch.equal(weak.tokens, plain.tokens)
    assert torch.equal(weak.tokens[~weak.unknown], plain.tokens[~plain.unknown])
    # against a copy of itself, weak guidance is the plain context guidance
    same = tools.make_tiny_model(0)
    same.set_weak_transformer(same.transformer.state_dict())
    assert torch.equal(InpaintPipeline(same).generate(x, known, weak_cfg, seed=1).tokens, plain.tokens)
    # the hash tells the two directories apart; re-saving without it drops the stale file
    assert model_hash(d) != model_hash(tools.make_tiny_model(0).save(tmp_path / "plain"))
    tools.make_tiny_model(0).save(d)
    assert not (d / "weak_transformer.safetensors").exists()


def test_weak_guidance_without_a_weak_transformer_is_a_clear_error(tools, tmp_path):
    m = tools.make_tiny_model(0)
    with pytest.raises(ModelDirError, match="--no-weak-guidance"):
        InpaintPipeline(m).generate(images(1), hole_mask(1), SamplerConfig(guidance=1.0, weak_guidance=True))
    InpaintPipeline(m).generate(images(1), hole_mask(1), SamplerConfig(guidance=0.0, weak_guidance=True))  # unguided: not needed
    d = m.save(tmp_path / "m")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["sampler"] = {"guidance": 2.0, "weak_guidance": True}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelDirError, match="weak_guidance is on but .*weak_transformer.safetensors is missing"):
        MaskGIT.from_dir(d)
    other = tools.tiny_config()
    other["transformer"]["layers"] = 1
    save_file(MaskGIT(other).transformer.state_dict(), str(d / "weak_transformer.safetensors"))
    with pytest.raises(ModelDirError, match="weak_transformer.safetensors: does not match"):
        MaskGIT.from_dir(d)
    tok_only = tools.tiny_config()
    tok_only["transformer"] = None
    with pytest.raises(ModelDirError, match="needs a full model"):
        MaskGIT(tok_only).set_weak_transformer(m.transformer.state_dict())


@pytest.mark.parametrize("section,key,value,bad_file", [
    ("transformer", "dim", 48, "transformer.safetensors"),
    ("transformer", "layers", 3, "transformer.safetensors"),
    ("tokenizer", "latent_dim", 16, "tokenizer.safetensors"),
])
def test_config_that_differs_from_weights(tiny, tmp_path, section, key, value, bad_file):
    d = tiny.save(tmp_path / "m")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg[section][key] = value
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelDirError) as e:
        MaskGIT.from_dir(d)
    assert str(d / bad_file) in str(e.value)
    assert "\n" not in str(e.value)


def test_model_dir_errors_name_the_file(tiny, tmp_path):
    with pytest.raises(ModelDirError, match="not found"):
        MaskGIT.from_dir(tmp_path / "nowhere")
    d = tiny.save(tmp_path / "m")
    (d / "transformer.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelDirError, match="transformer.safetensors"):
        MaskGIT.from_dir(d)
    (d / "transformer.safetensors").unlink()
    with pytest.raises(ModelDirError, match="transformer.safetensors"):
        MaskGIT.from_dir(d)
    (d / "config.yaml").write_text("tokenizer: [unclosed\n")
    with pytest.raises(ModelDirError, match="config.yaml"):
        MaskGIT.from_dir(d)
    (d / "config.yaml").unlink()
    with pytest.raises(ModelDirError, match="config.yaml"):
        MaskGIT.from_dir(d)


@pytest.mark.parametrize("section,key", [("tokenizer", "latent_dims"), ("transformer", "depth"),
                                         ("sampler", "gama")])
def test_config_with_unknown_keys_is_a_model_dir_error(tiny, tmp_path, section, key):
    d = tiny.save(tmp_path / "m")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg.setdefault(section, {})[key] = 4
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelDirError, match=f"unknown {section} config keys.*{key}"):
        MaskGIT.from_dir(d)


def test_tokenizer_only_model_dir(tools, tmp_path):
    cfg = tools.tiny_config()
    cfg["transformer"] = None
    torch.manual_seed(1)
    m = MaskGIT(cfg)
    d = m.save(tmp_path / "tok")
    assert not (d / "transformer.safetensors").exists()
    with pytest.raises(ModelDirError, match="only a tokenizer"):
        MaskGIT.from_dir(d)
    loaded = MaskGIT.from_dir(d, require_transformer=False)
    x = images(1)
    assert torch.equal(loaded.encode(x), m.encode(x))
    with pytest.raises(ModelDirError, match="transformer"):
        InpaintPipeline(loaded).generate(x, hole_mask(1))


def test_load_strict_lists_every_problem(tiny):
    sd = copy.copy(tiny.transformer.state_dict())
    sd.pop("ln_f.weight")
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["pos_emb"] = torch.zeros(255, 32)
    with pytest.raises(WeightsError) as e:
        load_strict(MaskTransformer(tiny.transformer.cfg), sd, "somewhere.safetensors")
    msg = str(e.value)
    for s in ("somewhere.safetensors", "ln_f.weight", "head.bias", "extra.weight", "pos_emb", "(255, 32)"):
        assert s in msg


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    """Files written through a temporary name get what open() would give them, not mkstemp's 0600
    (shipped weights and user outputs must be readable by others when the umask allows it)."""
    import os

    from maskgit_inpaint.checkpoints import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert list(tmp_path.iterdir()) == [tmp_path / "a.txt"]


# ----------------------------------------------------------------------------- inference precision
def test_resolve_precision():
    from maskgit_inpaint.model import resolve_precision

    assert resolve_precision("auto", "cpu") == auto_precision("cpu")
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("mixed", "cpu") == "mixed"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu")


def _autocast_spy(module, seen: list):
    return module.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))


def test_auto_precision_follows_the_processors_bf16_support():
    from maskgit_inpaint.precision import CPU_INFERENCE, cpu_has_native_bf16

    assert cpu_has_native_bf16(frozenset({"avx2", "amx_bf16", "amx_tile"}), "AVX512")
    assert cpu_has_native_bf16(frozenset({"avx512f", "avx512_bf16"}), "AVX512")
    assert not cpu_has_native_bf16(frozenset({"avx2", "fma"}), "AVX2")  # e.g. an AMD EPYC without AVX-512
    assert not cpu_has_native_bf16(frozenset({"avx512f", "avx512bw"}), "AVX512")
    assert cpu_has_native_bf16(frozenset(), "AVX512_BF16")  # no /proc/cpuinfo: torch's view decides
    assert auto_precision("cpu") == (CPU_INFERENCE if cpu_has_native_bf16() else "fp32")  # inference
    assert auto_precision("cpu", "training") == ("bf16" if cpu_has_native_bf16() else "fp32")


AUTO_BF16 = auto_precision("cpu") == "bf16"


@pytest.mark.parametrize("precision,transformer_autocast", [("bf16", True), ("fp32", False), ("auto", AUTO_BF16)])
def test_precision_applies_to_the_transformer_and_decoder_not_the_encoder(tiny, precision, transformer_autocast):
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=4)
    seen_t, seen_enc, seen_dec = [], [], []
    hooks = [_autocast_spy(tiny.transformer, seen_t), _autocast_spy(tiny.tokenizer.encoder, seen_enc),
             _autocast_spy(tiny.tokenizer.decoder, seen_dec)]
    try:
        out = InpaintPipeline(tiny).generate(x, known, cfg, seed=1, precision=precision)
    finally:
        for h in hooks:
            h.remove()
    assert seen_t == [transformer_autocast] * 4
    assert seen_enc and not any(seen_enc)  # the encoder stays in fp32: known tokens never change
    assert seen_dec and all(d == transformer_autocast for d in seen_dec)
    ref = InpaintPipeline(tiny).generate(x, known, cfg, seed=1, precision="fp32")
    # the known tokens and pixels never depend on the precision
    assert torch.equal(out.tokens[~out.unknown], ref.tokens[~ref.unknown])
    k = known[:, None].expand_as(x)
    assert torch.equal(out.images[k], x[k])
    assert out.images.dtype == torch.float32 and (out.tokens[out.unknown] < tiny.codebook_size).all()
    if not transformer_autocast:
        assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.images, ref.images)


def test_bf16_keeps_the_output_head_in_fp32(tiny):
    """bf16 logits would be rounded to about 0.1 at their size, an error guidance multiplies by
    1 + w: under bf16 the blocks run in bf16 and the head in fp32."""
    seen = {}  # (a pre-hook returning something would replace the module's input: update() gives None)
    net = tiny.transformer
    hooks = [net.blocks[0].register_forward_pre_hook(lambda m, a: seen.update(block=torch.is_autocast_enabled("cpu"))),
             net.head.register_forward_pre_hook(lambda m, a: seen.update(head=(torch.is_autocast_enabled("cpu"),
                                                                              a[0].dtype)))]
    try:
        probe = torch.full((2, tiny.latent_size ** 2), tiny.codebook_size)
        out = tiny.logits_fn("bf16")(probe, "compact")
    finally:
        for h in hooks:
            h.remove()
    assert seen == {"block": True, "head": (False, torch.float32)} and out.dtype == torch.float32


def test_mixed_precision_runs_only_the_weak_transformers_pass_in_bf16(tools):
    m = tools.make_tiny_model(0)
    m.set_weak_transformer(tools.make_tiny_model(1).transformer.state_dict())
    x, known = images(2), hole_mask(2)
    seen_t, seen_w = [], []
    hooks = [_autocast_spy(m.transformer, seen_t), _autocast_spy(m.weak_transformer, seen_w)]
    try:
        out = InpaintPipeline(m).generate(x, known, SamplerConfig(steps=4, guidance=2.0, weak_guidance=True), seed=1, precision="mixed")
    finally:
        for h in hooks:
            h.remove()
    assert seen_t == [False] * 4 and seen_w == [True] * 4
    assert (out.tokens[out.unknown] < m.codebook_size).all()
    # without the weak pass nothing runs in bf16: the tokens are fp32's, bit for bit
    for cfg in (SamplerConfig(steps=4), SamplerConfig(steps=4, guidance=2.0)):
        assert torch.equal(InpaintPipeline(m).generate(x, known, cfg, seed=1, precision="mixed").tokens,
                           InpaintPipeline(m).generate(x, known, cfg, seed=1, precision="fp32").tokens)


def test_the_pipelines_precision_is_the_default_of_its_calls(tiny):
    seen = []
    h = _autocast_spy(tiny.transformer, seen)
    try:
        pipe = InpaintPipeline(tiny, tiny.default_settings.override(precision="bf16"))
        pipe.generate(images(1), hole_mask(1), SamplerConfig(steps=2), seed=0)
    finally:
        h.remove()
    assert seen == [True, True]
    assert tiny.default_settings.precision == "auto"  # nothing was written into the model


# ----------------------------------------------------------------------------- mask-conditioned decoder
def conditioned_model(seed: int = 0, scale: float = 0.5) -> MaskGIT:
    """The tiny model with a mask-conditioned decoder whose injections are non-zero."""
    from maskgit_inpaint.config import preset

    cfg = preset("tiny")
    cfg["tokenizer"]["dec_cond"] = True
    torch.manual_seed(seed)
    model = MaskGIT(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in model.tokenizer.decoder.inject:
            conv.weight.copy_(scale * torch.randn(conv.weight.shape, generator=g))
    return model


def test_conditioned_decoder_starts_as_the_plain_decoder_it_is_made_from(tiny):
    cfg = TokenizerConfig.from_dict({**tiny.config["tokenizer"], "dec_cond": True})
    vq = VQGAN(cfg).eval()
    missing, unexpected = vq.load_state_dict(tiny.tokenizer.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("decoder.cond.", "decoder.inject.")) for k in missing)
    x, known = tiny.normalize(images(2)), hole_mask(2)
    idx = tiny.tokenizer.encode(x)
    want = tiny.tokenizer.decode(idx)
    assert torch.equal(vq.decode(idx), want)
    assert torch.equal(vq.decode(idx, VQGAN.condition(x, known)), want)


def test_conditioned_decoder_sees_the_known_pixels_only():
    model = conditioned_model()
    assert model.conditioned_decoder
    x, known = images(2), hole_mask(2)
    idx = model.encode(x)
    y = x.clone()
    hole = ~known[:, None].expand_as(x)
    y[hole] = torch.rand(int(hole.sum()), generator=torch.Generator().manual_seed(1))
    a, b = model.decode(idx, x, known), model.decode(idx, y, known)
    assert torch.equal(a, b)  # what the hole held does not matter
    z = x.clone()
    z[~hole] = 1 - z[~hole]
    assert not torch.allclose(model.decode(idx, z, known), a)  # the known pixels do
    nothing = torch.zeros_like(known)
    assert torch.allclose(model.decode(idx), model.decode(idx, x, nothing))  # no cond = nothing known
    assert not torch.allclose(model.decode(idx), a)
    with pytest.raises(ValueError, match="known"):
        model.decode(idx, x)


def test_inpaint_decodes_with_the_known_pixels_when_the_decoder_is_conditioned():
    model = conditioned_model()
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=3)
    raw = InpaintPipeline(model).generate(x, known, cfg, seed=4, composite=False, return_steps=True)
    assert torch.allclose(raw.images, model.decode(raw.tokens, x, known, precision="auto"))
    assert not torch.allclose(raw.images, model.decode(raw.tokens, precision="auto"))
    assert torch.allclose(raw.step_images[-1], raw.images)
    y = x.clone()
    y[~known[:, None].expand_as(x)] = 0.123
    assert torch.equal(InpaintPipeline(model).generate(y, known, cfg, seed=4, composite=False).images, raw.images)


def test_conditioned_decoder_round_trips_through_a_model_dir(tmp_path):
    model = conditioned_model(seed=2)
    model.save(tmp_path / "m")
    back = MaskGIT.from_dir(tmp_path / "m")
    assert back.conditioned_decoder
    x, known = images(1), hole_mask(1)
    idx = model.encode(x)
    assert torch.equal(back.decode(idx, x, known), model.decode(idx, x, known))


def test_decode_known_off_decodes_a_conditioned_decoder_from_the_tokens_alone(tmp_path):
    """decode_known: false (config.yaml, or a per-call setting) keeps the known pixels from the
    decoder, in plain decodes and in inpainting alike, and survives a save."""
    model = conditioned_model(seed=3)
    x, known = images(2), hole_mask(2)
    cfg = SamplerConfig(steps=3)
    with_known = InpaintPipeline(model).generate(x, known, cfg, seed=4, composite=False)
    model.config = {**model.config, "decode_known": False}
    model.save(tmp_path / "m")
    back = MaskGIT.from_dir(tmp_path / "m")
    assert back.default_settings.decode_known is False
    idx = back.encode(x)
    assert torch.equal(back.decode(idx, x, known), back.decode(idx))
    raw = InpaintPipeline(back).generate(x, known, cfg, seed=4, composite=False, return_steps=True)
    assert torch.equal(raw.tokens, with_known.tokens)  # the tokens do not depend on it
    assert torch.equal(raw.images, back.decode(raw.tokens, precision="auto"))
    assert not torch.allclose(raw.images, with_known.images)
    assert torch.equal(raw.step_images[-1], raw.images)
    on = InpaintPipeline(back).generate(x, known, cfg, seed=4, composite=False, decode_known=True)
    assert torch.equal(on.images, with_known.images)


def test_decode_known_must_be_a_boolean(tmp_path):
    conditioned_model().save(tmp_path / "m")
    cfg = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    cfg["decode_known"] = "no"
    (tmp_path / "m" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelDirError, match=r"config\.yaml: decode_known must be true or false, got 'no'"):
        MaskGIT.from_dir(tmp_path / "m")


@pytest.mark.parametrize("change, match", [({"dec_cond_width": 0}, "dec_cond_width"),
                                           ({"dec_cond_levels": -1}, "dec_cond_levels")])
def test_conditioned_decoder_settings_are_checked(tools, change, match):
    cfg = tools.tiny_config()["tokenizer"]
    with pytest.raises(ValueError, match=match):
        TokenizerConfig.from_dict({**cfg, "dec_cond": True, **change}).validate()


@pytest.mark.parametrize("levels, sizes", [(0, [16, 32, 64]), (1, [64]), (2, [32, 64])])
def test_conditioned_decoder_feeds_only_the_finest_levels_asked_for(tiny, levels, sizes):
    """dec_cond_levels = k feeds the k finest resolutions (0: all), still from an exact zero start."""
    cfg = TokenizerConfig.from_dict({**tiny.config["tokenizer"], "dec_cond": True, "dec_cond_levels": levels})
    vq = VQGAN(cfg).eval()
    vq.load_state_dict(tiny.tokenizer.state_dict(), strict=False)
    seen = []
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1])) for conv in vq.decoder.inject]
    x, known = tiny.normalize(images(1)), hole_mask(1)
    idx = tiny.tokenizer.encode(x)
    out = vq.decode(idx, VQGAN.condition(x, known))
    for h in hooks:
        h.remove()
    assert seen == sizes
    assert torch.equal(out, tiny.tokenizer.decode(idx))
