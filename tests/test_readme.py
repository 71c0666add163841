"""The README's Python example runs as written (on the bundled model), and its commands name
only flags that exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgit_inpaint.cli import build_parser
from maskgit_inpaint.model import has_default_model

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


@pytest.mark.skipif(not has_default_model(), reason="no bundled model")
def test_the_python_example_runs(tools, tmp_path, monkeypatch):
    (code,) = _blocks("python")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(tools.synthetic_image(rng, 64)) for _ in range(2)]
    hole = np.zeros((64, 64), np.uint8)
    hole[20:40, 16:48] = 255
    imgs[0].save("cat.png")
    Image.fromarray(hole).save("hole.png")
    ns = {"img1": imgs[0], "img2": imgs[1], "mask1": hole, "mask2": Image.fromarray(hole)}
    exec(compile(code, str(README), "exec"), ns)
    out = Image.open("filled.png")
    assert out.size == (64, 64)
    assert isinstance(ns["outs"], list) and len(ns["outs"]) == 2
    a, src = np.asarray(out.convert("RGB")), np.asarray(imgs[0])
    assert np.array_equal(a[hole == 0], src[hole == 0])  # known pixels kept
    assert not np.array_equal(a[hole > 0], src[hole > 0])


def test_every_command_in_the_readme_parses(monkeypatch):
    parser = build_parser()
    cmds = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("maskgit "):
                cmds.append(line)
    assert len(cmds) >= 10
    for line in cmds:
        argv = [a if a != "..." else "x" for a in shlex.split(line)[1:]]
        if "--help" in argv:
            continue
        parser.parse_args(argv)  # SystemExit (exit 2) on an unknown flag or a bad choice


def test_every_training_key_is_in_the_training_reference():
    from dataclasses import fields

    from maskgit_inpaint.training import TokenizerTraining, TransformerTraining

    text = (README.parent / "docs" / "training.md").read_text()
    stage1, stage2 = text.split("## Stage 2")
    for cls, part in ((TokenizerTraining, stage1), (TransformerTraining, stage2)):
        missing = [f.name for f in fields(cls) if f"`{f.name}`" not in part]
        assert not missing, f"docs/training.md lacks {cls.__name__} keys {missing}"
