"""Loading datasets by hub id or local path, and normalising them to (prompt, response) samples.

Accepted layouts (TRL's column names): ``prompt`` + ``completion``/``response``; pairwise ``prompt`` +
``chosen`` + ``rejected`` (each response becomes its own sample); pairwise ``chosen``/``rejected`` holding
whole dialogues (HH-RLHF), split at the last response marker. Prompts may be plain text or
conversational (a list of ``{"role", "content"}`` messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import DataError

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
RESPONSE_COLUMNS = ("completion", "response")


def load_any(name: str, split: str = "train"):
    """Load a dataset from a local jsonl/json/parquet/csv file, a saved folder, or a hub id."""
    import datasets

    path = Path(name).expanduser()
    if path.is_file():
        fmt = LOCAL_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"dataset file {name!r} has an unknown extension; use .jsonl, .json, .parquet or .csv")
        try:
            return datasets.load_dataset(fmt, data_files=str(path), split="train")
        except Exception as exc:  # datasets raises many types for malformed files
            raise DataError(f"cannot read dataset file {name!r}: {str(exc).splitlines()[0]}") from exc
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            ds = datasets.load_from_disk(str(path))
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        try:
            return datasets.load_dataset(str(path), split=split)
        except Exception as exc:
            raise DataError(f"cannot read dataset folder {name!r}: {str(exc).splitlines()[0]}") from exc
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in LOCAL_FORMATS:
        raise DataError(f"dataset {name!r} does not exist; check the path given to --dataset")
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise DataError(f"cannot load dataset {name!r} from the hub: {str(exc).splitlines()[0]}") from exc


def is_conversational(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value)


def prompt_text(prompt: Any) -> str:
    """A plain-text view of a prompt (for scoring and caching): messages rendered as ``role: content``."""
    if isinstance(prompt, str):
        return prompt
    if is_conversational(prompt):
        return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in prompt)
    raise DataError(f"prompt must be text or a list of messages, got {type(prompt).__name__}")


def check_prompt(prompt: Any) -> Any:
    """``prompt`` unchanged when it is text or a list of messages, else a one-line DataError."""
    prompt_text(prompt)
    return prompt


def unique_prompts(prompts: Sequence[Any], limit: int | None = None) -> list[Any]:
    """Distinct prompts in first-seen order; conversational prompts (message lists) compared by their text."""
    seen, out = set(), []
    for p in prompts:
        key = prompt_text(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out[:limit] if limit else out


def load_prompts(dataset: str, prompt_column: str = "prompt", limit: int | None = None) -> list[Any]:
    """The distinct prompts of ``dataset`` (hub id or local file), first-seen order, at most ``limit``."""
    ds = load_any(dataset)
    if prompt_column not in ds.column_names:
        raise DataError(
            f"dataset has no prompt column {prompt_column!r} (columns: {', '.join(ds.column_names)}); "
            "pass --prompt_column NAME"
        )
    return unique_prompts(ds[prompt_column], limit)


def response_text(response: Any) -> str:
    """A response's text without surrounding whitespace (the join rule of :mod:`pluralign.models.sequences`):
    offline data's ``" Hello"`` and a cleaned generation's ``"Hello"`` are the same response to score and
    to train on."""
    if isinstance(response, str):
        return response.strip()
    if is_conversational(response):
        return "".join(m["content"] for m in response if m.get("role", "assistant") == "assistant").strip()
    raise DataError(f"response must be text or a list of messages, got {type(response).__name__}")


def _split_dialogue(text: str, marker: str) -> tuple[str, str]:
    i = text.rfind(marker)
    if i < 0:
        raise DataError(
            f"a dialogue has no response marker {marker!r}; set --response_marker to the one your data uses"
        )
    return text[: i + len(marker)], text[i + len(marker) :]


def to_samples(
    ds,
    prompt_column: str = "prompt",
    response_column: str | None = None,
    response_marker: str | None = "\n\nAssistant:",
) -> list[dict[str, Any]]:
    """Normalise a dataset to a list of ``{"prompt", "response"}`` dicts (pairwise data: two per row).

    Raises DataError naming the missing column when the layout is not recognised.
    """
    cols = list(ds.column_names)
    if len(ds) == 0:
        raise DataError("the dataset is empty; give a dataset with at least one row")
    pairwise = "chosen" in cols and "rejected" in cols
    if response_column is None:
        response_column = next((c for c in RESPONSE_COLUMNS if c in cols), None)
    if prompt_column not in cols:
        if pairwise and response_marker:
            out = []
            for row in ds:
                for key in ("chosen", "rejected"):
                    p, r = _split_dialogue(row[key], response_marker)
                    out.append({"prompt": p, "response": r})
            return out
        raise DataError(
            f"dataset has no prompt column {prompt_column!r} (columns: {', '.join(cols)}); pass --prompt_column NAME"
        )
    if pairwise:
        out = []
        for row in ds:
            for key in ("chosen", "rejected"):
                out.append({"prompt": row[prompt_column], "response": _strip_prompt(row[key], row[prompt_column])})
        return out
    if response_column is None or response_column not in cols:
        raise DataError(
            f"dataset has no response column (looked for {response_column or ', '.join(RESPONSE_COLUMNS)}; "
            f"columns: {', '.join(cols)}); pass --response_column NAME"
        )
    return [{"prompt": row[prompt_column], "response": row[response_column]} for row in ds]


def _strip_prompt(response: Any, prompt: Any) -> Any:
    """Pairwise responses sometimes repeat the prompt (implicit-prompt datasets); keep only the answer."""
    if isinstance(response, str) and isinstance(prompt, str) and prompt and response.startswith(prompt):
        return response[len(prompt) :]
    if is_conversational(response):
        return [m for m in response if m.get("role") == "assistant"][-1:] or response
    return response
