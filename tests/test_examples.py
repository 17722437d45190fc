"""The examples run by hand as documented, in a fresh directory, and tell their story."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("GRAFLOW_CHECKPOINT_KEY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=45,
    )


def test_training_resumes_from_the_saved_epoch(tmp_path: Path) -> None:
    proc = run_example("train_with_checkpoints.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout

    first, _, after = out.partition("== resuming ==")
    assert "crashed: task 'train' failed: MachineLost" in first
    epochs_before = [int(e) for e in re.findall(r"epoch +(\d+)/10", first)]
    assert epochs_before == list(range(1, 9))  # crashed during epoch 8

    saved = re.search(r"resumed from the checkpoint of epoch (\d+)", after)
    assert saved is not None, out
    k = int(saved.group(1))
    assert k == 6  # the last checkpoint before the crash (every 3 epochs)
    epochs_after = [int(e) for e in re.findall(r"epoch +(\d+)/10", after)]
    assert epochs_after == list(range(k + 1, 11))  # continued, not from epoch 1

    assert out.count("load_data: ") == 1  # not loaded again
    assert re.search(r"completed; evaluate -> \{'accuracy': 0\.9\d+, 'final_loss': 0\.1\d+\}", out)
    assert "load_data ran 1 time(s), train 2 time(s)" in out

    run_dir = re.search(r"== first run (train-[0-9a-f]+)", out)
    assert run_dir is not None
    stored = sorted(p.name for p in (tmp_path / ".graflow" / "checkpoints" / run_dir.group(1)).iterdir())
    assert stored == ["1.ckpt", "2.ckpt", "3.ckpt"]  # epochs 3 and 6, then 9 after resuming


def test_training_store_option(tmp_path: Path) -> None:
    proc = run_example("train_with_checkpoints.py", "--store", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from epoch 6: trained epochs 7-10" in proc.stdout
    assert not (tmp_path / ".graflow").exists()
    assert len(list((tmp_path / "elsewhere").rglob("*.ckpt"))) == 3
