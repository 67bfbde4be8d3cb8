"""The one private coreai-core call the Core AI backend relies on (`AIModelAsset._write_odix`, used in
`mobile_runtime.backends.coreai_backend.lower_asset`), and the lowering cache built on it.

If coreai-core renames or changes that method, `test_private_lowering_api` fails here, loudly, before
any package silently falls back to lowering on every open.
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

pytest.importorskip("coreai.runtime")
torch = pytest.importorskip("torch")
pytest.importorskip("coreai_torch")

from mobile_runtime.backends import coreai_backend as cb  # noqa: E402
from mobile_runtime.backends import open_model  # noqa: E402


class _Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * 2.0 + 1.0


@pytest.fixture(scope="module")
def tiny_asset(tmp_path_factory):
    from converters.backends.coreai.export import save_asset

    ep = torch.export.export(_Tiny(), (torch.randn(2, 3),)).run_decompositions()
    path = tmp_path_factory.mktemp("asset") / "tiny.aimodel"
    save_asset([(ep, ["x"], ["y"], "main")], path)
    return path


def test_private_lowering_api(tiny_asset, tmp_path):
    from coreai.authoring import AIModelAsset

    method = getattr(AIModelAsset, "_write_odix", None)
    assert method is not None, "coreai-core dropped AIModelAsset._write_odix: revisit coreai_backend.lower_asset"
    params = list(inspect.signature(method).parameters)
    assert params[:2] == ["self", "output_directory"], params
    cb.lower_asset(AIModelAsset.load(tiny_asset), tmp_path)
    assert (tmp_path / cb.ODIX_FILE).is_file()


def test_lowered_once_into_the_cache(tiny_asset, tmp_path, monkeypatch):
    monkeypatch.setenv(cb.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cb, "_LOADED", {})
    m = open_model(tiny_asset, "coreai")
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(m.run({"x": x})["y"], np.tanh(x) * 2 + 1, atol=1e-6)
    cached = sorted((tmp_path / "cache").iterdir())
    assert [p.suffix for p in cached] == [".aimodelx"] and (cached[0] / cb.ODIX_FILE).is_file()
    stamp = os.stat(cached[0] / cb.ODIX_FILE).st_mtime_ns
    monkeypatch.setattr(cb, "_LOADED", {})  # a new process: loads the cached form, does not lower again
    m2 = open_model(tiny_asset, "coreai", signature="main")
    assert os.stat(cached[0] / cb.ODIX_FILE).st_mtime_ns == stamp
    np.testing.assert_allclose(m2.run({"x": x})["y"], m.run({"x": x})["y"])
    with pytest.raises(ValueError, match="model inputs are"):
        m2.run({"z": x})
    with pytest.raises(ValueError, match="no function 'k16'; available functions: main"):
        open_model(tiny_asset, "coreai", signature="k16")
