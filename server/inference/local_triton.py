"""The embedded Triton: the ``tritonserver`` binary bundled in ``nvidia-pytriton``, run on loopback.

The binary, its python backend and the per-Python-version stub live in the model environment
(``.venv-model``). Three things make the stub work outside PyTriton: a backend directory holding the
python backend next to the stub of the model environment's Python; ``LD_LIBRARY_PATH`` pointing at
that interpreter's ``libpython`` (else the system copy is loaded and fails); and the environment's
``bin`` first on ``PATH`` (the stub imports numpy, onnxruntime and tokenizers from there).
Readiness means every served model's, not only ``sam3``'s.

No stub outlives its server: the server leads a process group of its own, which its stubs inherit;
a stop ends the whole group (also after the server was killed outright), and a start first reaps
what a crashed earlier run of the same folder left behind (processes and shared-memory regions),
from the record that run wrote (``server/inference/triton_runs.py``). The /dev/shm the repository
needs is checked before the server starts (``server/inference/shm.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.config.sections import PhotoLimits
from server.errors import InferenceUnavailable
from server.inference import shm
from server.inference.artifacts import MODEL_VENV, model_python
from server.inference.triton_repository import SERVED_MODELS
from server.inference.triton_runs import RECORD_NAME, RunRecord, claim_folder, end_run, reap_leftovers, release_folder
from server.ports import free_port

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
DEFAULT_MAX_PHOTO_PIXELS = PhotoLimits.max_image_pixels
"""The largest photo a ``sam3`` request carries (the service refuses bigger ones before inference)."""


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
        ready_models: Sequence[str] = SERVED_MODELS,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 15.0,
        max_photo_pixels: int = DEFAULT_MAX_PHOTO_PIXELS,
        shm_policy: shm.ShmPolicy = shm.DEFAULT_POLICY,
        shm_dir: Path = shm.SHM_DIR,
        shm_available: Callable[[], int] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = repository
        self.work_dir = work_dir
        self.model_venv = model_venv
        self.ready_models = tuple(ready_models)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_photo_pixels = max_photo_pixels
        self.shm_policy = shm_policy
        self.shm_dir = shm_dir
        self._shm_available = shm_available or (lambda: shm.available_bytes(shm_dir))
        self.extra_args = tuple(extra_args)
        """More ``tritonserver`` arguments (e.g. the torch flavour's CUDA memory pool)."""
        self.grpc_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._record: RunRecord | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    @property
    def pid_path(self) -> Path:
        """The run's :class:`RunRecord` while it runs (removed on stop; read by the next start)."""
        return self.work_dir / RECORD_NAME

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def shm_need(self) -> shm.ShmNeed:
        configs = shm.read_repository_configs(self.repository)
        return shm.repository_need(configs, self.max_photo_pixels, self.shm_policy)

    def _backend_dir(self, binary: TritonBinary) -> Path:
        backends = self.work_dir / "backends"
        python = backends / "python"
        if python.exists():
            shutil.rmtree(python)
        shutil.copytree(binary.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(binary.stub, python / binary.stub.name)
        return backends

    def start(self) -> None:
        """Start the server and wait until every model of ``ready_models`` is ready; raises InferenceUnavailable."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Anything recorded here now is a leftover: its owner is dead, or it is this process and the
        # server is no longer one of its running ones (killed, then forgotten without a stop).
        reap_leftovers(self.work_dir, self.shm_dir)
        claim_folder(self.work_dir)
        try:
            self._launch()
        except BaseException:
            release_folder(self.work_dir)
            raise

    def _launch(self) -> None:
        need = self.shm_need()
        shm.check(need, self._shm_available, self.shm_dir)
        log.info("Triton shared memory: %d MiB needed (%s)", need.total_bytes // shm.MIB, need.describe())
        if need.uncounted:
            log.warning("shared-memory need leaves out tensors of no fixed size: %s", ", ".join(need.uncounted))
        binary = TritonBinary.locate(self.model_venv)
        backends = self._backend_dir(binary)
        self.grpc_port = free_port()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(binary.libpython_dir), str(binary.bundled_libs), env.get("LD_LIBRARY_PATH")) if p
        )
        env["PATH"] = os.pathsep.join(p for p in (str(binary.venv_bin.resolve()), env.get("PATH")) if p)
        # Region names are unique per run, so a later start finds (and removes) a crashed run's regions.
        shm_prefix = f"s3_triton_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
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
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            *self.shm_policy.backend_config(),
            *self.extra_args,
        ]
        log.info("starting Triton: %s", " ".join(command))
        with self.log_path.open("ab") as sink:
            # A group of its own (start_new_session): the stubs inherit it, so ending the group ends them.
            self._process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        self._record = RunRecord(pid=self._process.pid, owner_pid=os.getpid(), shm_prefix=shm_prefix)
        self._record.write(self.pid_path)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Triton ready at %s (pid %s, models %s)", self.url, self.pid, ", ".join(self.ready_models))

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
                    if all(client.is_model_ready(model) for model in self.ready_models):
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
        """SIGTERM, wait ``stop_timeout_s``, then SIGKILL; then end whatever is left of the process group
        (the stubs of a server that was killed). Safe to call twice."""
        process, self._process = self._process, None
        record, self._record = self._record, None
        if process is None or record is None:
            return
        release_folder(self.work_dir)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Triton (pid %s) ignored SIGTERM for %ss: killing it", process.pid, self.stop_timeout_s)
                process.kill()
                process.wait()
        leftovers = end_run(record, self.shm_dir)
        if leftovers:
            log.warning("Triton (pid %s) left %d processes behind: killed %s", process.pid, len(leftovers), leftovers)
        self.pid_path.unlink(missing_ok=True)
        log.info("Triton (pid %s) stopped", process.pid)

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
