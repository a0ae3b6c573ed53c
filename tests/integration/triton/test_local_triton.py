"""The embedded Triton's life cycle: readiness of every model, no stub left behind, /dev/shm checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from server.errors import InferenceUnavailable
from server.inference import process_group, shm
from server.inference.artifacts import ModelArtifact
from server.inference.local_triton import LocalTriton
from server.inference.triton_repository import SAM3_INSTANCES, SAM3_MODEL, SERVED_MODELS
from server.inference.triton_runs import STUB_PROGRAM, RunRecord, end_run, reap_leftovers
from tests.integration.triton.crashed import crash_a_service

pytestmark = pytest.mark.integration


def _stubs(server_pid: int) -> list[int]:
    return [p for p in process_group.members(server_pid) if STUB_PROGRAM in process_group.command_line(p)]


def _regions(prefix: str) -> list[Path]:
    return sorted(shm.SHM_DIR.glob(f"{prefix}*"))


def _kill9_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid in process_group.members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_start_waits_for_every_graph_model(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    repository = tiny_artifact.cpu_repository(tmp_path / "repository")
    # A model that loads slowly, as the full-size graphs do (gigabytes of weights).
    model = repository / SAM3_MODEL / "1" / "model.py"
    code = model.read_text()
    model.write_text(
        code.replace(
            "    def initialize(self, args):\n",
            "    def initialize(self, args):\n        __import__('time').sleep(6)\n",
            1,
        )
    )
    assert model.read_text() != code
    server = LocalTriton(repository, tmp_path)
    try:
        server.start()
        client = grpcclient.InferenceServerClient(server.url)
        try:
            assert {m: client.is_model_ready(m) for m in SERVED_MODELS} == dict.fromkeys(SERVED_MODELS, True)
        finally:
            client.close()
    finally:
        server.stop()


def test_no_stub_outlives_a_killed_server(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    server = LocalTriton(tiny_artifact.cpu_repository(tmp_path / "repository"), tmp_path)
    server.start()
    try:
        assert server.pid is not None
        pid = server.pid
        record = RunRecord.read(server.pid_path)
        assert record is not None and record.pid == pid and record.owner_pid == os.getpid()
        stubs = _stubs(pid)
        assert len(stubs) == SAM3_INSTANCES["cpu"]  # the CPU flavour: sam3 alone, holding the graphs
        assert _regions(record.shm_prefix)
        _kill9_and_wait(pid)
        assert _stubs(pid) == stubs, "killed outright, the server leaves its stubs running"
    finally:
        server.stop()  # the project's stop path
    assert _stubs(pid) == [] and process_group.members(pid) == []
    assert _regions(record.shm_prefix) == [] and not server.pid_path.exists()


def test_a_start_reaps_what_a_crashed_run_left(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    repository = tiny_artifact.cpu_repository(tmp_path / "repository")
    record = crash_a_service(repository, tmp_path)
    try:
        assert _stubs(record.pid), "the crashed server's stubs are still running"
        assert _regions(record.shm_prefix)
        with LocalTriton(repository, tmp_path) as restarted:
            assert _stubs(record.pid) == [] and _regions(record.shm_prefix) == []
            assert restarted.pid != record.pid and _stubs(restarted.pid or 0)
    finally:
        end_run(record)  # only does something if the guard failed


def test_a_second_server_in_the_same_folder_is_refused(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    """The reaping at start must never end a server this process still runs."""
    repository = tiny_artifact.cpu_repository(tmp_path / "repository")
    with LocalTriton(repository, tmp_path) as first:
        with pytest.raises(InferenceUnavailable, match="already runs"):
            LocalTriton(repository, tmp_path).start()
        client = grpcclient.InferenceServerClient(first.url)
        try:
            assert client.is_model_ready("sam3")
        finally:
            client.close()


def test_a_live_owners_server_is_not_reaped(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    """A record whose owner is alive (another service process) is left alone."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        tmp_path.mkdir(exist_ok=True)
        RunRecord(pid=sleeper.pid, owner_pid=os.getppid(), shm_prefix="s3_test_none_").write(
            tmp_path / "tritonserver.pid"
        )
        assert reap_leftovers(tmp_path) == [] and sleeper.poll() is None
        assert (tmp_path / "tritonserver.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_too_small_a_dev_shm_refuses_the_start(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    repository = tiny_artifact.cpu_repository(tmp_path / "repository")
    need = LocalTriton(repository, tmp_path).shm_need().total_bytes
    # The caller resizes the photo, so the need is the model's square image and its largest answer.
    server = LocalTriton(repository, tmp_path, shm_available=lambda: need // 2)
    with pytest.raises(InferenceUnavailable) as caught:
        server.start()
    assert f"/dev/shm has {need // 2 / shm.MIB:.0f} MiB free" in caught.value.message
    assert "--shm-size=" in caught.value.message
    assert server.pid is None and not server.log_path.exists(), "refused before any server started"
    # The same start with the real /dev/shm of this machine goes through.
    assert shm.available_bytes() >= need
