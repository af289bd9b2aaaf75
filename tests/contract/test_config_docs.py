"""docs/configuration.md cannot drift: every key of both config models is documented.

Walks AgentConfig (strict dataclasses) and CollectorConfig (pydantic model_fields),
recursively, lists of sections as `key[].sub`, and requires each key path as a table
row of its section, with a default column; and the shipped configs use only documented keys.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from agent.config import AgentConfig
from collector.config import CollectorConfig
from preflight.strict import Strict, field_types

Section = type[BaseModel] | type[Strict]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"


def _fields(model: Section) -> dict[str, Any]:
    """name -> annotation, for a strict dataclass section or a pydantic model."""
    if issubclass(model, Strict):
        return field_types(model)
    return {name: field.annotation for name, field in model.model_fields.items()}


def _nested(annotation: Any) -> tuple[Section | None, bool]:
    """The config section inside an annotation, and whether it is a list of them."""
    section: Section | None = None
    is_list = False
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel | Strict):
            section = item
        else:
            if typing.get_origin(item) in (tuple, list):
                is_list = True
            stack.extend(typing.get_args(item))
    return section, is_list


def key_paths(model: Section, prefix: str = "") -> list[str]:
    paths = []
    for name, annotation in _fields(model).items():
        path = prefix + name
        paths.append(path)
        section, is_list = _nested(annotation)
        if section is not None:
            paths.extend(key_paths(section, path + ("[]." if is_list else ".")))
    return paths


def documented_rows(section: str) -> dict[str, list[str]]:
    """Table rows of one `## ` section: key path -> the remaining cells."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(section)}.*?(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/configuration.md has no section '## {section}'"
    rows = {}
    for line in match.group(0).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize(
    ("section", "model"),
    [("Agent", AgentConfig), ("Collector", CollectorConfig)],
)
def test_every_config_key_is_documented(section: str, model: Section) -> None:
    rows = documented_rows(section)
    paths = key_paths(model)
    missing = [p for p in paths if p not in rows]
    assert not missing, f"undocumented {section.lower()} config keys: {missing}"
    stale = [p for p in rows if p not in paths]
    assert not stale, f"documented keys that no longer exist: {stale}"
    for path, (type_, default, meaning) in ((p, rows[p][:3]) for p in paths):
        assert type_ and default and meaning, f"{path}: type, default and meaning required"


def test_walk_finds_nested_and_list_keys() -> None:
    paths = key_paths(AgentConfig)
    assert "egress.targets[].expect_status" in paths
    assert "mounts.volumes[].write_expected" in paths
    assert "egress.proxy.no_proxy" in paths
    assert "kubernetes.refresh_interval" in key_paths(CollectorConfig)


def _used_paths(data: Any, prefix: str = "") -> list[str]:
    paths = []
    if isinstance(data, dict):
        for key, value in data.items():
            paths.append(prefix + key)
            paths.extend(_used_paths(value, prefix + key + "."))
    elif isinstance(data, list):
        for item in data:
            paths.extend(_used_paths(item, prefix[:-1] + "[]."))
    return paths


def test_documented_examples_are_valid_configs() -> None:
    """The full example files in the page load with the real models."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    AgentConfig.from_mapping(yaml.safe_load(blocks[0]))
    CollectorConfig.model_validate(yaml.safe_load(blocks[1]))
    assert set(_used_paths(yaml.safe_load(blocks[0]))) <= set(key_paths(AgentConfig))


INSTALL = REPO / "docs" / "install.md"


def test_install_doc_lists_every_overlay() -> None:
    text = INSTALL.read_text()
    for overlay in (REPO / "deploy" / "kustomize" / "overlays").iterdir():
        assert f"| `{overlay.name}` |" in text, f"overlay {overlay.name} not in docs/install.md"


def test_install_doc_site_overlay_command_renders_with_the_image(tmp_path: Path) -> None:
    """Step 2 of the three commands, run as written, yields the operator's image."""
    import shutil
    import subprocess

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    [step] = [line for line in INSTALL.read_text().splitlines() if line.startswith("mkdir -p site")]
    (tmp_path / "deploy").symlink_to(REPO / "deploy")
    image = "registry.example.com:5000/team/preflight:1.2.3"
    subprocess.run(["sh", "-c", step], cwd=tmp_path, env={"IMAGE": image}, check=True)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    images = {
        c["image"]
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] in {"DaemonSet", "Deployment"}
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {image}
