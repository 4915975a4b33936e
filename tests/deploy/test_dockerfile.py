"""The image: hadolint finds no error, and the Dockerfile keeps the promises of the issue."""

from __future__ import annotations

import fnmatch
import json
import shlex

from tests.deploy.tools import ROOT, run, venv_tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, args))
    return found


def test_hadolint_reports_no_error() -> None:
    result = run([venv_tool("hadolint"), "--format", "json", "--no-fail", str(DOCKERFILE)])
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    errors = [f for f in findings if f["level"] == "error"]
    assert errors == [], errors
    # And the plain CLI gate used in CI pipelines agrees.
    gate = run([venv_tool("hadolint"), "--failure-threshold", "error", str(DOCKERFILE)])
    assert gate.returncode == 0, gate.stdout + gate.stderr


def test_multi_stage_slim_runtime_with_runtime_dependencies_only() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "a builder stage and a runtime stage"
    builder_name = all_stages[0][0][1].split()[-1]
    assert " AS " in all_stages[0][0][1].upper()
    final = all_stages[-1]
    assert final[0][1].split()[0] == "python:3.13-slim"
    # The environment is copied between the stages: one Python builds and runs it.
    assert all_stages[0][0][1].split()[0] == final[0][1].split()[0]
    # The final stage takes the built environment from the builder, not the sources.
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies and all(f"--from={builder_name}" in args for args in copies), copies
    runs = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    assert "[dev]" not in runs and "pip install" in runs
    # nor the development tools, a distribution apart (tests/contract/test_runtime_install.py)
    copied = [args for keyword, args in instructions() if keyword == "COPY"]
    assert not any("devtools" in text for text in [runs, *copied])
    assert "pip wheel" in runs


def test_runtime_stage_runs_as_non_root_and_stops_cleanly() -> None:
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert ("STOPSIGNAL", "SIGTERM") in final
    assert ("ENTRYPOINT", '["user-events-consumer"]') in final
    assert ("CMD", '["run"]') in final
    assert ("EXPOSE", "8080") in final


def healthcheck_command() -> list[str]:
    [args] = [args for keyword, args in stages()[-1] if keyword == "HEALTHCHECK"]
    options, _, command = args.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    parsed: list[str] = json.loads(command)
    return parsed


def test_healthcheck_asks_healthz_with_the_standard_library() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "http://127.0.0.1:" in command[2] and "/healthz" in command[2]
    assert "'8080'" in command[2], "defaults to HTTP_PORT's default"
    compile(command[2], "HEALTHCHECK", "exec")


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for i in range(len(parts)):
            prefix = "/".join(parts[: i + 1])
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[i], bare):
                return True
    return False


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = dockerignore_patterns()
    for heavy in (".venv", ".dev", ".git", ".pytest_cache", ".mypy_cache", "tests", "devtools"):
        assert ignored(heavy, patterns), heavy
    assert ignored("consumer/__pycache__/app.cpython-311.pyc", patterns)
    # Every source the builder copies exists and survives .dockerignore.
    builder = stages()[0]
    for keyword, args in builder:
        if keyword != "COPY":
            continue
        *sources, _destination = shlex.split(args)
        for source in sources:
            if source.startswith("--"):
                continue
            if "*" in source:  # optional files (README.md*) may be absent
                continue
            assert (ROOT / source).exists(), source
            assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
            for file in (ROOT / source).rglob("*") if (ROOT / source).is_dir() else []:
                relative = file.relative_to(ROOT).as_posix()
                if file.suffix in (".py", ".sql", ".json") and "__pycache__" not in relative:
                    assert not ignored(relative, patterns), relative
