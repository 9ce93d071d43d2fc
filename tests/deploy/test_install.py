"""deploy/install.sh's two decisions, run for real with stand-ins for pip and apt (nothing is installed).

- The CPU torch wheel comes from an index the script names (KEEL_TORCH_INDEX overrides it), and the
  machine's own pip configuration is the fallback.
- Under CI=true a browser that apt cannot install fails the install instead of a warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _install(
    tmp_path: Path, *, pip_index_fails: bool = False, **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a copy of install.sh with a fake interpreter (logs its arguments), apt-get that fails,
    no chromium, no fonts, and root, on a PATH that holds only those stand-ins."""
    root = tmp_path / "repo"
    (root / "deploy").mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "install.sh", root / "deploy" / "install.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "python.log"
    fail = '[[ "$*" == *--index-url* ]] && exit 1' if pip_index_fails else ""
    _stub(bin_dir / "fakepython", f'echo "$*" >> {log}\n{fail}\nexit 0')
    _stub(bin_dir / "apt-get", "exit 100")
    _stub(bin_dir / "dpkg", "exit 1")
    _stub(bin_dir / "id", "echo 0")
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    run_env = {"PATH": str(bin_dir), "PYTHON": str(bin_dir / "fakepython"), "HOME": str(tmp_path), **env}
    proc = subprocess.run(
        ["/bin/bash", str(root / "deploy" / "install.sh")],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_cpu_torch_comes_from_the_named_index(tmp_path):
    proc, calls = _install(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "-m pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu"


def test_the_torch_index_is_overridable_and_pip_config_is_the_fallback(tmp_path):
    proc, calls = _install(tmp_path, pip_index_fails=True, KEEL_TORCH_INDEX="file:///mirror/torch")
    assert proc.returncode == 0, proc.stderr
    assert calls[:2] == [
        "-m pip install -q --index-url file:///mirror/torch torch==2.13.0+cpu",
        "-m pip install -q torch==2.13.0+cpu",
    ]
    assert "not found at file:///mirror/torch" in proc.stderr


def test_in_ci_a_browser_apt_cannot_install_fails_the_install(tmp_path):
    proc, calls = _install(tmp_path, CI="true")
    assert proc.returncode != 0
    assert "CI=true" in proc.stderr and "chromium" in proc.stderr
    assert not any("keel --help" in c for c in calls)  # it stopped before declaring success


def test_outside_ci_the_same_failure_is_a_warning(tmp_path):
    proc, _ = _install(tmp_path)
    assert proc.returncode == 0
    assert "warning: chromium fonts-noto-cjk not installed" in proc.stderr
