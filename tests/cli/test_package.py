"""The package installs like one: a wheel carries the demo's assets and bundles, and works from any folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_BUNDLES = ("demo-subj01", "demo-subj02", "demo-subj05", "demo-subj07", "demo-average",
                "demo-subj01-true-features")


def _can_build_offline() -> str | None:
    """Why ``pip wheel --no-build-isolation`` cannot build here, or None (setuptools >= 70.1 has bdist_wheel)."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip install -r requirements.txt lists it)"
    import setuptools

    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} lacks bdist_wheel (pip install 'setuptools>=70.1')"
    return None


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build a wheel of the working tree, install it with --target; returns the target folder."""
    reason = _can_build_offline()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("package")
    # Build from a clean copy: setuptools reuses ./build/lib, so an in-tree build would ship files since deleted
    # from the source (checked: a file left in build/lib/braindiff_app/ lands in the wheel), and would write
    # build/ and *.egg-info into the checkout.
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "test-output", "*.whl"))
    wheels = tmp / "wheels"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", "-w", str(wheels), str(source),
         cwd=tmp)
    (wheel,) = wheels.glob("braindiff-*.whl")
    _pip("install", "--no-deps", "--no-index", "--no-cache-dir", "--target", str(tmp / "site"), str(wheel), cwd=tmp)
    return wheel


def _run_installed(wheel: Path, *args: str) -> str:
    """Run ``python ARGS`` from a folder outside the repo, importing only the installed copy."""
    tmp = wheel.parent.parent
    work = tmp / "elsewhere"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINDIFF_")}
    env.update(PYTHONPATH=str(tmp / "site"), HOME=str(tmp / "home"), BRAINDIFF_HOME=str(tmp / "home" / ".braindiff"),
               XDG_CONFIG_HOME=str(tmp / "home" / ".config"), GRADIO_ANALYTICS_ENABLED="False")
    result = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wheel_carries_the_demo_assets_and_bundles(installed):
    names = set(zipfile.ZipFile(installed).namelist())
    assert "braindiff_app/precomputed/demo-subj01/manifest.json" in names
    assert "braindiff_app/assets/demo/models/vdvae/model.safetensors" in names
    assert "braindiff_app/assets/demo/models/vd/image_encoder/config.json" in names
    assert "braindiff_app/assets/demo/anatomy/flatmap.png" in names
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "braindiff = braindiff_app.cli:main" in zipfile.ZipFile(installed).read(entry_points).decode()


def test_installed_package_runs_from_another_folder(installed):
    site = installed.parent.parent / "site"
    package = site / "braindiff_app"
    imported = _run_installed(installed, "-c", "import braindiff_app; print(braindiff_app.__file__)")
    assert Path(imported.strip()) == package / "__init__.py"

    out = _run_installed(installed, "-m", "braindiff_app", "doctor")
    assert f"bundle folders: {package / 'precomputed'}, " in out  # the installed copy, not the repo's
    assert str(REPO / "braindiff_app") not in out
    for feature in ("demo demo anatomy, ROIs and flatmap", "demo browse precomputed demo bundles",
                    "demo stage 1 (demo VDVAE)", "demo stage 2 (demo Versatile Diffusion) and CLIP features",
                    "demo evaluation: demo-CLIP identification",
                    "demo ROI studio subj01 (`braindiff roi`) from the committed demo workspace"):
        assert f"[ok     ] {feature}" in out

    out = _run_installed(installed, "-m", "braindiff_app", "bundles")
    for name in DEMO_BUNDLES:
        subject = name.removeprefix("demo-subj")[:2].lstrip("0") if "subj" in name else "average"
        if name.endswith("-true-features"):
            subject += " (from true features: the image models' ceiling)"
        assert f"  {name}  subject {subject}  tier demo  100 trials  metrics: PixCorr, SSIM, SSIM-ref, demo-CLIP" in out
        assert f"      {package / 'precomputed' / name}\n" in out
    assert "6 bundle(s):" in out and "could not be opened" not in out
