"""Shipped weights at several input sizes: a requested size picks the checkpoint trained nearest it."""

from __future__ import annotations

import json

from tinysam.defaults import find_default_weights, resolve_default_weights


def test_a_requested_size_picks_the_nearest_trained_size_else_the_first(tmp_path):
    for size in (128, 256):
        (tmp_path / f"tinysam_minisa_{size}.safetensors").write_bytes(b"x")
        (tmp_path / f"tinysam_minisa_{size}.json").write_text(json.dumps({"model": "tinysam", "image_size": size}))
    assert find_default_weights("tinysam", tmp_path).image_size == 128  # the default for fast runs
    assert find_default_weights("tinysam", tmp_path, 256).path.name == "tinysam_minisa_256.safetensors"
    assert find_default_weights("tinysam", tmp_path, 1024).image_size == 256  # deployed at 1024: the larger
    assert find_default_weights("tinysam", tmp_path, 64).image_size == 128
    assert find_default_weights("tinysam", tmp_path, 192).image_size == 256  # a tie: the larger
    assert find_default_weights("tinysam", tmp_path, 160).image_size == 128
    path, size, trained = resolve_default_weights("tinysam", None, 256, tmp_path)
    assert path.name == "tinysam_minisa_256.safetensors" and size == 256 and trained
    path, size, _ = resolve_default_weights("tinysam", None, 1024, tmp_path)
    assert path.name == "tinysam_minisa_256.safetensors" and size == 1024
    path, size, _ = resolve_default_weights("tinysam", None, None, tmp_path)
    assert path.name == "tinysam_minisa_128.safetensors" and size == 128
