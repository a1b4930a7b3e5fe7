"""The public API: what `dewey.llm` exports, and how it reads to users and type checkers."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import dewey.llm


def test_every_exported_name_is_importable_and_listed_once() -> None:
    assert len(set(dewey.llm.__all__)) == len(dewey.llm.__all__)
    assert set(dewey.llm.__all__) == set(dewey.llm._EXPORTS)  # noqa: SLF001 - the lazy map behind __all__
    for name in dewey.llm.__all__:
        assert getattr(dewey.llm, name) is not None


def test_public_classes_read_as_dewey_llm_not_a_private_module() -> None:
    classes = [getattr(dewey.llm, name) for name in dewey.llm.__all__]
    for cls in (value for value in classes if isinstance(value, type)):
        assert cls.__module__ == "dewey.llm", cls
    error = dewey.llm.LLMRateLimitError("slow down", retry_after=2.0)
    assert repr(type(error)) == "<class 'dewey.llm.LLMRateLimitError'>"


def test_importing_the_package_and_its_names_does_not_load_litellm() -> None:
    probe = ("import sys, dewey.llm; from dewey.llm import *; "
             "print('litellm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_package_ships_type_information() -> None:
    assert files("dewey.llm").joinpath("py.typed").is_file()
