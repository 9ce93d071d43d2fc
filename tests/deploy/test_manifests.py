"""Every file in deploy/ is checked by a real validator, so a typo fails CI (no Docker engine or cluster here).

yamllint (all YAML), kubernetes-validate --strict (every Kubernetes manifest, and the kustomize output
when kubectl is there), the Compose specification's JSON schema (check-jsonschema's vendored copy; plus
`docker compose config` where the plugin exists), hadolint (Dockerfiles), shellcheck (scripts),
systemd-analyze verify (the unit, where systemd-analyze exists), Keel's own settings loader (every Keel
config file, including those embedded in the compose file and the ConfigMap: unknown keys are errors),
and the Grafana dashboard against the series keel.metrics really exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "serving" / "k8s"
YAMLLINT_CONFIG = (
    "{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
    "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}"
)


def _bin(name: str) -> str:
    """A linter installed from PyPI by the dev extra (next to this interpreter, or on PATH)."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' (deploy/install.sh does)")
    return found


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def k8s_manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yamllint(path: Path):
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    problems = list(linter.run(path.read_text(), YamlLintConfig(YAMLLINT_CONFIG), str(path)))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column}: {p.message} ({p.rule})" for p in problems)


def _validate_k8s(docs: list[dict], where: str) -> list[str]:
    import kubernetes_validate

    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {e.message}")
    return errors


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda p: p.name)
def test_kubernetes_manifests_validate_strictly(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    assert not _validate_k8s(docs, path.name)


def test_kustomization_lists_every_manifest_and_renders():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(p.name for p in k8s_manifests())
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the per-file validation above still ran")
    out = _run([kubectl, "kustomize", str(K8S)])
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert not _validate_k8s(docs, "kustomize output")
    assert all(d["metadata"].get("namespace") == "keel" for d in docs if d["kind"] != "Namespace")


def test_kubernetes_serving_shape():
    """Each replica set: a Deployment with a Service, /health readiness, the checkpoint volume at one path,
    and the gateway's config naming exactly those Services."""
    docs = [d for p in k8s_manifests() for d in yaml.safe_load_all(p.read_text()) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    engines = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("vllm-")]
    assert len(engines) >= 2
    mount_paths = set()
    for dep in engines:
        name = dep["metadata"]["name"]
        assert ("Service", name) in by, f"{name} has no Service"
        svc = by[("Service", name)]
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        ckpt = next(n for n, claim in claims.items() if claim == "keel-checkpoints")
        mount_paths.add(mounts[ckpt])
    keel = by[("Deployment", "keel")]
    assert keel["spec"]["replicas"] == 1 and keel["spec"]["strategy"]["type"] == "Recreate"
    kc = keel["spec"]["template"]["spec"]["containers"][0]
    assert kc["readinessProbe"]["httpGet"]["path"] == "/health"
    mount_paths |= {m["mountPath"] for m in kc["volumeMounts"] if m["name"] == "checkpoints"}
    assert mount_paths == {"/var/lib/keel/checkpoints"}, mount_paths
    cfg = yaml.safe_load(by[("ConfigMap", "keel-config")]["data"]["keel.yaml"])
    assert sorted(cfg["engine"]["external_urls"]) == sorted(
        f"http://{d['metadata']['name']}:8100" for d in engines
    )


def test_compose_file_follows_the_compose_specification():
    compose = DEPLOY / "serving" / "compose.yaml"
    out = _run([_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)])
    assert out.returncode == 0, out.stdout + out.stderr
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        out = _run([docker, "compose", "-f", str(compose), "config", "--quiet"])
        assert out.returncode == 0, out.stderr
    spec = yaml.safe_load(compose.read_text())
    replicas = [n for n in spec["services"] if n.startswith("vllm-")]
    assert len(replicas) >= 2
    for n in replicas:
        svc = spec["services"][n]
        assert "ports" not in svc, f"{n} publishes vLLM's unauthenticated admin routes"
        assert "checkpoints:/var/lib/keel/checkpoints" in svc["volumes"]
    cfg = yaml.safe_load(spec["configs"]["keel-config"]["content"])
    assert sorted(cfg["engine"]["external_urls"]) == sorted(f"http://{n}:8100" for n in replicas)


def keel_configs() -> list[tuple[str, dict]]:
    """Every Keel settings file shipped in deploy/, the embedded ones too."""
    out = []
    files = [
        *sorted((DEPLOY / "serving").glob("*replicas.yaml")),
        *sorted((DEPLOY / "deepspeed").glob("cycle-*.yaml")),
        DEPLOY / "platform" / "keel.yaml",
    ]
    for p in files:
        out.append((str(p.relative_to(DEPLOY)), yaml.safe_load(p.read_text())))
    compose = yaml.safe_load((DEPLOY / "serving" / "compose.yaml").read_text())
    out.append(
        (
            "serving/compose.yaml configs.keel-config",
            yaml.safe_load(compose["configs"]["keel-config"]["content"]),
        )
    )
    cm = yaml.safe_load((K8S / "config.yaml").read_text())
    out.append(("serving/k8s/config.yaml keel.yaml", yaml.safe_load(cm["data"]["keel.yaml"])))
    return out


@pytest.mark.parametrize("name,data", keel_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_keel_config_files_load(name: str, data: dict, tmp_path: Path, monkeypatch):
    from keel.config import load_settings

    for var in ("KEEL_CONFIG", "KEEL_DATA_DIR", "KEEL_MODEL__PATH", "KEEL_RAG__CORPUS_PATHS"):
        monkeypatch.delenv(var, raising=False)
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    load_settings(f)  # unknown keys and bad values raise ConfigError naming the dotted path


def test_cycle_launcher_configs_set_real_recipe_keys():
    """The DeepSpeed cycle configs override recipe keys that the training stages really have."""
    import dataclasses

    from training.config import make_config

    for f in sorted((DEPLOY / "deepspeed").glob("cycle-*.yaml")):
        cycle = yaml.safe_load(f.read_text())["cycle"]
        assert cycle["launcher"]["kind"] == "deepspeed"
        for stage in ("cpt", "sft", "dpo"):
            fields = {x.name for x in dataclasses.fields(make_config(stage, {}))}
            assert set(cycle[stage]["overrides"]) <= fields, (f.name, stage)


def test_keel_config_loader_catches_a_typo(tmp_path: Path):
    """The check above can fail: a misspelt key in a shipped-style file is refused."""
    from keel.config import ConfigError, load_settings

    f = tmp_path / "c.yaml"
    f.write_text("engine:\n  external_url: [http://vllm-a:8100]\n")
    with pytest.raises(ConfigError, match="external_url"):
        load_settings(f)


def test_dockerfiles_pass_hadolint():
    files = sorted(DEPLOY.rglob("Dockerfile*"))
    assert len(files) >= 2
    out = _run([_bin("hadolint"), "--failure-threshold", "info", *map(str, files)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_lint_catches_a_typo(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text((DEPLOY / "platform" / "Dockerfile.cpu").read_text().replace("WORKDIR", "WORKDRI"))
    assert _run([_bin("hadolint"), str(bad)]).returncode != 0


def test_shell_scripts_pass_shellcheck():
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert scripts
    out = _run([_bin("shellcheck"), "--severity=warning", *map(str, scripts)])
    assert out.returncode == 0, out.stdout


def test_systemd_unit_verifies(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = (DEPLOY / "platform" / "keel.service").read_text()
    assert "ExecStart=/opt/keel/venv/bin/keel up" in unit
    keel = shutil.which("keel") or str(Path(sys.executable).with_name("keel"))
    # verify checks that ExecStart exists: point it at this machine's keel
    (tmp_path / "keel.service").write_text(unit.replace("/opt/keel/venv/bin/keel", keel))
    out = _run([analyze, "verify", str(tmp_path / "keel.service")])
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "keel.service" in ln]
    assert out.returncode == 0 and not lines, "\n".join(lines) or out.stderr
    # and the check can fail: a misspelt key is reported
    (tmp_path / "keel.service").write_text(
        unit.replace("/opt/keel/venv/bin/keel", keel).replace("KillMode", "KilMode")
    )
    out = _run([analyze, "verify", str(tmp_path / "keel.service")])
    assert "KilMode" in out.stdout + out.stderr


def test_grafana_dashboard_reads_series_keel_exports():
    dash = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    source = (REPO / "platform" / "keel" / "metrics.py").read_text()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    unknown = set()
    for expr in exprs:
        for name in re.findall(r"\bkeel_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|count|sum|total)$", "", name)
            if f'"{base}"' not in source:
                unknown.add(name)
    assert not unknown, f"dashboard reads series keel.metrics does not export: {sorted(unknown)}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrape_config_authenticates():
    cfg = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    (job,) = cfg["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    promtool = shutil.which("promtool")
    if promtool:
        out = _run(
            [promtool, "check", "config", "--syntax-only", str(DEPLOY / "monitoring" / "prometheus.yml")]
        )
        assert out.returncode == 0, out.stdout + out.stderr
