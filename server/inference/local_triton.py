"""The embedded Triton: the ``tritonserver`` binary bundled in ``nvidia-pytriton``, run on loopback.

The binary, its python backend and the per-Python-version stub live in the model environment
(``.venv-model``). Three things make the stub work outside PyTriton: a backend directory holding the
python backend next to the stub of the model environment's Python; ``LD_LIBRARY_PATH`` pointing at
that interpreter's ``libpython`` (else the system copy is loaded and fails); and the environment's
``bin`` first on ``PATH`` (the stub imports numpy, onnxruntime and tokenizers from there).
Started with SIGTERM-able process, stopped with SIGTERM then SIGKILL; readiness means the model's.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.artifacts import MODEL_VENV, model_python
from server.inference.triton_repository import SAM3_MODEL

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TritonBinary:
    """Where the bundled server, its python backend and the matching stub are."""

    executable: Path
    python_backend: Path
    stub: Path
    libpython_dir: Path
    bundled_libs: Path
    venv_bin: Path

    @classmethod
    def locate(cls, model_venv: Path = MODEL_VENV) -> TritonBinary:
        python = model_python(model_venv)
        probe = subprocess.run(
            [
                str(python),
                "-c",
                "import sys, sysconfig, pytriton, os; "
                "print(sysconfig.get_config_var('LIBDIR')); print('%d.%d' % sys.version_info[:2]); "
                "print(os.path.dirname(pytriton.__file__))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            raise InferenceUnavailable(f"nvidia-pytriton is not importable in {model_venv}: {probe.stderr[-500:]}")
        libdir, version, package = probe.stdout.split()
        server = Path(package) / "tritonserver"
        binary = cls(
            executable=server / "bin" / "tritonserver",
            python_backend=server / "backends" / "python",
            stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
            libpython_dir=Path(libdir),
            # The copied stub loses its relative rpath to the wheel's vendored libraries.
            bundled_libs=Path(package).parent / "nvidia_pytriton.libs",
            venv_bin=model_venv / "bin",
        )
        for path in (binary.executable, binary.python_backend, binary.stub):
            if not path.exists():
                raise InferenceUnavailable(f"the bundled Triton is incomplete: {path} is missing")
        return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the service dies without stopping it (no orphan servers).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalTriton:
    """One ``tritonserver`` process serving ``repository`` on a free loopback gRPC port."""

    def __init__(
        self,
        repository: Path,
        work_dir: Path,
        *,
        model_venv: Path = MODEL_VENV,
        ready_model: str = SAM3_MODEL,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.repository = repository
        self.work_dir = work_dir
        self.model_venv = model_venv
        self.ready_model = ready_model
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.grpc_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    @property
    def pid_path(self) -> Path:
        """Holds the server's pid while it runs (for operators; removed on stop)."""
        return self.work_dir / "tritonserver.pid"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _backend_dir(self, binary: TritonBinary) -> Path:
        backends = self.work_dir / "backends"
        python = backends / "python"
        if python.exists():
            shutil.rmtree(python)
        shutil.copytree(binary.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(binary.stub, python / binary.stub.name)
        return backends

    def start(self) -> None:
        """Start the server and wait until ``ready_model`` is ready; raises InferenceUnavailable."""
        binary = TritonBinary.locate(self.model_venv)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backends = self._backend_dir(binary)
        self.grpc_port = free_port()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(binary.libpython_dir), str(binary.bundled_libs), env.get("LD_LIBRARY_PATH")) if p
        )
        env["PATH"] = os.pathsep.join(p for p in (str(binary.venv_bin.resolve()), env.get("PATH")) if p)
        command = [
            str(binary.executable),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-http=false",
            "--allow-metrics=false",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        log.info("starting Triton: %s", " ".join(command))
        with self.log_path.open("ab") as sink:
            self._process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
            )
        self.pid_path.write_text(f"{self._process.pid}\n")
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Triton ready at %s (pid %s, model %s)", self.url, self.pid, self.ready_model)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise InferenceUnavailable(
                        f"Triton exited with {self._process.returncode} while starting: {self.log_tail()}"
                    )
                with contextlib.suppress(InferenceServerException):
                    if client.is_model_ready(self.ready_model):
                        return
                    failed = [
                        f"{m.name}: {m.reason}"
                        for m in client.get_model_repository_index().models
                        if m.state == "UNAVAILABLE"
                    ]
                    if failed:
                        raise InferenceUnavailable(f"Triton could not load {'; '.join(failed)}")
                time.sleep(0.1)
        finally:
            client.close()
        raise InferenceUnavailable(f"Triton not ready after {self.startup_timeout_s}s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait ``stop_timeout_s``, then SIGKILL. Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        self.pid_path.unlink(missing_ok=True)
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Triton (pid %s) ignored SIGTERM for %ss: killing it", process.pid, self.stop_timeout_s)
            process.kill()
            process.wait()
        log.info("Triton (pid %s) stopped", process.pid)

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
