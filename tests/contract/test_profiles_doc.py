"""docs/profiles.md and `preflight profiles` against the shipped profile files.

The side-by-side table is generated from the files and must not drift; every value of
the later profiles cites a source code of the reference; runai-2020 stays the default.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from collector.config import CollectorConfig
from preflight import cli
from preflight.profile import Profile, load_profile, shipped_profiles
from preflight.profile_table import BEGIN, END, markdown, render_doc, shipped
from preflight.strict import Strict, field_types

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "profiles.md"
PROFILES = REPO / "proto" / "preflight" / "profiles"
REFERENCE = Path("/work/shared/reference/runai-requirements-2023-2026.md")
LATER = ("runai-2.13", "runai-2.18", "runai-2.25")
# Source codes of reference/runai-requirements-2023-2026.md, and "(ours)".
CODES = re.compile(r"\b(D[1-9]|G[1-4]|N[12]|PD|GO)\b|\(ours\)")
# Keys whose value is a requirement threshold or fact: each must cite where it comes from.
CITED_KEYS = re.compile(
    r"^\s*(-\s+name|minimum|maximum|recommended|cpus|memory_bytes|root_disk_bytes|label|"
    r"allowed|excluded|max_skew|fail_after|pass_after|[a-z_]+: \[(?:install|runtime))"
)


def test_the_doc_table_is_generated_from_the_profiles() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, "docs/profiles.md drifted: python -m preflight.profile_table"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    for name in shipped_profiles():
        assert f"`{name}`" in table


def test_the_drift_check_sees_an_edited_cell(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8").replace("1.33–1.35", "1.33–1.36", 1)
    assert render_doc(text) != text


def test_table_columns_follow_the_profiles() -> None:
    table = markdown(shipped())
    header = table.splitlines()[0]
    assert (
        header.index("`runai-2020`") < header.index("`runai-2.13`") < header.index("`runai-2.25`")
    )
    row = next(line for line in table.splitlines() if line.startswith("| `default_storage_class`"))
    assert row.split("|")[2:6] == [" — ", " — ", " — ", " install "]


@pytest.mark.parametrize("name", LATER)
def test_every_value_of_a_later_profile_cites_its_source(name: str) -> None:
    lines = (PROFILES / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    cited = [line for line in lines if CITED_KEYS.match(line)]
    assert len(cited) >= 10
    uncited = [line for line in cited if "#" not in line or not CODES.search(line.split("#", 1)[1])]
    assert not uncited, uncited


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference is not on this machine")
def test_cited_codes_exist_in_the_reference() -> None:
    reference = REFERENCE.read_text(encoding="utf-8")
    for name in LATER:
        text = (PROFILES / f"{name}.yaml").read_text(encoding="utf-8")
        for code in {m.group(1) for m in CODES.finditer(text) if m.group(1)}:
            assert re.search(rf"\b{code}\b", reference), (name, code)


def test_runai_2020_stays_the_default_and_judges_the_2020_set() -> None:
    assert CollectorConfig().profile == "runai-2020"
    profile = load_profile("runai-2020")
    assert profile.requirements is None
    assert set(profile.requirement_phases()) == {
        "kubernetes_version",
        "control_plane_hardware",
        "shared_volume",
        "egress_install",
        "egress_runtime",
        "agent_coverage",
        "gpu_nodes",
    }


def test_unknown_requirement_ids_are_config_errors(tmp_path: Path) -> None:
    from preflight.configfile import ConfigError

    text = (PROFILES / "runai-2.25.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("  container_runtime: [install, runtime]", "  clock_skew: [install]")
    )
    with pytest.raises(ConfigError, match="clock_skew"):
        load_profile(str(bad))


def test_preflight_profiles_lists_every_shipped_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in shipped_profiles():
        assert name in out
    assert "(default)" in out and "\x1b[" not in out  # no colour into a pipe


def test_preflight_profiles_name_prints_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profiles", "runai-2.25"]) == 0
    out = capsys.readouterr().out
    for expected in ("1.33–1.35", "4.18–4.21", "25.10–26.3", "containerd, cri-o", "nvcr.io"):
        assert expected in out
    assert "runai-2.18" not in out


def test_preflight_profiles_unknown_name_is_a_config_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["profiles", "runai-9.99"]) == 2
    assert "runai-9.99" in capsys.readouterr().err


def _leaf_fields(model: type[Strict], prefix: str = "") -> list[tuple[str, str]]:
    """(section, field) of every setting of a profile model, nested sections flattened."""
    out: list[tuple[str, str]] = []
    for name, annotation in field_types(model).items():
        nested = [
            a
            for a in (annotation, *typing.get_args(annotation))
            for a in (a, *typing.get_args(a))
            if isinstance(a, type) and issubclass(a, Strict)
        ]
        if nested:
            out.extend(_leaf_fields(nested[0], f"{prefix}{name}."))
        else:
            out.append((prefix.rstrip(".") or name, name))
    return out


def test_every_profile_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Profile file keys", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    missing = [
        f"{section}.{name}"
        for section, name in _leaf_fields(Profile)
        if not any(f"`{section}" in row.split("|")[1] and name in row for row in rows)
    ]
    assert not missing, missing
