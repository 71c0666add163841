"""Training both stages: MVTM masking, the stage-2 loss, LR schedule, accumulation, resume,
stage-1 runs (artifacts, GAN path, resume) and the train/export/inpaint command line.

Every run uses the `tiny` preset on a few synthetic 64x64 images, on the CPU, in "32-true"
precision where results are compared exactly.
"""
from __future__ import annotations

import contextlib
import copy
import math
import shutil
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from maskgit_inpaint import training
from maskgit_inpaint.cli import main
from maskgit_inpaint.config import merge, preset
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.tokenizer import VQGAN
from maskgit_inpaint.training import (
    TokenizerModule,
    TransformerModule,
    context_inputs,
    export_run,
    inpaint_mask_bank,
    load_run_config,
    mvtm_mask,
    read_metrics,
    train_tokenizer,
    train_transformer,
    warmup_cosine,
)


# ============================================================================= helpers
def _write_images(root: Path, n: int, tools, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        tools.write_png(tools.synthetic_image(rng), root / f"img{i:03d}.png")
    return root


def _ckpt(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _rows(run: Path, key: str) -> dict[int, float]:
    """step -> value of `key` from the run's CSV logs."""
    return {int(r["step"]): float(r[key]) for r in read_metrics(run) if r.get(key) not in (None, "")}


def content_mask(tokens, mode="gamma", schedule="cosine", generator=None, mask_bank=None):
    """A deterministic stand-in for `mvtm_mask`: each sample's mask is a function of its own
    tokens only (masked fraction between 1/8 and 7/8, different per sample), so it does not
    depend on the global RNG, on the batch a sample lands in or on its place in the batch."""
    n = tokens.shape[1]
    pos = torch.arange(1, n + 1, device=tokens.device)
    h = (tokens * pos).sum(1, keepdim=True)
    m = ((tokens * 7 + pos * 13 + h) % 8) < (h % 7 + 1)
    m[:, 0] |= ~m.any(1)
    return m


def _t2_config(data_dir: Path, **tt) -> dict:
    t = {"precision": "32-true", "log_every": 1, "flip": False, "warmup_steps": 2, "seed": 0}
    t.update(tt)
    return merge(preset("tiny"), {"data": {"train": str(data_dir), "val_fraction": 0.0},
                                  "transformer_training": t})


def _state_close(a: dict, b: dict, atol: float, rtol: float = 1e-5) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=rtol), k
        worst = max(worst, float((a[k].float() - b[k].float()).abs().max()))
    return worst


def _opt_close(a: dict, b: dict, atol: float, rtol: float = 1e-4) -> None:
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.allclose(v.float(), b["state"][i][k].float(), atol=atol, rtol=rtol), (i, k)
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert math.isclose(ga["lr"], gb["lr"], rel_tol=1e-9)


# ============================================================================= shared fixtures
@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    """A tokenizer-only model directory (random tiny tokenizer)."""
    cfg = preset("tiny")
    cfg["transformer"] = None
    torch.manual_seed(0)
    return MaskGIT(cfg).save(tmp_path_factory.mktemp("tok_only"))


@pytest.fixture(scope="module")
def images32(tmp_path_factory, tools) -> Path:
    return _write_images(tmp_path_factory.mktemp("images32"), 32, tools)


# ============================================================================= mvtm_mask
def _cosine_cdf(x):
    """P(cos(pi r / 2) <= x) for r ~ U(0, 1)."""
    return 1 - (2 / np.pi) * np.arccos(np.clip(x, 0, 1))


@pytest.mark.parametrize("schedule,cdf,mean", [
    ("cosine", _cosine_cdf, 2 / np.pi),
    ("linear", lambda x: np.clip(x, 0, 1), 0.5),
])
def test_gamma_mask_counts_follow_the_schedule(schedule, cdf, mean):
    b, n = 10_000, 256
    g = torch.Generator().manual_seed(0)
    m = mvtm_mask(torch.zeros(b, n, dtype=torch.long), "gamma", schedule, generator=g)
    assert m.shape == (b, n) and m.dtype == torch.bool
    k = m.sum(1).numpy()
    assert k.min() >= 1 and k.max() <= n
    # k = ceil(gamma(r) N): P(k <= j) = P(gamma(r) <= j / N) exactly, for j = 1..N
    j = np.arange(1, n + 1)
    ecdf = np.searchsorted(np.sort(k), j, side="right") / b
    ks = np.abs(ecdf - cdf(j / n)).max()
    assert ks < 0.02, f"KS distance {ks:.4f} from the {schedule} schedule"
    frac = k / n
    assert abs(frac.mean() - mean) < 0.01
    # which tokens are masked is uniform over positions
    per_pos = m.float().mean(0)
    assert float((per_pos - frac.mean()).abs().max()) < 0.03


def test_gamma_mask_is_reproducible_with_a_generator_and_random_without():
    t = torch.zeros(64, 256, dtype=torch.long)
    a = mvtm_mask(t, "gamma", "cosine", generator=torch.Generator().manual_seed(3))
    b = mvtm_mask(t, "gamma", "cosine", generator=torch.Generator().manual_seed(3))
    c = mvtm_mask(t, "gamma", "cosine", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(mvtm_mask(t, "gamma"), mvtm_mask(t, "gamma"))


def test_seed_mode_masked_fraction_is_uniform_between_quarter_and_one():
    b, n = 10_000, 256
    m = mvtm_mask(torch.zeros(b, n, dtype=torch.long), "seed", generator=torch.Generator().manual_seed(0))
    frac = m.float().mean(1).numpy()
    assert abs(frac.mean() - 0.625) < 0.01
    assert frac.min() > 0.1 and (frac < 0.2).mean() < 0.01
    x = np.linspace(0, 1, 201)
    ecdf = np.searchsorted(np.sort(frac), x, side="right") / b
    ks = np.abs(ecdf - np.clip((x - 0.25) / 0.75, 0, 1)).max()
    assert ks < 0.03, f"KS distance {ks:.4f} from U(0.25, 1)"


def test_inpaint_mode_draws_whole_masks_from_the_bank():
    n = 16
    bank = torch.zeros(5, n, dtype=torch.bool)
    bank[0, :8] = True
    bank[1, 8:] = True
    bank[2, ::3] = True
    bank[3, 5] = True
    # bank[4] is empty: it must still mask one token
    b = 2_000
    m = mvtm_mask(torch.zeros(b, n, dtype=torch.long), "inpaint", mask_bank=bank,
                  generator=torch.Generator().manual_seed(0))
    fixed = bank.clone()
    fixed[4, 0] = True
    match = (m[:, None, :] == fixed[None]).all(-1)  # (b, 5)
    assert match.any(1).all(), "a mask that is not in the bank"
    counts = match.float().sum(0)
    assert (counts > 300).all() and (counts < 500).all()  # all bank entries, about uniformly
    assert not bank[4].any(), "the bank itself was modified"
    again = mvtm_mask(torch.zeros(b, n, dtype=torch.long), "inpaint", mask_bank=bank,
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, again)


@pytest.mark.parametrize("mode,schedule", [("gamma", "cosine"), ("gamma", "constant"), ("seed", "cosine"),
                                           ("inpaint", "cosine")])
@pytest.mark.parametrize("n", [1, 3])
def test_mask_never_has_zero_masked_tokens(mode, schedule, n):
    bank = torch.zeros(4, n, dtype=torch.bool)
    bank[1, -1] = True
    m = mvtm_mask(torch.zeros(3_000, n, dtype=torch.long), mode, schedule, mask_bank=bank,
                  generator=torch.Generator().manual_seed(1))
    assert (m.sum(1) >= 1).all()


@pytest.mark.parametrize("key,value", [("loss_on", "mased"), ("mask_mode", "gama")])
def test_a_misspelt_training_choice_is_refused_by_name(key, value):
    from maskgit_inpaint.training import training_config

    with pytest.raises(ValueError, match=f"transformer_training.{key} must be .*{value}"):
        training_config({"transformer_training": {key: value}}, "transformer")
    assert training_config({"transformer_training": {key: "all" if key == "loss_on" else "seed"}}, "transformer")


def test_mask_mode_errors():
    t = torch.zeros(2, 16, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown mask_mode"):
        mvtm_mask(t, "nope")
    with pytest.raises(ValueError, match="mask bank"):
        mvtm_mask(t, "inpaint")
    with pytest.raises(ValueError, match="schedule"):
        mvtm_mask(t, "gamma", "no-such-schedule")


def test_inpaint_mask_bank_holds_token_masks_with_holes_and_known_tokens():
    bank = inpaint_mask_bank(count=32, size=64, latent=16, seed=0)
    assert bank.shape == (32, 256) and bank.dtype == torch.bool
    frac = bank.float().mean(1)
    assert (frac > 0).all() and (frac < 1).all()
    assert torch.equal(bank, inpaint_mask_bank(count=32, size=64, latent=16, seed=0))
    assert inpaint_mask_bank(count=8, size=64, latent=8, seed=0).shape == (8, 64)


def test_inpaint_mask_bank_matches_the_models_token_grid(monkeypatch):
    from maskgit_inpaint import masks

    # a fast stand-in for the mask generators (one square hole), same signature and meaning
    def fake_generate(kind, count, size=64, seed=0):
        m = np.ones((count, size, size), bool)
        m[:, : size // 4, : size // 4] = False
        return m

    monkeypatch.setattr(masks, "generate_masks", fake_generate)
    cfg = preset("tiny")
    cfg["tokenizer"]["image_size"] = 128
    cfg["transformer"]["num_tokens"] = 1024
    cfg["transformer_training"] = {"mask_mode": "inpaint"}
    module = TransformerModule(cfg)
    assert module.mask_bank.shape[1] == module.transformer.cfg.num_tokens


# ============================================================================= LR schedule
def test_warmup_cosine_shape():
    warm, total, lo = 10, 110, 0.1
    v = np.array([warmup_cosine(s, warm, total, lo) for s in range(total + 20)])
    assert v[0] == pytest.approx(1 / warm)  # starts small, not at zero
    assert np.all(np.diff(v[:warm]) > 0)  # linear warm-up ...
    np.testing.assert_allclose(np.diff(v[:warm]), 1 / warm)
    assert v.max() == pytest.approx(1.0) and v[warm] == pytest.approx(1.0)  # ... peaks at 1 ...
    assert np.all(np.diff(v[warm:total + 1]) < 0)  # ... then decays monotonically ...
    assert v[warm + (total - warm) // 2] == pytest.approx(lo + (1 - lo) * 0.5)  # cosine midpoint
    assert v[total] == pytest.approx(lo) and np.allclose(v[total:], lo)  # ... to min_lr_ratio, then stays
    assert warmup_cosine(0, 0, 100, 0.05) == pytest.approx(1.0)  # no warm-up
    assert warmup_cosine(50, 100, 10, 0.05) == pytest.approx(0.51)  # total inside the warm-up
    assert warmup_cosine(500, 100, 10, 0.05) == pytest.approx(1.0)


def test_warmup_cosine_decays_by_the_spent_time_budget_when_it_is_further_along():
    lo = 0.1
    assert warmup_cosine(4, 10, 1000, lo, time_fraction=0.9) == pytest.approx(0.5)  # the warm-up is by steps
    assert warmup_cosine(10, 10, 10**6, lo, time_fraction=0.5) == pytest.approx(lo + (1 - lo) * 0.5)
    assert warmup_cosine(10, 10, 10**6, lo, time_fraction=1.7) == pytest.approx(lo)  # spent: at the floor
    assert warmup_cosine(510, 10, 1010, lo, time_fraction=0.1) == pytest.approx(lo + (1 - lo) * 0.5)  # steps lead
    assert warmup_cosine(5, 0, 0, lo, time_fraction=1.0) == pytest.approx(lo)  # no step total: time alone


# ============================================================================= stage-2 loss
def _tiny_module(**tt) -> TransformerModule:
    cfg = preset("tiny")
    cfg["transformer_training"] = {"label_smoothing": 0.0, **tt}
    torch.manual_seed(0)
    return TransformerModule(cfg, total_steps=100)


def test_loss_is_mean_over_samples_of_masked_token_ce():
    module = _tiny_module(label_smoothing=0.1)
    with torch.no_grad():  # confident, far-from-uniform logits, so that label smoothing shows
        module.transformer.head.weight.mul_(100)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (4, 256), generator=g)
    mask = mvtm_mask(tokens, "gamma", generator=g)
    loss, acc = module.loss(tokens, mask, smoothing=0.0)
    inp = torch.where(mask, torch.full_like(tokens, 256), tokens)
    logits = module.transformer(inp)[..., :256]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    want = torch.stack([ce[i][mask[i]].mean() for i in range(4)]).mean()
    torch.testing.assert_close(loss, want)
    pred = logits.argmax(-1)
    torch.testing.assert_close(acc, (pred == tokens)[mask].float().mean())
    # label smoothing: from the config by default (0.1 here), overridable per call
    ce_s = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, label_smoothing=0.1, reduction="none")
    want_s = torch.stack([ce_s[i][mask[i]].mean() for i in range(4)]).mean()
    torch.testing.assert_close(module.loss(tokens, mask)[0], want_s)
    assert abs(float(want_s.detach() - want.detach())) > 1e-3  # well beyond assert_close tolerance


def test_gradient_accumulation_4x8_equals_one_batch_of_32():
    module = _tiny_module(weight_decay=0.05, warmup_steps=0)
    twin = copy.deepcopy(module)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (32, 256), generator=g)
    mask = mvtm_mask(tokens, "gamma", generator=g)
    counts = mask.sum(1)
    assert counts.max() > 2 * counts.min(), "masks should differ in size for this test to bite"

    module.zero_grad()
    module.loss(tokens, mask)[0].backward()
    full = {n: p.grad.clone() for n, p in module.named_parameters()}

    twin.zero_grad()
    for i in range(4):
        sl = slice(8 * i, 8 * (i + 1))
        (twin.loss(tokens[sl], mask[sl])[0] / 4).backward()
    accum = {n: p.grad.clone() for n, p in twin.named_parameters()}
    for n in full:
        torch.testing.assert_close(accum[n], full[n], atol=1e-7, rtol=1e-4, msg=n)

    # the test can tell: a token-level mean over the batch gives other gradients
    alt = copy.deepcopy(module)
    alt.zero_grad()
    inp = torch.where(mask, torch.full_like(tokens, 256), tokens)
    ce = torch.nn.functional.cross_entropy(alt.transformer(inp)[..., :256].transpose(1, 2), tokens,
                                           label_smoothing=0.1, reduction="none")
    (ce[mask].mean()).backward()
    assert not torch.allclose(alt.transformer.head.weight.grad, full["transformer.head.weight"], rtol=1e-3)

    # one optimiser step from the same start gives the same parameters
    for m in (module, twin):
        opt = m.configure_optimizers()["optimizer"]
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    for (n, a), (_, b) in zip(module.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=n)


def test_loss_falls_when_overfitting_a_fixed_batch(monkeypatch):
    b, n = 8, 256
    tokens = (torch.arange(n)[None] * 37 + torch.arange(b)[:, None] * 11) % 256
    mask = torch.rand(b, n, generator=torch.Generator().manual_seed(0)) < 0.5
    calls = []

    def fixed_mask(t, *a, **k):
        calls.append(1)
        return mask

    monkeypatch.setattr(training.stage2, "mvtm_mask", fixed_mask)
    cfg = preset("tiny")
    cfg["transformer_training"] = {"lr": 3e-3, "warmup_steps": 1, "label_smoothing": 0.0, "weight_decay": 0.0}
    torch.manual_seed(0)
    module = TransformerModule(cfg, total_steps=50)
    with torch.no_grad():
        before = float(module.loss(tokens, mask)[0])
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(accelerator="cpu", max_steps=50, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, precision="32-true",
                        callbacks=[Record()])
    trainer.fit(module, DataLoader(TensorDataset(tokens.repeat(50, 1)), batch_size=b, shuffle=False))
    with torch.no_grad():
        after = float(module.loss(tokens, mask)[0])
    assert len(losses) == 50 and len(calls) == 50 and trainer.global_step == 50
    assert before == pytest.approx(math.log(256), rel=0.05)  # chance level at the start
    assert losses[0] == pytest.approx(before, rel=1e-5)
    assert after < 0.75 * before
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


# ============================================================================= stage-2 runs
class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory, images32, tok_dir):
    """The same 6-step stage-2 run twice: straight, and killed after step 3 then resumed.

    One batch (the whole data set) per epoch and masks derived from each sample's content
    make the two comparable exactly; see test_resume_equals_straight_run."""
    root = tmp_path_factory.mktemp("resume")
    n = 6
    cfg = _t2_config(images32, batch_size=32, max_steps=n, ckpt_every_steps=n // 2)
    out = {"n": n, "cfg": cfg, "straight": root / "straight", "resumed": root / "resumed"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.stage2, "mvtm_mask", content_mask)
        train_transformer(cfg, out["straight"], tok_dir, accelerator="cpu")

        real_step = TransformerModule.training_step

        def dies_at_half(self, batch, batch_idx):
            if self.global_step == n // 2:
                raise Interrupted
            return real_step(self, batch, batch_idx)

        mp.setattr(TransformerModule, "training_step", dies_at_half)
        with pytest.raises(Interrupted):
            train_transformer(cfg, out["resumed"], tok_dir, accelerator="cpu")
        mp.setattr(TransformerModule, "training_step", real_step)
        half = out["resumed"] / "half.ckpt.saved"
        shutil.copy(out["resumed"] / "checkpoints" / "last.ckpt", half)
        out["half"] = _ckpt(half)

        seen = {}

        def on_train_start(self):
            sched = self.trainer.lr_scheduler_configs[0].scheduler
            seen.update(global_step=self.trainer.global_step,
                        params={k: v.detach().clone() for k, v in self.state_dict().items()},
                        opt=copy.deepcopy(self.trainer.optimizers[0].state_dict()),
                        sched=copy.deepcopy(sched.state_dict()),
                        lr=self.trainer.optimizers[0].param_groups[0]["lr"])

        mp.setattr(TransformerModule, "on_train_start", on_train_start, raising=False)
        train_transformer(cfg, out["resumed"], None, resume=True, accelerator="cpu")
        out["seen"] = seen
    return out


def test_interrupted_run_left_a_checkpoint_at_half(resume_runs):
    half = resume_runs["half"]
    assert half["global_step"] == resume_runs["n"] // 2
    assert half["lr_schedulers"][0]["last_epoch"] == resume_runs["n"] // 2
    assert all(float(s["step"]) == resume_runs["n"] // 2 for s in half["optimizer_states"][0]["state"].values())


def test_resume_restores_the_checkpoint_state_exactly(resume_runs):
    """What resuming must restore, whatever the data order: global step, weights, AdamW state
    and step count, LR scheduler position (so the LR continues where it was)."""
    seen, half, n = resume_runs["seen"], resume_runs["half"], resume_runs["n"]
    t = training.training_config(resume_runs["cfg"], "transformer")
    assert seen["global_step"] == n // 2
    assert seen["params"].keys() == half["state_dict"].keys()
    for k, v in half["state_dict"].items():
        assert torch.equal(seen["params"][k], v), k
    for i, s in half["optimizer_states"][0]["state"].items():
        for k, v in s.items():
            assert torch.equal(seen["opt"]["state"][i][k], v), (i, k)
    assert seen["sched"]["last_epoch"] == half["lr_schedulers"][0]["last_epoch"] == n // 2
    assert seen["sched"]["_last_lr"] == half["lr_schedulers"][0]["_last_lr"]
    assert seen["lr"] == pytest.approx(t["lr"] * warmup_cosine(n // 2, t["warmup_steps"], n, t["min_lr_ratio"]),
                                       rel=1e-6)


def test_resume_equals_straight_run(resume_runs):
    """N straight steps == N/2 steps + resume + N/2 steps (weights, AdamW state, scheduler).

    With the real `mvtm_mask` this cannot hold exactly: the masks come from the global torch
    RNG, which Lightning neither checkpoints nor restores (the resumed run re-seeds it with
    `seed`, i.e. replays the RNG stream of step 0), and a mid-epoch resume starts a freshly
    shuffled epoch. So the masks are made a function of each sample's content and an epoch is
    one batch (order inside a batch does not change a mean over samples)."""
    n = resume_runs["n"]
    a = _ckpt(resume_runs["straight"] / "checkpoints" / "last.ckpt")
    b = _ckpt(resume_runs["resumed"] / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == n
    assert not list((resume_runs["resumed"] / "checkpoints").glob("last-v*.ckpt"))
    _state_close(a["state_dict"], b["state_dict"], atol=1e-6)
    _opt_close(a["optimizer_states"][0], b["optimizer_states"][0], atol=1e-8)
    for k in ("last_epoch", "_step_count", "_last_lr", "base_lrs"):
        assert a["lr_schedulers"][0][k] == b["lr_schedulers"][0][k], k
    # and it is not trivially equal: the weights moved during the second half
    half = resume_runs["half"]["state_dict"]
    assert max(float((a["state_dict"][k] - half[k]).abs().max()) for k in half) > 1e-4
    # the losses of the steps after the resume are those of the straight run
    la, lb = _rows(resume_runs["straight"], "train/loss"), _rows(resume_runs["resumed"], "train/loss")
    for s in range(n // 2, n):
        assert lb[s] == pytest.approx(la[s], rel=1e-5, abs=1e-6), s


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory, images32, tok_dir):
    """7 steps over several epochs of 4 batches each."""
    cfg = _t2_config(images32, batch_size=8, max_steps=7, warmup_steps=2)
    return train_transformer(cfg, tmp_path_factory.mktemp("lr") / "run", tok_dir, accelerator="cpu"), cfg


def test_lr_changes_every_optimizer_step(lr_run):
    run, cfg = lr_run
    t = training.training_config(cfg, "transformer")
    n = t["max_steps"]
    lr = _rows(run, "lr")
    assert sorted(lr) == list(range(n)), "lr not logged at every step"
    for s in range(n):  # the LR used at step s is base_lr * warmup_cosine(s)
        assert lr[s] == pytest.approx(t["lr"] * warmup_cosine(s, t["warmup_steps"], n, t["min_lr_ratio"]), rel=1e-6)
    w = t["warmup_steps"]
    for s in range(1, n):
        if s == w:  # warm-up ends at exactly 1.0 one step before the cosine starts at 1.0
            assert lr[s] == lr[s - 1] == pytest.approx(t["lr"])
            continue
        assert lr[s] != lr[s - 1], f"lr did not change between steps {s - 1} and {s}"
    assert lr[0] < 0.6 * t["lr"] and lr[n - 1] < lr[w]
    epochs = {int(r["epoch"]) for r in read_metrics(run) if r.get("lr")}
    assert epochs == {0, 1}, "the run should span an epoch boundary"


def test_second_stage2_run_in_same_dir_is_refused(resume_runs, tok_dir):
    run = resume_runs["straight"]
    before = (run / "config.yaml").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train_transformer(resume_runs["cfg"], run, tok_dir, accelerator="cpu")
    assert (run / "config.yaml").read_bytes() == before


def test_metrics_history_survives_resume(resume_runs):
    steps = _rows(resume_runs["resumed"], "train/loss")
    assert set(range(resume_runs["n"])) <= set(steps)


@pytest.fixture(scope="module")
def accumulation_runs(tmp_path_factory, images32, tok_dir):
    root = tmp_path_factory.mktemp("accum")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.stage2, "mvtm_mask", content_mask)
        for name, bs, acc in (("big", 32, 1), ("accum", 8, 4)):
            cfg = _t2_config(images32, batch_size=bs, accumulate=acc, max_steps=1, ckpt_every_steps=1,
                             warmup_steps=0)
            runs[name] = train_transformer(cfg, root / name, tok_dir, accelerator="cpu")
    return runs


def test_lightning_accumulation_4x8_equals_batch_32(accumulation_runs):
    a = _ckpt(accumulation_runs["big"] / "checkpoints" / "last.ckpt")
    b = _ckpt(accumulation_runs["accum"] / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 1
    # AdamW's first moment after one step is (1 - beta1) * gradient: the gradients agree
    _opt_close(a["optimizer_states"][0], b["optimizer_states"][0], atol=1e-9, rtol=1e-4)
    _state_close(a["state_dict"], b["state_dict"], atol=1e-6)


def test_final_step_is_checkpointed_when_max_steps_stops_mid_epoch(tmp_path, images32, tok_dir):
    cfg = _t2_config(images32, batch_size=8, max_steps=5, ckpt_every_steps=4)  # 4 steps per epoch
    run = train_transformer(cfg, tmp_path / "run", tok_dir, accelerator="cpu")
    steps = {_ckpt(p)["global_step"] for p in (run / "checkpoints").glob("*.ckpt")}
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 5, f"checkpointed steps: {sorted(steps)}"


# ============================================================================= stage 1
TOK_STEPS = 4


@pytest.fixture(scope="module")
def tok_images(tmp_path_factory, tools) -> Path:
    return _write_images(tmp_path_factory.mktemp("tok_images"), 18, tools, seed=5)


def _t1_config(data_dir: Path, **tt) -> dict:
    t = {"batch_size": 8, "max_steps": TOK_STEPS, "precision": "32-true", "ckpt_every_steps": 4, "log_every": 1,
         "disc_start": 0, "gan_weight": 0.1, "disc_channels": 8, "disc_layers": 1, "warmup_steps": 2}
    t.update(tt)
    # 18 images: 2 for validation, 16 for training = 2 steps per epoch
    return merge(preset("tiny"), {"data": {"train": str(data_dir), "val_fraction": 0.12},
                                  "tokenizer_training": t})


@pytest.fixture(scope="module")
def tok_run(tmp_path_factory, tok_images) -> Path:
    run = tmp_path_factory.mktemp("tok") / "run"
    assert train_tokenizer(_t1_config(tok_images), run, accelerator="cpu") == run
    return run


def test_tokenizer_run_writes_config_checkpoints_logs_and_figures(tok_run, tok_images):
    cfg = load_run_config(tok_run)
    assert cfg["kind"] == "tokenizer"
    assert cfg["data"]["train"] == str(tok_images)
    assert cfg["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert cfg["tokenizer_training"]["max_steps"] == TOK_STEPS
    ck = tok_run / "checkpoints"
    for name in ("last.ckpt", "best.ckpt", "epoch0000.ckpt", "epoch0001.ckpt"):
        assert (ck / name).is_file(), name
    last = _ckpt(ck / "last.ckpt")
    assert int(last["state_dict"]["step_count"]) == TOK_STEPS
    assert int(_ckpt(ck / "epoch0000.ckpt")["state_dict"]["step_count"]) == 2
    rows = read_metrics(tok_run)
    val = [r for r in rows if r.get("val/psnr")]
    assert len(val) == 2
    for r in val:
        assert 0 < float(r["val/psnr"]) < 60
        assert 1 <= float(r["val/codebook_usage"]) <= 256
        assert float(r["val/l1"]) > 0
    train = _rows(tok_run, "train/l1")
    assert sorted(train) == list(range(TOK_STEPS))
    for name in ("recon/epoch0000.png", "recon/epoch0001.png", "loss_curve.png"):
        p = tok_run / name
        assert p.is_file(), name
        with Image.open(p) as im:
            im.load()
            if name.startswith("recon"):
                assert im.size == (2 * 64, 2 * 64)  # 2 val images: originals over reconstructions
    assert (tok_run / "logs" / "metrics.csv").is_file()


def test_tokenizer_gan_path_runs_when_disc_starts_at_zero(tok_run):
    d = _rows(tok_run, "train/d_loss")
    g = _rows(tok_run, "train/g_loss")
    assert sorted(d) == sorted(g) == list(range(TOK_STEPS))
    assert all(math.isfinite(v) and v >= 0 for v in d.values())
    last = _ckpt(tok_run / "checkpoints" / "last.ckpt")
    assert any(k.startswith("disc.") for k in last["state_dict"])
    opt_g, opt_d = last["optimizer_states"]
    assert opt_d["state"], "the discriminator never took an optimiser step"
    assert {float(s["step"]) for s in opt_d["state"].values()} == {float(TOK_STEPS)}
    assert {float(s["step"]) for s in opt_g["state"].values()} == {float(TOK_STEPS)}


def test_tokenizer_disc_warmup_trains_the_discriminator_alone_first(tmp_path, tok_images):
    cfg = _t1_config(tok_images, max_steps=3, disc_start=0, disc_warmup_steps=2)
    run = train_tokenizer(cfg, tmp_path / "run", accelerator="cpu")
    assert sorted(_rows(run, "train/d_loss")) == [0, 1, 2]
    assert sorted(_rows(run, "train/g_loss")) == [2]  # the decoder sees the GAN only after the warm-up
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    opt_g, opt_d = last["optimizer_states"]
    assert {float(s["step"]) for s in opt_d["state"].values()} == {3.0}


def test_tokenizer_without_gan_does_not_train_a_discriminator(tmp_path, tok_images):
    cfg = _t1_config(tok_images, max_steps=1, disc_start=1000)
    run = train_tokenizer(cfg, tmp_path / "run", accelerator="cpu")
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    assert int(last["state_dict"]["step_count"]) == 1
    assert not last["optimizer_states"][1]["state"]
    assert not _rows(run, "train/g_loss")


def _resume_tokenizer(run: Path, max_steps: int) -> list[int]:
    """Resume a tokenizer run to `max_steps`; the step_count seen by each training step."""
    cfg = load_run_config(run)
    cfg["tokenizer_training"]["max_steps"] = max_steps
    steps = []
    real = TokenizerModule.training_step

    def counting(self, x, batch_idx):
        steps.append(int(self.step_count))
        return real(self, x, batch_idx)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TokenizerModule, "training_step", counting)
        train_tokenizer(cfg, run, resume=True, accelerator="cpu")
    return steps


@pytest.fixture(scope="module")
def tok_resumed(tmp_path_factory, tok_images):
    run = tmp_path_factory.mktemp("tok_resume") / "run"
    train_tokenizer(_t1_config(tok_images), run, accelerator="cpu")
    assert int(_ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]["step_count"]) == TOK_STEPS
    return run, _resume_tokenizer(run, TOK_STEPS + 2)


def test_tokenizer_resume_continues_from_last_checkpoint(tok_resumed):
    run, steps = tok_resumed
    assert steps == [TOK_STEPS, TOK_STEPS + 1], f"resumed run trained at step_count {steps}"
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    assert int(last["state_dict"]["step_count"]) == TOK_STEPS + 2
    assert last["lr_schedulers"][0]["last_epoch"] == TOK_STEPS + 2
    assert {float(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {float(TOK_STEPS + 2)}
    assert {float(s["step"]) for s in last["optimizer_states"][1]["state"].values()} == {float(TOK_STEPS + 2)}
    assert (run / "checkpoints" / "epoch0002.ckpt").is_file()
    assert not list((run / "checkpoints").glob("last-v*.ckpt"))
    assert (run / "recon" / "epoch0002.png").is_file()
    assert load_run_config(run)["tokenizer_training"]["max_steps"] == TOK_STEPS + 2


def test_resume_of_a_moved_run_directory_updates_last_ckpt(tok_run, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(tok_run, run)
    steps = _resume_tokenizer(run, TOK_STEPS + 2)
    assert steps == [TOK_STEPS, TOK_STEPS + 1]  # the resume itself is right ...
    names = sorted(p.name for p in (run / "checkpoints").glob("last*.ckpt"))
    assert int(_ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]["step_count"]) == TOK_STEPS + 2, names


def test_second_tokenizer_run_in_same_out_is_refused(tok_run, tok_images, capsys):
    before = (tok_run / "config.yaml").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run.*--resume"):
        train_tokenizer(_t1_config(tok_images), tok_run, accelerator="cpu")
    rc = main(["train-tokenizer", "--data", str(tok_images), "--out", str(tok_run), "--preset", "tiny",
               "--max-steps", "1", "--accelerator", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert (tok_run / "config.yaml").read_bytes() == before
    # and resuming a directory that holds no run says so
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_tokenizer(_t1_config(tok_images), tok_run.parent / "no_run_here", resume=True, accelerator="cpu")


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tok_run, tok_images, tmp_path, caplog):
    run = tmp_path / "config_only_run"
    run.mkdir()
    shutil.copy(tok_run / "config.yaml", run / "config.yaml")
    with caplog.at_level("WARNING", logger="maskgit_inpaint"):
        train_tokenizer(_t1_config(tok_images), run, resume=True, accelerator="cpu")
    assert "starts again from step 0" in caplog.text
    assert int(_ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]["step_count"]) == TOK_STEPS


def test_export_of_a_tokenizer_run_holds_the_checkpoint_weights(tok_run, tmp_path):
    out = export_run(tok_run, tmp_path / "tok", which="last")
    model = MaskGIT.from_dir(out, require_transformer=False)
    assert model.transformer is None
    sd = _ckpt(tok_run / "checkpoints" / "last.ckpt")["state_dict"]
    for k, v in model.tokenizer.state_dict().items():
        assert torch.equal(v, sd["vqgan." + k]), k


class _StopAtSave(Exception):
    pass


@contextlib.contextmanager
def _config_capture(monkeypatch, captured: dict):
    """Stops a training command where it saves its resolved config, into `captured`."""
    def capture(run_dir, config):
        captured.update(config)
        raise _StopAtSave

    monkeypatch.setattr(training.runs, "save_run_config", capture)
    with pytest.raises(_StopAtSave):
        yield


def test_resume_with_only_max_steps_keeps_the_runs_other_settings(tok_run, tok_images, monkeypatch):
    saved = load_run_config(tok_run)["tokenizer_training"]
    captured = {}
    with _config_capture(monkeypatch, captured):
        main(["train-tokenizer", "--resume", "--data", str(tok_images), "--out", str(tok_run),
              "--max-steps", str(TOK_STEPS + 2), "--accelerator", "cpu"])
    assert captured["tokenizer_training"] == {**saved, "max_steps": TOK_STEPS + 2}


# ============================================================================= run length, refusal, retention
def test_run_length_takes_whichever_limit_is_given_and_the_first_reached_of_both():
    def length(max_steps=-1, max_epochs=None, kind="transformer", spe=4):
        t = training.training_config({f"{kind}_training": {"max_steps": max_steps, "max_epochs": max_epochs}}, kind)
        return training.run_length(t, spe)

    assert length(150) == (150, 38)  # steps alone: no default epoch limit
    assert length(max_epochs=3) == (12, 3)
    assert length(150, 3) == (12, 3) and length(10, 3) == (10, 3)
    assert length() == (200, 50) and length(kind="tokenizer") == (40, 10)  # neither: the stage's default
    with pytest.raises(ValueError, match="max_epochs"):
        length(max_epochs=0)


@pytest.mark.parametrize("every", [{"ckpt_every_minutes": 1e-6, "ckpt_every_steps": 0},
                                   {"ckpt_every_minutes": 0, "ckpt_every_steps": 1}])
def test_last_ckpt_is_refreshed_on_the_clock_or_every_n_steps_of_stage_1(every, tok_images, tmp_path, monkeypatch):
    """Stage 1 steps two optimisers by hand: Lightning's ModelCheckpoint would count 2 per step
    and never look at its clock; `ckpt_every_minutes` / `ckpt_every_steps` count the run's steps."""
    saved = []
    real = training.callbacks._write_checkpoint

    def recording(checkpoint, path):
        if ".last.ckpt." in str(path):
            saved.append(int(checkpoint["state_dict"]["step_count"]))
        real(checkpoint, path)

    monkeypatch.setattr(training.callbacks, "_write_checkpoint", recording)
    train_tokenizer(_t1_config(tok_images, max_steps=3, epoch_checkpoints=False, **every), tmp_path / "run",
                    accelerator="cpu")
    assert {1, 2, 3} <= set(saved)  # 2 steps per epoch: step 1 is mid-epoch


@pytest.fixture(scope="module")
def images64x32(tmp_path_factory, tools) -> Path:
    """64 images of 32x32 pixels."""
    root = tmp_path_factory.mktemp("images64")
    rng = np.random.default_rng(3)
    for i in range(64):
        tools.write_png(tools.synthetic_image(rng, 32), root / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def tok32_dir(tmp_path_factory) -> Path:
    cfg = preset("tiny")
    cfg["image_size"] = 32
    cfg["tokenizer"]["image_size"] = 32
    cfg["transformer"] = None
    torch.manual_seed(0)
    return MaskGIT(cfg).save(tmp_path_factory.mktemp("tok32"))


def _ckpt_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.parametrize("stage", ["tokenizer", "transformer"])
def test_max_steps_150_on_64_images_stops_at_step_150(stage, images64x32, tok32_dir, tmp_path, capsys):
    """Past the default epoch limit of either stage (10 epochs of 4 steps; 50 of 2), which only
    applies when neither limit is given; and the retention keeps last, best and 3 epochs."""
    sec = f"{stage}_training"
    argv = ["--data", str(images64x32), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "150",
            "--accelerator", "cpu", "--set", f"{sec}.precision=32-true", "--set", "data.val_fraction=0",
            "--set", f"{sec}.log_every=50"]
    if stage == "tokenizer":
        argv = ["train-tokenizer", *argv, "--batch-size", "16", "--set", "tokenizer.image_size=32"]
    else:
        argv = ["train", *argv, "--batch-size", "64", "--tokenizer", str(tok32_dir)]
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    ck = tmp_path / "run" / "checkpoints"
    last = _ckpt(ck / "last.ckpt")
    step = int(last["state_dict"]["step_count"]) if stage == "tokenizer" else last["global_step"]
    assert step == 150
    assert last["lr_schedulers"][0]["last_epoch"] == 150
    assert _ckpt_files(tmp_path / "run") == ["best.ckpt", "epoch0035.ckpt", "epoch0036.ckpt", "epoch0037.ckpt",
                                              "last.ckpt"] if stage == "tokenizer" else \
        ["best.ckpt", "epoch0072.ckpt", "epoch0073.ckpt", "epoch0074.ckpt", "last.ckpt"]
    # and the progress bar counted to the right totals
    bar = "".join(capsys.readouterr())
    assert "step=150/150" in bar and ("Epoch 37/37" if stage == "tokenizer" else "Epoch 74/74") in bar


def test_max_epochs_with_max_steps_stops_at_the_first_reached(images64x32, tok32_dir, tmp_path):
    cfg = merge(_t2_config(images64x32, batch_size=32, max_steps=150, max_epochs=3), {"data": {"val_fraction": 0}})
    run = train_transformer(cfg, tmp_path / "run", tok32_dir, accelerator="cpu")
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 6  # 3 epochs of 2 steps


def test_a_run_directory_with_checkpoints_is_refused_unless_resumed_or_overwritten(images64x32, tmp_path, capsys):
    """30 steps leave at most 5 checkpoint files; a second run into the directory is refused
    with a message naming --resume and --overwrite; --overwrite starts it over."""
    run = tmp_path / "run"
    argv = ["train-tokenizer", "--data", str(images64x32), "--out", str(run), "--preset", "tiny", "--max-steps", "30",
            "--batch-size", "16", "--accelerator", "cpu", "--set", "tokenizer.image_size=32",
            "--set", "tokenizer_training.precision=32-true", "--set", "tokenizer_training.log_every=10"]
    assert main(argv) == 0
    files = _ckpt_files(run)
    assert len(files) <= 5 and "last.ckpt" in files and "best.ckpt" in files, files
    first = _ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--max-steps", "3"]) == 0
    assert "deleted the run" in capsys.readouterr().err
    assert _ckpt_files(run) == ["best.ckpt", "epoch0000.ckpt", "last.ckpt"]  # 3 steps: one epoch (61 images)
    assert int(_ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]["step_count"]) == 3
    assert not (run / "logs" / "resume1").exists()
    assert {int(r["step"]) for r in read_metrics(run) if r.get("train/l1")} <= {0, 1, 2}
    assert any(not torch.equal(v, _ckpt(run / "checkpoints" / "last.ckpt")["state_dict"][k]) for k, v in first.items())


def test_unreadable_training_images_are_listed_and_skipped(images64x32, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(images64x32, data)
    (data / "broken.png").write_bytes(b"not an image")
    (data / "sub").mkdir()
    (data / "sub" / "empty.jpg").write_bytes(b"")
    argv = ["train-tokenizer", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny",
            "--max-steps", "2", "--batch-size", "16", "--accelerator", "cpu", "--set", "tokenizer.image_size=32"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 66 images" in err and "broken.png" in err and "empty.jpg" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"nope")
    argv[argv.index(str(data))] = str(bad)
    argv[argv.index(str(tmp_path / "run"))] = str(tmp_path / "run2")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}: none of the 1 images could be read" in err and "Traceback" not in err


# ============================================================================= command line
@pytest.mark.parametrize("command", ["train-tokenizer", "train"])
def test_training_on_fewer_images_than_one_batch_fails_clearly(command, tok_images, tok_dir, tmp_path, capsys):
    # 18 images: 17 for training (x2 with stage 2's flips) < batch size 64
    argv = [command, "--data", str(tok_images), "--out", str(tmp_path / "run"), "--preset", "tiny",
            "--max-steps", "2", "--batch-size", "64", "--accelerator", "cpu"]
    if command == "train":
        argv += ["--tokenizer", str(tok_dir)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0 and "batch" in err.lower(), (rc, err[-500:])


def test_inpaint_with_a_tokenizer_only_model_exits_2(tok_dir, tmp_path, tools, capsys):
    rng = np.random.default_rng(0)
    tools.write_png(tools.synthetic_image(rng), tmp_path / "imgs" / "a.png")
    tools.write_mask(tools.synthetic_mask(rng), tmp_path / "masks" / "a.png")
    rc = main(["inpaint", "--model", str(tok_dir), "--images", str(tmp_path / "imgs"),
               "--masks", str(tmp_path / "masks"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "only a tokenizer" in err and str(tok_dir) in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_train_export_inpaint_end_to_end(tmp_path, tools, capsys):
    data = _write_images(tmp_path / "data", 20, tools, seed=7)  # 1 val image, 19 train
    run1, tokdir, run2, modeldir = (tmp_path / n for n in ("run1", "tok", "run2", "model"))
    rc = main(["train-tokenizer", "--data", str(data), "--out", str(run1), "--preset", "tiny",
               "--max-steps", "4", "--batch-size", "8", "--accelerator", "cpu"])
    assert rc == 0
    assert load_run_config(run1)["tokenizer_training"]["max_steps"] == 4
    assert main(["export", str(run1), "--out", str(tokdir)]) == 0
    assert (tokdir / "tokenizer.safetensors").is_file() and not (tokdir / "transformer.safetensors").exists()

    # a tokenizer-only directory cannot inpaint
    rng = np.random.default_rng(1)
    for i in range(3):
        tools.write_png(tools.synthetic_image(rng), tmp_path / "imgs" / f"p{i}.png")
        tools.write_mask(tools.synthetic_mask(rng), tmp_path / "masks" / f"p{i}.png")
    inpaint = ["inpaint", "--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "masks"),
               "--device", "cpu", "--steps", "4", "--sweet-spot", "4"]
    capsys.readouterr()
    assert main(inpaint + ["--model", str(tokdir), "--out", str(tmp_path / "bad")]) == 2
    assert "only a tokenizer" in capsys.readouterr().err

    rc = main(["train", "--tokenizer", str(tokdir), "--data", str(data), "--out", str(run2), "--preset", "tiny",
               "--max-steps", "4", "--batch-size", "8", "--accelerator", "cpu"])
    assert rc == 0
    cfg2 = load_run_config(run2)
    assert cfg2["kind"] == "transformer" and cfg2["tokenizer_dir"] == str(tokdir.resolve())
    assert (run2 / "cache" / "train_tokens.safetensors").is_file()
    assert main(["export", str(run2), "--out", str(modeldir)]) == 0
    assert (modeldir / "transformer.safetensors").is_file()
    # the exported tokenizer is the stage-1 one
    m1 = MaskGIT.from_dir(tokdir, require_transformer=False)
    m2 = MaskGIT.from_dir(modeldir)
    for k, v in m1.tokenizer.state_dict().items():
        assert torch.equal(v, m2.tokenizer.state_dict()[k]), k

    out = tmp_path / "out"
    assert main(inpaint + ["--model", str(modeldir), "--out", str(out)]) == 0
    for i in range(3):
        res = tools.read_rgb(out / f"p{i}.png")
        assert res.shape == (64, 64, 3)
        src = tools.read_rgb(tmp_path / "imgs" / f"p{i}.png")
        with Image.open(tmp_path / "masks" / f"p{i}.png") as mk:
            known = np.asarray(mk.convert("L")) < 128  # white = hole
        np.testing.assert_array_equal(res[known], src[known])  # known pixels composited back


# ============================================================================= --init (warm start)
class _CaptureFit:
    """Stands in for the Lightning trainer: records the module's weights when fit() starts."""

    num_devices = num_nodes = 1
    callbacks: list = []

    def __init__(self, store: dict):
        self.store = store

    def fit(self, module, **kwargs):
        self.store["state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}


def _full_model_dir(root: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return MaskGIT(preset("tiny")).save(root)


def test_tokenizer_init_starts_from_the_model_dirs_weights_and_architecture(tmp_path, tok_images, monkeypatch):
    init_cfg = preset("tiny")
    init_cfg["transformer"] = None
    init_cfg["tokenizer"]["latent_dim"] = 24  # differs from the tiny preset the run is configured with
    torch.manual_seed(3)
    init = MaskGIT(init_cfg).save(tmp_path / "init")
    store = {}
    monkeypatch.setattr(training.runs, "_trainer", lambda *a, **k: _CaptureFit(store))
    run = train_tokenizer(_t1_config(tok_images), tmp_path / "run", accelerator="cpu", init=init)
    cfg = load_run_config(run)
    assert cfg["tokenizer"]["latent_dim"] == 24
    assert cfg["init"]["model_dir"] == str(init.resolve()) and len(cfg["init"]["model_hash"]) == 16
    want = MaskGIT.from_dir(init, require_transformer=False).tokenizer.state_dict()
    for k, v in want.items():
        assert torch.equal(store["state"]["vqgan." + k], v), k


def test_transformer_init_takes_weights_and_the_init_models_tokenizer(tmp_path, images32, monkeypatch):
    init = _full_model_dir(tmp_path / "init", seed=4)
    store = {}
    monkeypatch.setattr(training.runs, "_trainer", lambda *a, **k: _CaptureFit(store))
    cfg = _t2_config(images32, batch_size=8, max_steps=2)
    cfg["transformer"]["dropout"] = 0.25
    run = train_transformer(cfg, tmp_path / "run", None, accelerator="cpu", init=init)
    saved = load_run_config(run)
    assert saved["tokenizer_dir"] == str(init.resolve())
    assert saved["transformer"]["dropout"] == 0.25  # no parameters: stays as configured
    want = MaskGIT.from_dir(init).transformer.state_dict()
    for k, v in want.items():
        assert torch.equal(store["state"]["transformer." + k], v), k


def test_train_init_runs_end_to_end_from_the_command_line(tmp_path, images32):
    init = _full_model_dir(tmp_path / "init", seed=5)
    rc = main(["train", "--init", str(init), "--data", str(images32), "--out", str(tmp_path / "run"),
               "--max-steps", "2", "--batch-size", "8", "--accelerator", "cpu",
               "--set", "transformer_training.precision=32-true"])
    assert rc == 0
    assert _ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert load_run_config(tmp_path / "run")["init"]["model_dir"] == str(init.resolve())


@pytest.mark.parametrize("command", ["train-tokenizer", "train"])
def test_init_keeps_the_models_inference_settings_unless_set(command, tmp_path, images32, monkeypatch):
    cfg = preset("tiny")
    cfg.update(sampler={"gamma": "sqrt", "steps": 6, "temperature": 0.55}, hole_fill="mean", blend="paste",
               decode_known=False)
    torch.manual_seed(8)
    init = MaskGIT(cfg).save(tmp_path / "init")
    captured = {}
    with _config_capture(monkeypatch, captured):
        main([command, "--init", str(init), "--data", str(images32), "--out", str(tmp_path / "run"),
              "--accelerator", "cpu", "--set", "sampler.steps=5", "--set", "blend=poisson"])
    # the preset (small: cosine, 8 steps, temperature 1.0) gives way to the model's, --set to neither
    assert captured["sampler"]["gamma"] == "sqrt" and captured["sampler"]["temperature"] == 0.55
    assert captured["sampler"]["steps"] == 5
    assert captured["hole_fill"] == "mean" and captured["blend"] == "poisson"
    assert captured["decode_known"] is False


def test_export_writes_the_runs_hole_fill_and_blend(tok_run, tmp_path):
    cfg = {**load_run_config(tok_run), "hole_fill": "mean", "blend": "paste", "decode_known": False}
    model, _ = training.model_from_checkpoint(tok_run, tok_run / "checkpoints" / "last.ckpt", config=cfg)
    out = MaskGIT.from_dir(model.save(tmp_path / "m"), require_transformer=False)
    assert (out.default_settings.hole_fill, out.default_settings.blend, out.default_settings.decode_known) == ("mean", "paste", False)
    plain = MaskGIT.from_dir(export_run(tok_run, tmp_path / "plain", which="last"), require_transformer=False)
    # the defaults when a run sets none
    assert (plain.default_settings.hole_fill, plain.default_settings.blend, plain.default_settings.decode_known) == ("harmonic", "poisson", True)


def test_export_stores_an_earlier_checkpoint_as_the_weak_transformer(resume_runs, tok_run, tmp_path, capsys):
    run = resume_runs["straight"]
    early = sorted((run / "checkpoints").glob("epoch*.ckpt"))[0]
    m = MaskGIT.from_dir(export_run(run, tmp_path / "m", which="last", weak=str(early)))
    sd = training.load_checkpoint_state(early)["state_dict"]
    assert m.has_weak_transformer
    assert all(torch.equal(v, sd[f"transformer.{k}"]) for k, v in m.weak_transformer.state_dict().items())
    assert not all(torch.equal(v, m.transformer.state_dict()[k]) for k, v in m.weak_transformer.state_dict().items())
    # a model directory works too (its transformer is taken), through the CLI
    early_dir = export_run(run, tmp_path / "early", which=str(early))
    assert main(["export", str(run), "--out", str(tmp_path / "m2"), "--which", "last", "--weak", str(early_dir)]) == 0
    m2 = MaskGIT.from_dir(tmp_path / "m2")
    assert all(torch.equal(v, m.weak_transformer.state_dict()[k]) for k, v in m2.weak_transformer.state_dict().items())
    capsys.readouterr()
    for argv, match in (([str(run), "--which", "last", "--weak", "last"], "same checkpoint"),
                        ([str(run), "--weak", str(tmp_path / "nowhere.ckpt")], "not found"),
                        ([str(tok_run), "--weak", "last"], "tokenizer run")):
        assert main(["export", *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err


def test_export_turns_weak_guidance_off_without_a_weak_transformer(resume_runs, tmp_path, capsys):
    """A run warm-started from a model that guides against its weak transformer keeps that
    sampler; exported without --weak, it still loads and inpaints, with weak guidance off."""
    run = tmp_path / "run"
    shutil.copytree(resume_runs["straight"], run)
    cfg = load_run_config(run)
    cfg["sampler"] = {"guidance": 2.0, "weak_guidance": True}
    training.save_run_config(run, cfg)
    export_run(run, tmp_path / "m", which="last")
    assert "exported with weak_guidance off" in capsys.readouterr().err
    m = MaskGIT.from_dir(tmp_path / "m")
    assert not m.default_settings.weak_guidance and m.default_settings.guidance == 2.0


@pytest.mark.parametrize("command", ["train-tokenizer", "train"])
def test_init_with_resume_is_refused(command, tmp_path, images32, capsys):
    init = _full_model_dir(tmp_path / "init", seed=6)
    rc = main([command, "--init", str(init), "--resume", "--data", str(images32), "--out", str(tmp_path / "run"),
               "--accelerator", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "--init" in err and "--resume" in err, err


def test_train_init_from_a_tokenizer_only_dir_fails_clearly(tmp_path, images32, tok_dir, capsys):
    rc = main(["train", "--init", str(tok_dir), "--data", str(images32), "--out", str(tmp_path / "run"),
               "--accelerator", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and str(tok_dir) in err and "only a tokenizer" in err, err


def test_transformer_init_warns_when_the_tokenizer_is_another(tmp_path, images32, tok_dir, monkeypatch, caplog):
    init = _full_model_dir(tmp_path / "init", seed=7)
    monkeypatch.setattr(training.runs, "_trainer", lambda *a, **k: _CaptureFit({}))
    cfg = _t2_config(images32, batch_size=8, max_steps=2)
    with caplog.at_level("WARNING", logger="maskgit_inpaint"):
        train_transformer(cfg, tmp_path / "same", init, accelerator="cpu", init=init)
    assert "another tokenizer" not in caplog.text
    with caplog.at_level("WARNING", logger="maskgit_inpaint"):
        train_transformer(cfg, tmp_path / "other", tok_dir, accelerator="cpu", init=init)
    assert "another tokenizer" in caplog.text


# ============================================================================= time budget, frozen encoder
def test_time_budget_stops_the_run_with_the_lr_annealed(tmp_path, tok_images):
    t = _t1_config(tok_images, max_steps=-1, max_epochs=100_000, time_budget_s=4, epoch_checkpoints=False,
                   min_lr_ratio=0.1)
    run = train_tokenizer(t, tmp_path / "run", accelerator="cpu")
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    steps = int(last["state_dict"]["step_count"])
    assert 2 <= steps < 2 * 100_000  # stopped by the clock, not by max_epochs
    lr = _rows(run, "lr")
    assert max(lr.values()) > 0.5 * 2e-4  # it warmed up and trained at full LR ...
    assert lr[max(lr)] < 0.3 * 2e-4  # ... and the decay followed the clock down towards the floor
    assert not list((run / "checkpoints").glob("epoch*.ckpt"))  # epoch_checkpoints: false
    assert (run / "checkpoints" / "best.ckpt").is_file()


def test_freeze_encoder_trains_the_decoder_and_keeps_every_token(tmp_path, tok_images, tok_dir):
    run = train_tokenizer(_t1_config(tok_images, max_steps=3, freeze_encoder=True, lr=1e-3), tmp_path / "run",
                          accelerator="cpu", init=tok_dir)
    before = MaskGIT.from_dir(tok_dir, require_transformer=False)
    after = MaskGIT.from_dir(export_run(run, tmp_path / "tok", which="last"), require_transformer=False)
    sd0, sd1 = before.tokenizer.state_dict(), after.tokenizer.state_dict()
    frozen = [k for k in sd0 if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(sd0[k], sd1[k]) for k in frozen)
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0 if k.startswith("decoder."))
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    assert torch.equal(before.tokenizer.encode(x), after.tokenizer.encode(x))


# ============================================================================= inpainting context
def test_context_inputs_mask_only_hole_tokens_and_show_the_masked_views_context():
    g = torch.Generator().manual_seed(0)
    b, v, n = 64, 3, 64
    tokens = torch.randint(0, 100, (b, n), generator=g)
    ctx = torch.randint(100, 200, (b, v, n), generator=g)  # distinguishable from the true tokens
    unknown = torch.rand(b, v, n, generator=g) < 0.3
    base = torch.zeros(b, n, dtype=torch.bool)
    base[:, :5] = True
    inputs, mask = context_inputs(tokens, ctx, unknown, 0.5, generator=torch.Generator().manual_seed(1),
                                  base_mask=base)
    used = (inputs >= 100).any(1)  # samples given a masked view
    assert 10 < int(used.sum()) < 54
    for i in range(b):
        if not used[i]:
            assert torch.equal(inputs[i], tokens[i]) and torch.equal(mask[i], base[i])
            continue
        view = [j for j in range(v) if torch.equal(inputs[i][~unknown[i, j]], ctx[i, j][~unknown[i, j]])]
        assert len(view) == 1
        hole = unknown[i, view[0]]
        assert mask[i].any() and not (mask[i] & ~hole).any()  # masked tokens lie in the hole
        assert torch.equal(inputs[i][hole], tokens[i][hole])  # the rest of the hole: true tokens
    # prob 1: every sample; the masked share of the hole spreads over (0, 1]
    inputs, mask = context_inputs(tokens, ctx, unknown, 1.0, generator=torch.Generator().manual_seed(2))
    assert (inputs >= 100).any(1).all()
    frac = []
    for i in range(b):
        j = next(j for j in range(v) if torch.equal(inputs[i][~unknown[i, j]], ctx[i, j][~unknown[i, j]]))
        frac.append(float(mask[i].sum() / unknown[i, j].sum()))
    assert min(frac) < 0.3 and max(frac) > 0.7 and max(frac) <= 1.0


def test_context_inputs_fall_back_to_the_base_mask_without_a_hole():
    tokens = torch.randint(0, 10, (4, 16))
    ctx = torch.randint(10, 20, (4, 1, 16))
    unknown = torch.zeros(4, 1, 16, dtype=torch.bool)
    base = torch.rand(4, 16) < 0.5
    inputs, mask = context_inputs(tokens, ctx, unknown, 1.0, base_mask=base)
    assert torch.equal(inputs, tokens) and torch.equal(mask, base)


def test_context_cache_holds_masked_views_and_is_reused(tmp_path, images32, tok_dir):
    from maskgit_inpaint.data import context_cache, find_images, token_cache

    tok = MaskGIT.from_dir(tok_dir, require_transformer=False)
    files = find_images(images32)[:8]
    args = (tok.tokenizer, files, 64, [0.5] * 3, [0.5] * 3)
    full = token_cache(tmp_path / "t.safetensors", *args, flip=True)
    toks, unk = context_cache(tmp_path / "c.safetensors", *args, flip=True, views=2, seed=0)
    assert toks.shape == unk.shape == (16, 2, 256) and unk.dtype == torch.bool
    assert unk.any(2).all() and (~unk).any(2).all()  # every view has a hole and known tokens
    assert not torch.equal(toks[:, 0], full) and (toks[:, 0] == full).float().mean() > 0.3
    # the view of image i is that image (not another one) with a hole: check by re-encoding
    from maskgit_inpaint.data import load_folder
    from maskgit_inpaint.masks import harmonic_fill

    again, again_unk = context_cache(tmp_path / "c.safetensors", *args, flip=True, views=2, seed=0)
    assert torch.equal(again, toks) and torch.equal(again_unk, unk)
    other, _ = context_cache(tmp_path / "c.safetensors", *args, flip=True, views=2, seed=1)
    assert not torch.equal(other, toks)  # another seed rebuilds
    # each view is its own image with a hole: re-encode it with the bank mask that covers that hole
    from maskgit_inpaint.data import pixel_mask_bank
    from maskgit_inpaint.masks import pixel_to_token_mask

    bank = pixel_mask_bank(size=64, seed=1234)
    imgs, _ = load_folder(files, 64)
    imgs = torch.cat([imgs, imgs.flip(-1)])
    bank_unk = pixel_to_token_mask(bank, 16)
    for i in (0, 9):  # an image and a mirrored one
        cands = [m for m in range(len(bank)) if torch.equal(bank_unk[m], unk[i, 0])]
        x = tok.normalize(imgs[i:i + 1].float() / 255)
        assert any(torch.equal(tok.tokenizer.encode(harmonic_fill(x, bank[m:m + 1]))[0], toks[i, 0])
                   for m in cands)


def test_transformer_trains_with_context_views_end_to_end(tmp_path, images32, tok_dir):
    cfg = _t2_config(images32, batch_size=8, max_steps=3, context_views=2, context_prob=0.5)
    cfg["data"]["val_fraction"] = 0.25
    run = train_transformer(cfg, tmp_path / "run", tok_dir, accelerator="cpu")
    assert (run / "cache" / "train_context.safetensors").is_file()
    rows = read_metrics(run)
    assert any(r.get("val/context_loss") not in (None, "") for r in rows)
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    bad = _t2_config(images32, batch_size=8, max_steps=1, context_views=1, context_prob=1.5)
    with pytest.raises(ValueError, match="context_prob"):
        train_transformer(bad, tmp_path / "bad", tok_dir, accelerator="cpu")


# ============================================================================= mask-conditioned decoder
def test_tokenizer_init_can_add_a_mask_conditioned_decoder(tmp_path, tok_images, monkeypatch):
    """--init with tokenizer.dec_cond=true: the plain model's weights everywhere, the new branch's
    injections at zero (so training starts from the plain decoder's outputs)."""
    init_cfg = preset("tiny")
    init_cfg["transformer"] = None
    torch.manual_seed(3)
    init = MaskGIT(init_cfg).save(tmp_path / "init")
    store = {}
    monkeypatch.setattr(training.runs, "_trainer", lambda *a, **k: _CaptureFit(store))
    cfg = _t1_config(tok_images)
    cfg["tokenizer"].update(dec_cond=True, dec_cond_levels=2, dec_cond_width=16)
    run = train_tokenizer(cfg, tmp_path / "run", accelerator="cpu", init=init)
    tok = load_run_config(run)["tokenizer"]
    assert (tok["dec_cond"], tok["dec_cond_levels"], tok["dec_cond_width"]) == (True, 2, 16)
    want = MaskGIT.from_dir(init, require_transformer=False).tokenizer.state_dict()
    for k, v in want.items():
        assert torch.equal(store["state"]["vqgan." + k], v), k
    inject = [v for k, v in store["state"].items() if k.startswith("vqgan.decoder.inject.")]
    assert inject and all(not v.any() for v in inject)
    assert any(k.startswith("vqgan.decoder.cond.") for k in store["state"])


def test_conditioned_tokenizer_trains_logs_its_masked_error_and_exports(tmp_path, tok_images):
    cfg = _t1_config(tok_images, max_steps=2, cond_lr_mult=10.0, freeze_encoder=True)
    cfg["tokenizer"]["dec_cond"] = True
    run = train_tokenizer(cfg, tmp_path / "run", accelerator="cpu")
    val = [r for r in read_metrics(run) if r.get("val/l1_cond")]
    assert val and all(0 < float(r["val/l1_cond_hole"]) and 0 < float(r["val/l1_cond"]) for r in val)
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    assert not any(k.startswith("cond_bank") for k in last["state_dict"])  # rebuilt, not saved
    opt_g = last["optimizer_states"][0]
    assert [g["lr"] / opt_g["param_groups"][0]["lr"] for g in opt_g["param_groups"]] == pytest.approx([1.0, 10.0])
    inject = [v for k, v in last["state_dict"].items() if k.startswith("vqgan.decoder.inject.")]
    assert any(v.any() for v in inject)  # the branch learned from its zero start
    model = MaskGIT.from_dir(export_run(run, tmp_path / "tok", which="last"), require_transformer=False)
    assert model.conditioned_decoder
    x = torch.rand(1, 3, 64, 64)
    known = torch.ones(1, 64, 64, dtype=torch.bool)
    known[:, 20:40, 20:40] = False
    assert not torch.allclose(model.decode(model.encode(x), x, known), model.decode(model.encode(x)))


def test_conditioned_decoder_hole_weight_weighs_hole_pixels(tok_images):
    """cond_hole_weight = w: a weighted L1 mean where each hole pixel counts w times a known one;
    1 is the plain mean, and an image with nothing known is unaffected by w."""
    cfg = _t1_config(tok_images, cond_masks=4)
    cfg["tokenizer"]["dec_cond"] = True
    x = torch.zeros(2, 3, 8, 8)
    xr = torch.zeros(2, 3, 8, 8)
    known = torch.ones(2, 8, 8, dtype=torch.bool)
    known[0, :4] = False                       # image 0: top half is hole, error 1 there
    xr[0, :, :4] = 1.0
    xr[0, :, 4:] = 0.5                         # and 0.5 on its known half
    xr[1] = 0.25                               # image 1: everything known, error 0.25
    cond = VQGAN.condition(x, known)
    plain = (x - xr).abs().mean()
    for w, want in [(1.0, plain), (3.0, (3 * 32 * 1.0 + 32 * 0.5 + 64 * 0.25) / (3 * 32 + 32 + 64))]:
        cfg["tokenizer_training"]["cond_hole_weight"] = w
        module = TokenizerModule(cfg, total_steps=1)
        assert float(module._rec_loss(x, xr, cond)) == pytest.approx(float(want))
        assert float(module._rec_loss(x, xr, None)) == pytest.approx(float(plain))
    empty = VQGAN.condition(x, torch.zeros(2, 8, 8, dtype=torch.bool))
    assert float(module._rec_loss(x, xr, empty)) == pytest.approx(float(plain))


def test_conditioned_decoder_hole_weight_must_be_positive(tmp_path, tok_images):
    cfg = _t1_config(tok_images, cond_hole_weight=0.0)
    cfg["tokenizer"]["dec_cond"] = True
    with pytest.raises(ValueError, match="cond_hole_weight must be positive"):
        train_tokenizer(cfg, tmp_path / "run", accelerator="cpu")


def test_cond_only_trains_the_branch_alone_with_the_gan_on(tmp_path, tok_images):
    """cond_only=true: from a plain model, only the conditioning branch learns (with the GAN on,
    whose adaptive weight then reads the branch's finest injection); every other weight, and so
    every token, stays the init model's."""
    init_cfg = preset("tiny")
    init_cfg["transformer"] = None
    torch.manual_seed(4)
    init = MaskGIT(init_cfg).save(tmp_path / "init")
    cfg = _t1_config(tok_images, max_steps=2, lr=1e-3, cond_only=True, cond_hole_weight=4.0)
    cfg["tokenizer"]["dec_cond"] = True
    run = train_tokenizer(cfg, tmp_path / "run", accelerator="cpu", init=init)
    assert any(r.get("train/g_loss") not in (None, "") for r in read_metrics(run))
    state = _ckpt(run / "checkpoints" / "last.ckpt")["state_dict"]
    plain = MaskGIT.from_dir(init, require_transformer=False)
    for k, v in plain.tokenizer.state_dict().items():
        assert torch.equal(state["vqgan." + k], v), k
    assert any(v.any() for k, v in state.items() if k.startswith("vqgan.decoder.inject."))
    model = MaskGIT.from_dir(export_run(run, tmp_path / "tok", which="last"), require_transformer=False)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.encode(x), plain.encode(x))


def test_cond_only_needs_a_conditioned_decoder(tmp_path, tok_images):
    with pytest.raises(ValueError, match="cond_only=true.*dec_cond=true"):
        train_tokenizer(_t1_config(tok_images, cond_only=True), tmp_path / "run", accelerator="cpu")


def test_training_stopped_before_its_first_validation_passes_on_no_lightning_noise(tmp_path, images32, tok_dir,
                                                                                   capfd):
    """Both stages stopped by --max-steps mid-epoch (which ends the epoch with a validation), and
    a run without validation: no missing-key warning for `best`; Lightning's tips and warnings
    about its own internals stay out too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc1 = main(["train-tokenizer", "--data", str(images32), "--out", str(tmp_path / "t"), "--preset", "tiny",
                    "--max-steps", "2", "--batch-size", "8", "--accelerator", "cpu",
                    "--set", "tokenizer_training.ckpt_every_steps=1", "--set", "tokenizer_training.disc_start=1"])
        rc2 = main(["train", "--data", str(images32), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "s"),
                    "--preset", "tiny", "--max-steps", "2", "--batch-size", "8", "--accelerator", "cpu"])
        rc3 = main(["train", "--resume", "--data", str(images32), "--out", str(tmp_path / "s"),
                    "--max-steps", "3", "--accelerator", "cpu"])
        rc4 = main(["train-tokenizer", "--data", str(images32), "--out", str(tmp_path / "t0"), "--preset", "tiny",
                    "--max-steps", "1", "--batch-size", "8", "--accelerator", "cpu", "--set", "data.val_fraction=0"])
    assert rc1 == rc2 == rc3 == rc4 == 0
    text = "\n".join(str(w.message) for w in caught) + "".join(capfd.readouterr())
    for noise in ("could not find the monitored key", "Detected call of `lr_scheduler.step()`", "Tip:",
                  "LeafSpec", "manual optimization", "smaller than the logging interval",
                  "exists and is not empty", "but have no `val_dataloader`"):
        assert noise not in text, noise
    assert _ckpt(tmp_path / "s" / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_loss_curve_of_a_run_with_nothing_logged_yet_is_written_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = training.plot_loss_curve(tmp_path, ("train/l1", "val/l1"))
    assert Image.open(out).size[0] > 100
