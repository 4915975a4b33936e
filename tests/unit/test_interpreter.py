"""What an interpreter's configure flags say of PGO and LTO: read off the flags, and off
a real interpreter by running it."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest
from user_events_devtools.interpreter import python_build, python_build_of

# CONFIG_ARGS with the configure flags of the image's interpreter (python:3.13-slim's
# Dockerfile, docker-library/python), and as pyenv's interpreters on these machines say it.
IMAGE_ARGS = (
    "'--build=x86_64-linux-gnu' '--enable-loadable-sqlite-extensions' "
    "'--enable-optimizations' '--enable-option-checking=fatal' '--enable-shared' "
    "'--with-lto' '--with-ensurepip' '--enable-experimental-jit=yes-off'"
)
PYENV_ARGS = (
    "'--prefix=/root/.pyenv/versions/3.13.0' '--enable-shared' 'LDFLAGS=-L/x -Wl,-rpath,/x'"
)


@pytest.mark.parametrize(
    ("config_args", "said"),
    [
        (IMAGE_ARGS, "configured with PGO and LTO"),
        (PYENV_ARGS, "configure flags name neither PGO nor LTO"),
        ("'--enable-optimizations'", "configured with PGO, without LTO"),
        ("'--enable-optimizations=yes'", "configured with PGO, without LTO"),
        ("'--with-lto=full'", "configured with LTO, without PGO"),
        ("'--with-lto=no' '--enable-shared'", "configure flags name neither PGO nor LTO"),
        ("'--with-lto' '--without-lto'", "configure flags name neither PGO nor LTO"),
        ("'--without-lto' '--with-lto=thin'", "configured with LTO, without PGO"),
        (
            "'--enable-optimizations' '--disable-optimizations'",
            "configure flags name neither PGO nor LTO",
        ),
        (
            "'--enable-optimizations' '--with-lto' '--enable-optimizations=no'",
            "configured with LTO, without PGO",
        ),
        ("'--with-lto", "configure flags unknown"),  # unbalanced quoting: not autoconf's
        ("", "configure flags unknown"),
        (None, "configure flags unknown"),
    ],
)
def test_the_interpreters_build_is_read_off_its_configure_flags(
    config_args: str | None, said: str
) -> None:
    assert python_build(config_args) == said


def test_a_real_interpreter_is_asked_for_its_own_flags() -> None:
    assert python_build_of(sys.executable) == python_build(sysconfig.get_config_var("CONFIG_ARGS"))


def test_an_interpreter_that_is_not_there_has_unknown_flags(tmp_path: Path) -> None:
    assert python_build_of(tmp_path / "no-python") == "configure flags unknown"
