"""`bench --profile`: py-spy records each `run` process while a phase is timed and writes
one profile per process beside the results file."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

SUFFIXES = {"speedscope": ".speedscope.json", "flamegraph": ".svg"}


@dataclass(frozen=True)
class ProfileRequest:
    """Profiles wanted: beside ``results`` (the bench's JSON file), in ``format``."""

    results: Path
    format: str = "speedscope"

    def path(self, name: str) -> Path:
        return profile_path(self.results, name, self.format)


def profile_path(results: Path, name: str, fmt: str) -> Path:
    """Where the profile ``name`` goes: beside the results file, named after it."""
    return results.with_name(f"{results.stem}-profile-{name}{SUFFIXES[fmt]}")


def py_spy() -> str | None:
    """The py-spy executable: beside this Python's (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiling:
    """py-spy recording each target (name -> pid) for the duration of a ``with`` block;
    ``written`` holds the profiles' paths after it. Without a request, nothing; without
    py-spy, one line that says so."""

    def __init__(self, request: ProfileRequest | None, targets: Mapping[str, int]) -> None:
        self.request = request
        self.targets = targets
        self.written: list[Path] = []
        self._recorders: list[tuple[str, Path, subprocess.Popen[bytes], IO[bytes]]] = []

    def __enter__(self) -> Profiling:
        if self.request is None:
            return self
        executable = py_spy()
        if executable is None:
            print("bench: py-spy is not installed (pip install py-spy): no profile", flush=True)
            return self
        for name, pid in self.targets.items():
            path = self.request.path(name)
            path.unlink(missing_ok=True)
            errors = tempfile.TemporaryFile()  # closed in __exit__
            command = [executable, "record", "--pid", str(pid), "--output", str(path)]
            # --nonblocking: sampled without pausing the process, so the drain runs as fast
            command += ["--format", self.request.format, "--nonblocking"]
            recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
            self._recorders.append((name, path, recorder, errors))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # py-spy writes its profile when interrupted, as on Ctrl-C.
        for _, _, recorder, _ in self._recorders:
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
        for name, path, recorder, errors in self._recorders:
            try:
                recorder.wait(60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip().splitlines()
            errors.close()
            if path.exists():
                self.written.append(path)
                print(f"bench: profile of {name} written to {path}", flush=True)
            else:
                reason = said[-1] if said else f"exit status {recorder.returncode}"
                print(f"bench: py-spy wrote no profile of {name}: {reason}", flush=True)
        self._recorders = []
