"""Packaging: a normal (non-editable) install ships the grammar and works outside the repository."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import MODELS, REPO


@pytest.mark.slow
def test_wheel_installs_and_checks_a_model_outside_the_repo(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True)
    wheel = next(wheels.glob("graphc-*.whl"))
    target = tmp_path / "site"
    # Install only graphc from the wheel into its own directory; numpy, lark and
    # networkx come from the running interpreter's environment.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    model = tmp_path / "lenet5.nn"
    model.write_text((MODELS / "lenet5.nn").read_text())
    where = subprocess.run([sys.executable, "-c", "import graphc, os; print(os.path.dirname(graphc.__file__))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert str(target) in where, f"graphc was imported from {where}, not from the installed wheel"
    assert (Path(where) / "grammar" / "graphc.lark").exists()
    result = subprocess.run([sys.executable, "-m", "graphc", "check", str(model)], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "61,706" in result.stdout
