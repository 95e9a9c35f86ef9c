"""Tests of the code options and feature-set specs: one field per declared parameter, JSON that never drifts."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from cnncodes import params
from cnncodes.backbones import get_backbone
from cnncodes.errors import CacheFormatError, InputError
from cnncodes.featurespec import ExtractionOptions, FeatureSetSpec
from cnncodes.fingerprint import canonical_json, spec_fingerprint

MODEL_SHA256 = "355ac2cb838a71f81eda48f4fad7903af0c5e4276a86b8fd3dd845d173f58372"
# The canonical JSON that the extraction engine wrote before the feature-set spec became a class, for the
# default options then (the exact decoder); caches, fingerprints and trained models depend on it staying byte for
# byte the same.
DEFAULT_JSON = (
    '{"combine":null,"dtype":"float32","gem_p":null,"grid":null,"model":"efficientnet_lite0",'
    f'"model_sha256":"{MODEL_SHA256}","normalize":"none","pooling":"none","power":null,'
    '"preprocessing":{"color_order":"RGB","crop_fraction":0.875,"draft":true,"input_size":224,'
    '"interpolation":"bicubic","mean":[127.0,127.0,127.0],'
    '"rgb_rule":"exif-transpose; alpha over white; 16-bit >> 8; CMYK/palette/L via Pillow",'
    '"std":[128.0,128.0,128.0],"views":"none"},"relu":false,"tap":"penultimate","tensor":"penultimate"}'
)
DEFAULT_FINGERPRINT = "48709632ac23cb823cb7021e6fba8eba1155d975185b1c8750cf88844f6d744d"
# How the fast decoder's views are cut since the views are resampled from the exact crop box; fast specs before it
# named no rule (area averaging of the rounded box), so their codes are a feature set of their own.
FAST_RESIZE_RULE = "to 1/2: exact crop box, bilinear; else rounded box: area below, bicubic or bilinear up"
BACKBONE = get_backbone("efficientnet_lite0")
_MISSING = object()  # a field left out of a spec


def _spec(tap: str, **options: object) -> FeatureSetSpec:
    return FeatureSetSpec.of_tap(ExtractionOptions(**options), BACKBONE, BACKBONE.get_tap(tap), MODEL_SHA256)


def _expected(changes: dict[str, object], preprocessing: dict[str, object] | None = None) -> str:
    """The JSON of the default options (the fast decoder) with ``changes``."""
    spec = {**json.loads(DEFAULT_JSON), **changes}
    fast = {"decoder": "fast", "resize_rule": FAST_RESIZE_RULE}
    spec["preprocessing"] = {**spec["preprocessing"], **fast, **(preprocessing or {})}
    if spec["preprocessing"]["views"] not in ("none", "flip"):  # cut by Pillow, as before the rule: no rule named
        del spec["preprocessing"]["resize_rule"]
    return canonical_json(spec)


def test_extraction_options_fields_are_the_code_parameters() -> None:
    """Check that the options have exactly the fingerprinted parameters, in order, with their declared defaults."""
    fields = dataclasses.fields(ExtractionOptions)
    assert tuple(f.name for f in fields) == params.CODE_PARAMETERS
    assert all(f.default == params.default(f.name) for f in fields)


def test_extraction_options_layers_are_tuples() -> None:
    """Check that a list of layers is stored as a tuple (options are hashable) and None means the default tap."""
    options = ExtractionOptions(layer=["stage4", "penultimate"])
    assert options.layer == ("stage4", "penultimate") and hash(options) == hash(ExtractionOptions(layer=options.layer))
    assert options.layers("x") == ("stage4", "penultimate")
    assert ExtractionOptions(layer="stage4").layers("x") == ("stage4",) and ExtractionOptions().layers("x") == ("x",)


@pytest.mark.parametrize(
    "field,value,message",
    [
        (
            "pooling",
            "mean",
            "The 'pooling' parameter of CNNCodes must be one of 'avg', 'max', 'gem'. Got 'mean' instead.",
        ),
        ("gem_p", 0, "The 'gem_p' parameter of CNNCodes must be a positive number. Got 0 instead."),
        (
            "dtype",
            "float64",
            "The 'dtype' parameter of CNNCodes must be one of 'float32', 'float16'. Got 'float64' instead.",
        ),
        (
            "layer",
            [],
            "The 'layer' parameter of CNNCodes must be a layer name, a non-empty sequence of layer names, or None. "
            "Got () instead.",
        ),
    ],
    ids=["pooling", "gem_p", "dtype", "no-layer"],
)
def test_extraction_options_check_names_the_owner(field: str, value: object, message: str) -> None:
    """Check that a bad option is refused in scikit-learn's wording, naming the estimator."""
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        ExtractionOptions(**{field: value}).check(owner="CNNCodes")


def test_feature_set_spec_default_json_is_unchanged() -> None:
    """Check that the exact decoder gives, byte for byte, the JSON and fingerprint caches were keyed by, and that
    the fast decoder (the default now) is named in the preprocessing, so its codes are a feature set of their own."""
    spec = _spec("penultimate", decoder="exact")
    assert spec.to_json() == DEFAULT_JSON
    assert spec.fingerprint == spec_fingerprint(spec.as_dict()) == DEFAULT_FINGERPRINT
    fast = _spec("penultimate")
    assert fast.to_json() == _expected({}) and fast.fingerprint != DEFAULT_FINGERPRINT
    assert FeatureSetSpec.from_json(fast.to_json()) == fast and FeatureSetSpec.from_json(DEFAULT_JSON) == spec
    before_the_rule = json.loads(fast.to_json())
    del before_the_rule["preprocessing"]["resize_rule"]
    with pytest.raises(CacheFormatError, match="differs from what this version writes"):
        FeatureSetSpec.from_dict(before_the_rule)


@pytest.mark.parametrize(
    "tap,options,changes,preprocessing",
    [
        (
            "stage4",
            {"pooling": "gem", "gem_p": 2.5, "grid": 2},
            {"tap": "stage4", "tensor": "stage4", "relu": True, "pooling": "gem", "gem_p": 2.5, "grid": 2},
            None,
        ),
        (
            "penultimate",
            {"views": "10crop", "combine": "none", "normalize": "l2", "dtype": "float16"},
            {"combine": "none", "normalize": "l2", "dtype": "float16"},
            {"views": "10crop"},
        ),
        (
            "stage3",
            {"views": "razavian16", "normalize": "power", "relu": True, "gem_p": 5.0},
            {"tap": "stage3", "tensor": "stage3", "relu": True, "pooling": "avg", "combine": "mean"}
            | {"normalize": "power", "power": 0.5},
            {"views": "razavian16"},
        ),
        ("logits", {"pooling": "gem", "grid": 3}, {"tap": "logits", "tensor": "logits"}, None),
    ],
    ids=["gem-grid", "views-float16", "power-razavian", "vector-tap-ignores-pooling"],
)
def test_feature_set_spec_json_per_options(tap: str, options: dict, changes: dict, preprocessing: dict | None) -> None:
    """Check the JSON of other options: options that do not act on a tap stay out, power is the fixed exponent."""
    assert _spec(tap, **options).to_json() == _expected(changes, preprocessing)


def test_feature_set_spec_round_trip() -> None:
    """Check that the JSON and the dict read back to an equal spec."""
    spec = _spec("stage4", pooling="gem", grid=2, views="flip", normalize="power")
    assert FeatureSetSpec.from_json(spec.to_json()) == spec == FeatureSetSpec.from_dict(spec.as_dict())


@pytest.mark.parametrize(
    "change,problem",
    [
        ({"power": 0.25}, "it differs from what this version writes"),
        ({"preprocessing": {**json.loads(DEFAULT_JSON)["preprocessing"], "draft": False}}, "it differs from"),
        ({"extra": 1}, "it differs from what this version writes"),
        ({"dtype": _MISSING}, "missing 'dtype'"),
    ],
    ids=["other-power", "no-draft", "extra-field", "missing-field"],
)
def test_feature_set_spec_refuses_foreign_specs(change: dict, problem: str) -> None:
    """Check that a spec this version would not write is refused rather than silently rewritten."""
    spec = {key: value for key, value in {**json.loads(DEFAULT_JSON), **change}.items() if value is not _MISSING}
    with pytest.raises(CacheFormatError, match="^" + re.escape(f"not a feature-set spec of this cnncodes ({problem}")):
        FeatureSetSpec.from_dict(spec)
