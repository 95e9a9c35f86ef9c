"""The public line: what ``cnncodes.__all__`` promises resolves, is documented in numpydoc and has examples."""

from __future__ import annotations

import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import cnncodes
from cnncodes import params

PUBLIC = sorted(name for name in cnncodes.__all__ if name != "__version__")
CALLABLES = [name for name in PUBLIC if inspect.isfunction(getattr(cnncodes, name))]
CLASSES = [
    name
    for name in PUBLIC
    if inspect.isclass(getattr(cnncodes, name)) and not issubclass(getattr(cnncodes, name), (Exception, Warning))
]


def _sections(docstring: str) -> set[str]:
    """numpydoc section titles: a line followed by a line of dashes of the same length."""
    lines = inspect.cleandoc(docstring).splitlines()
    return {a.strip() for a, b in zip(lines, lines[1:]) if b.strip() and set(b.strip()) == {"-"}}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_resolves_to_its_module(name: str) -> None:
    """Check that every public name imports and is defined in a cnncodes module."""
    value = getattr(cnncodes, name)
    assert getattr(value, "__module__", "").startswith("cnncodes"), name


@pytest.mark.parametrize("name", CALLABLES)
def test_public_function_has_numpydoc(name: str) -> None:
    """Check that every public function documents Parameters, Returns and Examples, and is fully typed."""
    function = getattr(cnncodes, name)
    sections = _sections(function.__doc__ or "")
    signature = inspect.signature(function)
    expected = {"Returns", "Examples"} | ({"Parameters"} if signature.parameters else set())
    assert expected <= sections, f"{name}: missing {sorted(expected - sections)}"
    documented = set(re.findall(r"^(?:    )?\**(\w+) :", inspect.getdoc(function) or "", flags=re.M))
    assert set(signature.parameters) <= documented, f"{name}: undocumented {set(signature.parameters) - documented}"
    unannotated = [p for p, v in signature.parameters.items() if v.annotation is inspect.Parameter.empty]
    assert not unannotated and signature.return_annotation is not inspect.Signature.empty, name


@pytest.mark.parametrize("name", CLASSES)
def test_public_class_has_docstring_with_examples_or_fields(name: str) -> None:
    """Check that every public class has a summary line and, when it is built by users, an Examples section."""
    cls = getattr(cnncodes, name)
    doc = inspect.getdoc(cls) or ""
    assert doc and doc.splitlines()[0].endswith("."), name
    if name in ("CNNCodes", "CodeCache"):
        assert {"Parameters", "Examples"} <= _sections(doc), name


@pytest.mark.parametrize("name", params.CODE_PARAMETERS + params.RUN_PARAMETERS)
def test_parameter_defaults_are_declared_once(name: str) -> None:
    """Check that CNNCodes takes every declared parameter with its declared default, and extract() types it."""
    estimator_default = inspect.signature(cnncodes.CNNCodes).parameters[name].default
    expected = params.ESTIMATOR_ON_ERROR if name == "on_error" else params.default(name)
    assert estimator_default == expected
    assert name in params.ExtractParameters.__annotations__ or name in params.RunOptions.__annotations__


def test_keyword_types_name_the_declared_parameters() -> None:
    """Check that the keyword types of extract (every parameter) and evaluate/predict (run options) match params."""
    assert set(params.ExtractParameters.__optional_keys__) == set(params.PARAMETERS)
    assert set(params.RunOptions.__optional_keys__) == set(params.RUN_PARAMETERS) - {"on_error"}
    for function in (cnncodes.extract, cnncodes.evaluate, cnncodes.predict):
        keywords = [p for p in inspect.signature(function).parameters.values() if p.kind is p.VAR_KEYWORD]
        assert len(keywords) == 1, function.__name__


def test_extract_takes_declared_defaults_and_refuses_unknown_keywords() -> None:
    """Check that extract() without options uses the declared defaults, and an unknown keyword is Python's error."""
    import numpy as np

    result = cnncodes.extract(np.full((1, 64, 64, 3), 128, np.uint8), cache=False, progress=False)
    assert result.spec["layers"][0]["tap"] == "penultimate" and result.codes.shape == (1, 1280)
    with pytest.raises(TypeError, match=re.escape("extract() got an unexpected keyword argument 'layers'")):
        cnncodes.extract([], layers="stage4")


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """Check that no public function or class shares its name with a cnncodes module (importing it would shadow it)."""
    modules = {module.name for module in pkgutil.iter_modules(cnncodes.__path__)}
    assert not modules & set(cnncodes.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    """Check that a name outside the public line raises AttributeError, as for any module."""
    with pytest.raises(AttributeError, match=re.escape("module 'cnncodes' has no attribute 'Extractor'")):
        cnncodes.Extractor  # noqa: B018


def test_check_parameter_rejects_bad_values() -> None:
    """Check that each kind of declaration refuses what it should, in scikit-learn's wording."""
    cases = [
        (
            "pooling",
            "mean",
            "The 'pooling' parameter of CNNCodes must be one of 'avg', 'max', 'gem'. Got 'mean' instead.",
        ),
        ("grid", 0, "The 'grid' parameter of CNNCodes must be a positive int or None. Got 0 instead."),
        ("gem_p", -1.0, "The 'gem_p' parameter of CNNCodes must be a positive number. Got -1.0 instead."),
        ("relu", "yes", "The 'relu' parameter of CNNCodes must be True, False or None. Got 'yes' instead."),
        (
            "layer",
            (),
            "The 'layer' parameter of CNNCodes must be a layer name, a non-empty sequence of layer names, "
            "or None. Got () instead.",
        ),
        (
            "batch_size",
            True,
            "The 'batch_size' parameter of CNNCodes must be a positive int or None. Got True instead.",
        ),
    ]
    for name, value, message in cases:
        with pytest.raises(cnncodes.InputError, match=re.escape(message)):
            params.check_parameter(name, value, owner="CNNCodes")
    for name, value in [("grid", 2), ("gem_p", 2), ("relu", None), ("layer", ["stage4", "penultimate"])]:
        params.check_parameter(name, value)


def test_public_function_is_not_replaced_by_its_submodule() -> None:
    """Check that loading the submodule that defines cnncodes.sweep first leaves cnncodes.sweep the function."""
    code = "import cnncodes.selection, cnncodes; print(cnncodes.sweep.__module__, callable(cnncodes.sweep))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout == "cnncodes.selection True\n"
