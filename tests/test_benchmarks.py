"""The benchmarks in smoke mode (tiny preset, one small batch): they keep running as the code
changes, and print the one JSON line the docs' tables are read from. No timing is asserted."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_line(capsys) -> dict:
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.out
    assert "torch.profiler" in captured.err and "Self CPU" in captured.err
    return json.loads(lines[0])


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_inpaint_throughput_smoke(capsys):
    from maskgit_inpaint.precision import auto_precision

    out = _load("inpaint_throughput").main(["--smoke", "--threads", "1", "--profile-rows", "5"])
    line = _json_line(capsys)
    assert line == json.loads(json.dumps(out))
    auto = auto_precision("cpu")
    assert line["preset"] == "tiny" and line["auto_precision"] == auto and line["processor"]
    for key in ("seed_loop_ms_per_image", "ours_fp32_ms_per_image", f"ours_{auto}_ms_per_image",
                "speedup_fp32", "speedup_auto"):
        assert line[key] > 0, key
    assert isinstance(line["cpu_flags"], list) and line["native_bf16"] == (auto != "fp32")


def test_train_throughput_smoke(capsys):
    from maskgit_inpaint.precision import auto_precision

    _load("train_throughput").main(["--smoke", "--threads", "1", "--profile-rows", "5"])
    line = _json_line(capsys)
    auto = auto_precision("cpu", "training")
    assert line["preset"] == "tiny" and line["batch_size"] == 2
    assert line["training_precision_auto"] == ("bf16-mixed" if auto == "bf16" else "32-true")
    for key in ("ours_fp32_images_per_s", "seed_loop_fp32_images_per_s", f"ours_{auto}_images_per_s",
                f"seed_loop_{auto}_images_per_s"):
        assert line[key] > 0, key


def test_sampler_timing_smoke(capsys):
    out = _load("sampler_timing").main(["--smoke", "--threads", "1"])
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip()) == json.loads(json.dumps(out))
    names = _load("sampler_timing").OPTIONS
    assert set(out["ms_per_image"]) == {f"T2 {o}" for o in names}
    assert all(len(v) == 1 and v[0] > 0 for v in out["ms_per_image"].values())
    assert "round 1:" in captured.err and out["images"] == 2


def test_sampler_timing_rejects_unknown_option():
    with pytest.raises(SystemExit):
        _load("sampler_timing").main(["--smoke", "--options", "default,nope"])
