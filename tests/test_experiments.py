"""Experiments end to end on a tiny random model: sweep, fid-curve, reconstruction FID.

The pixels are noise; what is tested is that every combination runs, the numbers are the ones the
standalone tools give, and every result file records its provenance."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit_inpaint.cli import main
from maskgit_inpaint.config import merge, preset
from maskgit_inpaint.evaluation import default_inception_path, frechet_distance, inception_features
from maskgit_inpaint.precision import auto_precision

pytestmark = pytest.mark.skipif(default_inception_path() is None, reason="FID Inception weights not installed")

N_IMAGES = 6


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory, tools):
    root = tmp_path_factory.mktemp("evalset")
    rng = np.random.default_rng(3)
    for i in range(N_IMAGES):
        tools.write_png(tools.synthetic_image(rng), root / "images" / f"img{i}.png")
        tools.write_mask(tools.synthetic_mask(rng), root / "masks" / f"img{i}.png")
    return root / "images", root / "masks"


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory, tiny_model_dir, eval_set):
    out = tmp_path_factory.mktemp("sweep")
    images, masks = eval_set
    rc = main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
               "--out", str(out), "--gamma", "linear,sine_linear", "--steps", "2,4", "--sweet-spot", "2,4",
               "--seeds", "0,1", "--device", "cpu"])
    assert rc == 0
    return out


def test_sweep_runs_every_valid_combination(sweep_out):
    rows = list(csv.DictReader(open(sweep_out / "sweep.csv")))
    # (T=2: stop 2), (T=4: stops 2 and 4); stop 4 > T=2 is skipped -> 3 settings x 2 schedules x 2 seeds
    combos = {(r["gamma"], r["steps"], r["sweet_spot"]) for r in rows}
    assert combos == {(g, t, s) for g in ("linear", "sine_linear") for t, s in (("2", "2"), ("4", "2"), ("4", "4"))}
    assert len(rows) == 12
    assert {r["seed"] for r in rows} == {"0", "1"}
    for r in rows:
        assert float(r["fid_raw"]) > 0 and float(r["fid_composite"]) >= 0 and float(r["s_per_image"]) > 0
        # pasting the known pixels back can only bring the images closer to the ground truth here
        assert float(r["fid_composite"]) < float(r["fid_raw"])


def test_sweep_summary_is_mean_and_std_over_seeds(sweep_out):
    rec = json.loads((sweep_out / "sweep.json").read_text())
    rows = rec["runs"]
    for s in rec["summary"]:
        vals = [r["fid_raw"] for r in rows if (r["gamma"], r["steps"], r["sweet_spot"]) ==
                (s["gamma"], s["steps"], s["sweet_spot"])]
        assert s["seeds"] == 2
        assert s["fid_raw_mean"] == pytest.approx(np.mean(vals))
        assert s["fid_raw_std"] == pytest.approx(np.std(vals, ddof=1))
    md = (sweep_out / "sweep.md").read_text()
    assert md.count("| linear |") == 3 and md.count("| sine_linear |") == 3 and "+-" in md
    assert (sweep_out / "sweep.png").stat().st_size > 1000


def test_sweep_records_command_config_model_hash_and_seeds(sweep_out, tiny_model_dir):
    from maskgit_inpaint.model import model_hash

    rec = json.loads((sweep_out / "sweep.json").read_text())
    assert rec["model_hash"] == model_hash(tiny_model_dir)
    assert rec["seeds"] == [0, 1]
    assert "sweep" in rec["command"]
    assert rec["config"]["transformer"]["dim"] == preset("tiny")["transformer"]["dim"]
    assert rec["model_hash"] in (sweep_out / "sweep.md").read_text()
    assert all(r["model_hash"] == rec["model_hash"] for r in csv.DictReader(open(sweep_out / "sweep.csv")))
    # --precision auto is resolved for this processor, and every result says so
    auto = auto_precision("cpu")
    assert rec["precision"] == auto and all(r["precision"] == auto for r in rec["runs"])
    assert auto in (sweep_out / "sweep.md").read_text()
    # so does the composite's blend (the model's default: seamless)
    assert rec["blend"] == "poisson" and all(r["blend"] == "poisson" for r in rec["runs"])
    assert "blend poisson" in (sweep_out / "sweep.md").read_text()


def test_sweep_fid_equals_inpaint_then_evaluate(sweep_out, tiny_model_dir, eval_set, tmp_path):
    """One sweep cell reproduces `maskgit inpaint --no-composite` followed by the FID of the outputs."""
    images, masks = eval_set
    out = tmp_path / "inpainted"
    assert main(["inpaint", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(out), "--gamma", "linear", "--steps", "4", "--sweet-spot", "2", "--seed", "1",
                 "--no-composite", "--device", "cpu"]) == 0
    from maskgit_inpaint.evaluation import load_evaluation_folders

    pred, gt, _, _, _ = load_evaluation_folders(out, images)
    expected = frechet_distance(inception_features(pred), inception_features(gt))
    row = next(r for r in csv.DictReader(open(sweep_out / "sweep.csv"))
               if (r["gamma"], r["steps"], r["sweet_spot"], r["seed"]) == ("linear", "4", "2", "1"))
    assert float(row["fid_raw"]) == pytest.approx(expected, abs=1e-3)


def test_sweep_with_no_valid_combination_fails_clearly(tiny_model_dir, eval_set, tmp_path, capsys):
    images, masks = eval_set
    rc = main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
               "--out", str(tmp_path), "--steps", "2", "--sweet-spot", "3", "--seeds", "0", "--device", "cpu"])
    assert rc == 2 and "no valid combination" in capsys.readouterr().err
    rc = main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
               "--out", str(tmp_path), "--gamma", "nope", "--seeds", "0", "--device", "cpu"])
    assert rc == 2 and "nope" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [("--choice-temperature", "--token-temperature"),
                                   ("--temperature", "--sample-temperature")])  # the old names still work
def test_sweep_over_token_temperatures(tiny_model_dir, eval_set, tmp_path, capsys, flags):
    """--token-temperature is a sweep axis: at 0 (argmax) with no Gumbel noise the result no
    longer depends on the seed; at 1 the draw does."""
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path), "--gamma", "linear", "--steps", "2", flags[0], "0",
                 flags[1], "0,1", "--seeds", "0,1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert ("deprecated" in err) == (flags[0] == "--temperature")
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert {float(r["choice_temperature"]) for r in rows} == {0.0}
    by_t = {t: [float(r["fid_raw"]) for r in rows if float(r["token_temperature"]) == t] for t in (0.0, 1.0)}
    assert len(by_t[0.0]) == 2 and len(by_t[1.0]) == 2
    assert by_t[0.0][0] == by_t[0.0][1]
    assert by_t[1.0][0] != by_t[1.0][1]
    md = (tmp_path / "sweep.md").read_text()
    assert "| token temp |" in md and md.count("| linear |") == 2


def test_sweep_over_guidance(tiny_model_dir, eval_set, tmp_path):
    """--guidance is a sweep axis; each row records its scale and the table has a guidance column."""
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path), "--gamma", "linear", "--steps", "2", "--guidance", "0,2",
                 "--seeds", "0", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert sorted(float(r["guidance"]) for r in rows) == [0.0, 2.0]
    assert rows[0]["fid_raw"] != rows[1]["fid_raw"]
    md = (tmp_path / "sweep.md").read_text()
    assert "| guidance |" in md and md.count("| linear |") == 2


def test_sweep_over_guidance_steps(tiny_model_dir, eval_set, tmp_path):
    """--guidance-steps is a sweep axis ('all' = every step); rows record how many steps were
    guided and the table has a column for it."""
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path), "--gamma", "linear", "--steps", "3", "--guidance", "2",
                 "--guidance-steps", "1,all", "--seeds", "0", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert sorted(int(r["guidance_steps"]) for r in rows) == [1, 3]
    assert rows[0]["fid_raw"] != rows[1]["fid_raw"]
    md = (tmp_path / "sweep.md").read_text()
    assert "| guided steps |" in md and md.count("| linear |") == 2


def test_sweep_over_guidance_schedules(tiny_model_dir, eval_set, tmp_path):
    """--guidance-schedule is a sweep axis; rows record it and the table marks a ramped scale."""
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path), "--gamma", "linear", "--steps", "3", "--guidance", "2",
                 "--guidance-schedule", "constant,linear", "--seeds", "0", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [r["guidance_schedule"] for r in rows] == ["constant", "linear"]
    assert rows[0]["fid_raw"] != rows[1]["fid_raw"]
    md = (tmp_path / "sweep.md").read_text()
    assert "| guidance schedule |" in md and "| constant |" in md and md.count("| linear |") == 3


def test_sweep_over_token_thresholds(tiny_model_dir, eval_set, tmp_path, capsys):
    """--token-threshold is a sweep axis (the masks' stray hole pixels then keep their tokens);
    rows record it and the table has a column for it; a threshold of 1 is refused."""
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path / "a"), "--gamma", "linear", "--steps", "2", "--token-threshold", "0,0.5",
                 "--seeds", "0", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "a" / "sweep.csv")))
    assert [float(r["token_threshold"]) for r in rows] == [0.0, 0.5]
    assert rows[0]["fid_raw"] != rows[1]["fid_raw"]
    md = (tmp_path / "a" / "sweep.md").read_text()
    assert "| token threshold |" in md and "| 0.5 |" in md and md.count("| linear |") == 2
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path / "b"), "--token-threshold", "1", "--seeds", "0", "--device", "cpu"]) == 2
    assert "token_threshold must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_sweep_over_weak_guidance(weak_model_dir, tiny_model_dir, eval_set, tmp_path, capsys):
    """--weak-guidance on,off is a sweep axis, shown in the guidance column; a model without a
    weak transformer refuses it before any work."""
    images, masks = eval_set
    common = ["--images", str(images), "--masks", str(masks), "--gamma", "linear", "--steps", "2", "--guidance", "2",
              "--seeds", "0", "--device", "cpu"]
    assert main(["sweep", "--model", str(weak_model_dir), "--out", str(tmp_path / "a"), "--weak-guidance", "off,on",
                 *common]) == 0
    rows = list(csv.DictReader(open(tmp_path / "a" / "sweep.csv")))
    assert [r["weak_guidance"] for r in rows] == ["False", "True"]
    assert rows[0]["fid_raw"] != rows[1]["fid_raw"]
    md = (tmp_path / "a" / "sweep.md").read_text()
    assert "| weak guidance |" in md and "| on |" in md and "| off |" in md
    capsys.readouterr()
    assert main(["sweep", "--model", str(weak_model_dir), "--out", str(tmp_path / "b"), "--weak-guidance", "maybe",
                 *common]) == 2
    assert "--weak-guidance: 'maybe' is not a valid on/off value" in capsys.readouterr().err
    assert main(["sweep", "--model", str(tiny_model_dir), "--out", str(tmp_path / "c"), "--weak-guidance", "on",
                 *common]) == 2
    assert "weak guidance needs a weak transformer" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_sweep_rejects_an_unknown_guidance_schedule(tiny_model_dir, eval_set, tmp_path, capsys):
    images, masks = eval_set
    assert main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path / "s"), "--guidance-schedule", "constant,rising", "--seeds", "0",
                 "--device", "cpu"]) == 2
    assert "guidance_schedule must be one of constant, linear, got 'rising'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_token_cache_key_holds_exactly_the_settings_that_change_tokens(tiny_model_dir, eval_set):
    """Every InpaintSettings field that can change the sampled tokens is in the key; the ones
    that act after sampling (blend, decode known) are not, so changing them only decodes again."""
    from dataclasses import replace

    from maskgit_inpaint.experiments import TokenCache, load_eval_set
    from maskgit_inpaint.model import load_model

    model, _ = load_model(str(tiny_model_dir), "cpu")
    images, masks = eval_set
    names, images01, known = load_eval_set(str(images), str(masks), model.image_size)
    cache = TokenCache("unused", model, images01, known, names, 8)
    cfg = replace(model.default_settings, guidance=2.0)
    assert cache.key(cfg, 0) != cache.key(replace(cfg, guidance_steps=2), 0)
    assert cache.key(replace(cfg, guidance_steps=2), 0) != cache.key(replace(cfg, guidance_steps=3), 0)
    for change in ({"guidance_schedule": "linear"}, {"token_threshold": 0.25}, {"weak_guidance": True},
                   {"hole_fill": "mean"}, {"precision": "fp32" if auto_precision("cpu") == "bf16" else "bf16"},
                   {"token_temperature": 0.5}):
        assert cache.key(cfg, 0) != cache.key(replace(cfg, **change), 0), change
    assert cache.key(cfg, 0) != cache.key(cfg, 1)
    for change in ({"blend": "paste"}, {"decode_known": False}):
        assert cache.key(cfg, 0) == cache.key(replace(cfg, **change), 0), change
    # "auto" is hashed as what it resolves to on this device
    assert cache.key(replace(cfg, precision="auto"), 0) == cache.key(replace(cfg, precision=auto_precision("cpu")), 0)


def test_token_cache_key_depends_on_the_weak_transformer(weak_model_dir, eval_set):
    """Two models that differ only in their weak transformer sample different tokens under weak
    guidance: they must not share cache entries."""
    from dataclasses import replace

    from maskgit_inpaint.experiments import TokenCache, load_eval_set
    from maskgit_inpaint.model import load_model

    a, _ = load_model(str(weak_model_dir), "cpu")
    b, _ = load_model(str(weak_model_dir), "cpu")
    b.set_weak_transformer({k: v + 0.01 for k, v in b.weak_transformer.state_dict().items()})
    images, masks = eval_set
    names, images01, known = load_eval_set(str(images), str(masks), a.image_size)
    cfg = replace(a.default_settings, guidance=2.0, weak_guidance=True)
    keys = [TokenCache("unused", m, images01, known, names, 8).key(cfg, 0) for m in (a, b)]
    assert keys[0] != keys[1]


def test_sweep_temperatures_default_to_the_model_config(tiny_model_dir, eval_set, tmp_path):
    import shutil

    import yaml

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = yaml.safe_load((model / "config.yaml").read_text())
    cfg["sampler"] = dict(cfg.get("sampler") or {}, choice_temperature=2.0, temperature=0.5, guidance=1.5)
    (model / "config.yaml").write_text(yaml.safe_dump(cfg))
    images, masks = eval_set
    assert main(["sweep", "--model", str(model), "--images", str(images), "--masks", str(masks),
                 "--out", str(tmp_path / "out"), "--gamma", "cosine", "--steps", "2", "--seeds", "0",
                 "--device", "cpu"]) == 0
    (run,) = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    # an older config's `temperature` is the token temperature
    assert run["choice_temperature"] == 2.0 and run["token_temperature"] == 0.5 and run["guidance"] == 1.5


# ----------------------------------------------------------------------------- reconstruction FID
def test_evaluate_reconstruct_reports_fid_and_codebook(tiny_model_dir, eval_set, tmp_path, capsys):
    from maskgit_inpaint.experiments import load_images, reconstruct_all, to_uint8
    from maskgit_inpaint.model import MaskGIT, model_hash

    images, _ = eval_set
    js = tmp_path / "rec.json"
    assert main(["evaluate", "--reconstruct", str(tiny_model_dir), "--images", str(images),
                 "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "codebook:" in text and "FID" in text
    rec = json.loads(js.read_text())
    m = rec["metrics"]
    model = MaskGIT.from_dir(tiny_model_dir)
    _, x = load_images(images, 64)
    r, toks = reconstruct_all(model, x)
    assert m["fid"] == pytest.approx(frechet_distance(inception_features(to_uint8(r)),
                                                      inception_features(to_uint8(x))), abs=1e-3)
    assert m["codebook_used"] == len(torch.unique(toks)) and m["codebook_size"] == model.codebook_size
    assert rec["model_hash"] == model_hash(tiny_model_dir)


def test_evaluate_without_pred_or_reconstruct_says_what_is_needed(tmp_path, capsys):
    assert main(["evaluate", "--gt", str(tmp_path)]) == 2
    assert "--reconstruct" in capsys.readouterr().err


# ----------------------------------------------------------------------------- fid-curve
def _write_images(folder: Path, n: int, tools, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        tools.write_png(tools.synthetic_image(rng), folder / f"im{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def two_epoch_runs(tmp_path_factory, tools):
    from maskgit_inpaint.training import export_run, train_tokenizer, train_transformer

    root = tmp_path_factory.mktemp("curve")
    data = _write_images(root / "data", 16, tools, seed=9)
    common = {"precision": "32-true", "log_every": 1, "max_epochs": 2, "batch_size": 8}
    tok_cfg = merge(preset("tiny"), {"data": {"train": str(data), "val_fraction": 0.0},
                                     "tokenizer_training": common | {"gan_weight": 0}})
    tok_run = train_tokenizer(tok_cfg, root / "tok_run", accelerator="cpu")
    tok_dir = export_run(tok_run, root / "tok", which="last")
    tf_cfg = merge(preset("tiny"), {"data": {"train": str(data), "val_fraction": 0.0},
                                    "transformer_training": common | {"flip": False}})
    tf_run = train_transformer(tf_cfg, root / "tf_run", tok_dir, accelerator="cpu")
    return tok_run, tf_run


def test_fid_curve_of_a_transformer_run(two_epoch_runs, eval_set, tmp_path):
    from maskgit_inpaint.compositing import paste_known
    from maskgit_inpaint.experiments import inpaint_all, load_eval_set, to_uint8
    from maskgit_inpaint.training import model_from_checkpoint

    _, run = two_epoch_runs
    images, masks = eval_set
    out = tmp_path / "curve"
    assert main(["fid-curve", str(run), "--images", str(images), "--masks", str(masks), "--out", str(out),
                 "--steps", "3", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out / "fid_curve.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and [r["checkpoint"] for r in rows] == [
        "epoch0000.ckpt", "epoch0001.ckpt"]
    # the second row is the FID of that checkpoint's model, computed independently
    model, _ = model_from_checkpoint(run, run / "checkpoints" / "epoch0001.ckpt")
    names, x, known = load_eval_set(images, masks, 64)
    from dataclasses import replace

    raw, _ = inpaint_all(model, x, known, replace(model.default_settings, steps=3, sweet_spot=None), 0)
    gt_f = inception_features(to_uint8(x))
    assert float(rows[1]["fid_raw"]) == pytest.approx(frechet_distance(inception_features(to_uint8(raw)), gt_f),
                                                      abs=1e-3)
    comp = paste_known(raw, x, known)
    assert float(rows[1]["fid_composite"]) == pytest.approx(
        frechet_distance(inception_features(to_uint8(comp)), gt_f), abs=1e-3)
    rec = json.loads((out / "fid_curve.json").read_text())
    assert rec["kind"] == "transformer" and rec["seeds"] == [0] and rec["sampler"]["steps"] == 3
    assert "fid-curve" in rec["command"] and rec["config"]["kind"] == "transformer"
    assert (out / "fid_curve.png").stat().st_size > 1000


def test_fid_curve_takes_the_sampling_temperature(two_epoch_runs, eval_set, tmp_path):
    _, run = two_epoch_runs
    images, masks = eval_set
    assert main(["fid-curve", str(run), "--images", str(images), "--masks", str(masks), "--out", str(tmp_path),
                 "--steps", "2", "--sample-temperature", "0", "--temperature", "0", "--device", "cpu"]) == 0
    rec = json.loads((tmp_path / "fid_curve.json").read_text())
    assert rec["sampler"]["token_temperature"] == 0 and rec["sampler"]["choice_temperature"] == 0
    assert rec["blend"] == "poisson" and rec["hole_fill"] == "harmonic"  # the defaults, recorded


def test_fid_curve_records_the_blend_and_refuses_a_bad_one_before_any_work(two_epoch_runs, eval_set, tmp_path):
    from maskgit_inpaint.experiments import run_fid_curve

    _, run = two_epoch_runs
    images, masks = eval_set
    assert main(["fid-curve", str(run), "--images", str(images), "--masks", str(masks), "--out", str(tmp_path),
                 "--steps", "2", "--blend", "paste", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "fid_curve.json").read_text())["blend"] == "paste"
    for kwargs in ({"blend": "feather"}, {"hole_fill": "zeros"}):
        with pytest.raises(ValueError, match="must be one of"):
            run_fid_curve(run, images, masks, tmp_path / "bad", settings=kwargs)
        assert not (tmp_path / "bad").exists()


def test_fid_curve_of_a_tokenizer_run_is_reconstruction_fid(two_epoch_runs, eval_set, tmp_path):
    run, _ = two_epoch_runs
    images, _ = eval_set
    assert main(["fid-curve", str(run), "--images", str(images), "--out", str(tmp_path), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "fid_curve.csv")))
    assert len(rows) == 2 and all(float(r["fid_reconstruction"]) > 0 for r in rows)
    assert all(int(r["codebook_used"]) >= 1 for r in rows)


def test_fid_curve_of_a_transformer_run_needs_masks(two_epoch_runs, eval_set, capsys):
    _, run = two_epoch_runs
    images, _ = eval_set
    assert main(["fid-curve", str(run), "--images", str(images), "--device", "cpu"]) == 2
    assert "--masks" in capsys.readouterr().err


def _perturbed_copy(model_dir: Path, dest: Path, prefix: str) -> Path:
    """A copy of the model with one tokenizer tensor whose name starts with `prefix` changed."""
    import shutil

    from maskgit_inpaint.checkpoints import load_safetensors, save_safetensors

    shutil.copytree(model_dir, dest)
    sd = load_safetensors(dest / "tokenizer.safetensors")
    name = next(k for k in sorted(sd) if k.startswith(prefix) and sd[k].is_floating_point() and sd[k].numel() > 1)
    sd[name] = sd[name] + 0.5 * torch.randn(sd[name].shape, generator=torch.Generator().manual_seed(0))
    save_safetensors(sd, dest / "tokenizer.safetensors")
    return dest


def test_sweep_token_cache_reuses_tokens_only_when_they_stay_the_same(tiny_model_dir, eval_set, tmp_path):
    """--token-cache: a second sweep decodes the stored tokens (same FIDs); after a decoder change it
    gives exactly what a sweep without the cache gives; an encoder change or a new seed samples again."""
    images, masks = eval_set
    cache = tmp_path / "cache"

    def sweep(model, out, seeds="0,1", cached=True):
        argv = ["sweep", "--model", str(model), "--images", str(images), "--masks", str(masks),
                "--out", str(tmp_path / out), "--gamma", "linear", "--steps", "2", "--seeds", seeds,
                "--device", "cpu"] + (["--token-cache", str(cache)] if cached else [])
        assert main(argv) == 0
        return list(csv.DictReader(open(tmp_path / out / "sweep.csv")))

    first = sweep(tiny_model_dir, "a")
    assert [r["tokens_cached"] for r in first] == ["False", "False"]
    assert len(list(cache.glob("*.safetensors"))) == 2
    again = sweep(tiny_model_dir, "b")
    assert [r["tokens_cached"] for r in again] == ["True", "True"]
    assert [(r["fid_raw"], r["fid_composite"]) for r in again] == [(r["fid_raw"], r["fid_composite"]) for r in first]
    assert "2 of 2 runs decoded tokens sampled by an earlier sweep" in (tmp_path / "b" / "sweep.md").read_text()

    new_decoder = _perturbed_copy(tiny_model_dir, tmp_path / "dec", "decoder.")
    dec_cached = sweep(new_decoder, "c")
    dec_fresh = sweep(new_decoder, "d", cached=False)
    assert [r["tokens_cached"] for r in dec_cached] == ["True", "True"]
    assert [r["fid_raw"] for r in dec_cached] != [r["fid_raw"] for r in first]
    for c, f in zip(dec_cached, dec_fresh):
        assert float(c["fid_raw"]) == pytest.approx(float(f["fid_raw"]), abs=1e-3)
        assert float(c["fid_composite"]) == pytest.approx(float(f["fid_composite"]), abs=1e-3)

    new_encoder = _perturbed_copy(tiny_model_dir, tmp_path / "enc", "encoder.")
    assert [r["tokens_cached"] for r in sweep(new_encoder, "e")] == ["False", "False"]
    assert [r["tokens_cached"] for r in sweep(tiny_model_dir, "f", seeds="1,2")] == ["True", "False"]


def _conditioned_copy(model_dir: Path, dest: Path) -> Path:
    """A copy of the model whose decoder also sees the known pixels (non-zero injections)."""
    import shutil

    import yaml

    from maskgit_inpaint.checkpoints import load_safetensors, save_safetensors
    from maskgit_inpaint.tokenizer import TokenizerConfig, VQGAN

    shutil.copytree(model_dir, dest)
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg["tokenizer"]["dec_cond"] = True
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    sd = load_safetensors(dest / "tokenizer.safetensors")
    torch.manual_seed(0)
    for k, v in VQGAN(TokenizerConfig.from_dict(cfg["tokenizer"])).state_dict().items():
        if k.startswith(("decoder.cond.", "decoder.inject.")):
            sd[k] = v + 0.3 * torch.randn(v.shape) if k.startswith("decoder.inject.") else v
    save_safetensors(sd, dest / "tokenizer.safetensors")
    return dest


def test_sweep_token_cache_serves_a_decoder_that_gains_conditioning(tiny_model_dir, eval_set, tmp_path):
    """Adding a mask-conditioned decoder changes no token, so the cache still serves the model, and
    its decodes then see the known pixels exactly as in a sweep that samples afresh."""
    images, masks = eval_set
    cache = tmp_path / "cache"

    def sweep(model, out, cached=True):
        argv = ["sweep", "--model", str(model), "--images", str(images), "--masks", str(masks),
                "--out", str(tmp_path / out), "--gamma", "linear", "--steps", "2", "--seeds", "0",
                "--device", "cpu"] + (["--token-cache", str(cache)] if cached else [])
        assert main(argv) == 0
        return list(csv.DictReader(open(tmp_path / out / "sweep.csv")))

    plain = sweep(tiny_model_dir, "a")
    cond = _conditioned_copy(tiny_model_dir, tmp_path / "cond")
    cached, fresh = sweep(cond, "b"), sweep(cond, "c", cached=False)
    assert [r["tokens_cached"] for r in cached] == ["True"]
    assert cached[0]["fid_raw"] != plain[0]["fid_raw"]
    assert float(cached[0]["fid_raw"]) == pytest.approx(float(fresh[0]["fid_raw"]), abs=1e-3)
    assert float(cached[0]["fid_composite"]) == pytest.approx(float(fresh[0]["fid_composite"]), abs=1e-3)


def test_sweep_decode_known_off_decodes_the_cached_tokens_alone(tiny_model_dir, eval_set, tmp_path):
    """--decode-known off changes no token (the cache serves it) but keeps the known pixels from the
    decoder, and the sweep's records say which decode they measured."""
    images, masks = eval_set
    cond = _conditioned_copy(tiny_model_dir, tmp_path / "cond")

    def sweep(out, *extra):
        argv = ["sweep", "--model", str(cond), "--images", str(images), "--masks", str(masks),
                "--out", str(tmp_path / out), "--gamma", "linear", "--steps", "2", "--seeds", "0",
                "--device", "cpu", "--token-cache", str(tmp_path / "cache"), *extra]
        assert main(argv) == 0
        return list(csv.DictReader(open(tmp_path / out / "sweep.csv")))

    on, off = sweep("on"), sweep("off", "--decode-known", "off")
    assert [r["tokens_cached"] for r in off] == ["True"]
    assert (on[0]["decode_known"], off[0]["decode_known"]) == ("True", "False")
    assert off[0]["fid_raw"] != on[0]["fid_raw"]
    assert json.loads((tmp_path / "off" / "sweep.json").read_text())["decode_known"] is False
    assert "decode known off" in (tmp_path / "off" / "sweep.md").read_text()
    assert "decode known on" in (tmp_path / "on" / "sweep.md").read_text()


def test_sweep_token_cache_must_be_a_folder(tiny_model_dir, eval_set, tmp_path, capsys):
    images, masks = eval_set
    (tmp_path / "file").write_text("x")
    rc = main(["sweep", "--model", str(tiny_model_dir), "--images", str(images), "--masks", str(masks),
               "--out", str(tmp_path / "o"), "--gamma", "linear", "--steps", "2", "--seeds", "0",
               "--device", "cpu", "--token-cache", str(tmp_path / "file")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_sweep_keeps_its_finished_runs_when_stopped(tiny_model_dir, eval_set, tmp_path):
    """sweep.csv is rewritten after every run, so a sweep stopped part-way loses only the run in progress."""
    from maskgit_inpaint.experiments import load_eval_set, run_sweep, sweep_configs
    from maskgit_inpaint.model import load_model

    model, model_dir = load_model(str(tiny_model_dir), "cpu")
    names, x, known = load_eval_set(eval_set[0], eval_set[1], model.image_size)
    configs = sweep_configs(model.default_settings, {"gamma": ["linear"], "steps": [2]})

    def stop(msg):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(model, model_dir, x, known, names, configs, [0, 1], tmp_path, log=stop)
    (row,) = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert row["seed"] == "0" and float(row["fid_raw"]) > 0
