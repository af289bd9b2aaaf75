"""The generated code beside report.proto matches it (`make proto` regenerates)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("report_pb2.py", "report_pb2.pyi", "report_pb2_grpc.py", "report_pb2_grpc.pyi")


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    source = tmp_path / "preflight" / "v1"
    source.mkdir(parents=True)
    shutil.copy(ROOT / "proto/preflight/v1/report.proto", source)
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--mypy_out={tmp_path}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_grpc_out={tmp_path}",
            str(source / "report.proto"),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    for name in GENERATED:
        fresh = (source / name).read_text()
        committed = (ROOT / "proto/preflight/v1" / name).read_text()
        assert fresh == committed, f"{name} drifted from report.proto: run `make proto`"


def test_failure_reasons_are_exactly_the_design_enum() -> None:
    from agent.probes.results import FAILURE_REASONS, PHASES
    from preflight.enums import PHASES as WIRE_PHASES
    from preflight.enums import REASONS

    assert REASONS.names == FAILURE_REASONS
    assert WIRE_PHASES.names == PHASES
