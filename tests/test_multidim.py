"""Per-dimension pairs from PKU-SafeRLHF, HelpSteer-style ratings and plain pair files; clear errors;
and the CLI commands that read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluralign.cli import main
from pluralign.data.dimension_pairs import load_dimension_pairs
from pluralign.errors import DataError
from pluralign.models.manifest import Manifest

FIX = Path(__file__).parent / "fixtures" / "multidim"
PKU, HELPSTEER, POLITE = str(FIX / "pku.jsonl"), str(FIX / "helpsteer.jsonl"), str(FIX / "polite.jsonl")


def test_pku_saferlhf_gives_helpfulness_and_harmlessness_pairs():
    dims = load_dimension_pairs([PKU])
    assert list(dims) == ["helpfulness", "harmlessness"]
    first_help, first_safe = dims["helpfulness"][0], dims["harmlessness"][0]
    assert first_help["chosen"].startswith("Insert a tension wrench")  # better_response_id = 1
    assert first_safe["chosen"].startswith("I can't help")  # safer_response_id = 0
    assert first_help["rejected"] == first_safe["chosen"]
    assert len(dims["helpfulness"]) == len(dims["harmlessness"]) == 3
    # asking for one dimension (or by its id column) selects it
    assert list(load_dimension_pairs([PKU], ["harmlessness"])) == ["harmlessness"]
    assert load_dimension_pairs([PKU], ["safer_response_id"])["safer_response_id"] == dims["harmlessness"]


def test_helpsteer_ratings_become_pairs_per_attribute():
    dims = load_dimension_pairs([HELPSTEER], ["helpfulness", "verbosity"])
    assert list(dims) == ["helpfulness", "verbosity"]
    # rain: 4, 1, 4 -> two pairs (the 4-4 tie is dropped); prime: 3 vs 0 -> one
    assert len(dims["helpfulness"]) == 3
    assert {p["rejected"] for p in dims["helpfulness"]} == {"Rain is water.", "9 is a prime number."}
    assert len(dims["verbosity"]) == 4
    assert all(p["chosen"] != p["rejected"] for p in dims["verbosity"])
    wide = load_dimension_pairs([HELPSTEER], ["verbosity"], min_rating_gap=2)
    assert len(wide["verbosity"]) == 2
    assert len(load_dimension_pairs([HELPSTEER], ["verbosity"], max_pairs=2)["verbosity"]) == 2


def test_plain_files_name_their_dimension_and_mix_with_others():
    dims = load_dimension_pairs([PKU, f"polite={POLITE}"], ["polite", "helpfulness"])
    assert list(dims) == ["polite", "helpfulness"]
    assert dims["polite"][0] == {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."}


def test_multidim_errors_name_the_column_or_dimension(tmp_path):
    with pytest.raises(DataError, match="no column 'rejected'"):
        load_dimension_pairs([f"polite={FIX / 'no_rejected.jsonl'}"])
    with pytest.raises(DataError, match="name its dimension"):
        load_dimension_pairs([PKU, POLITE])
    with pytest.raises(DataError, match="dimension 'honesty' is in no dataset"):
        load_dimension_pairs([PKU, f"polite={POLITE}"], ["polite", "helpfulness", "honesty"])
    with pytest.raises(DataError, match=r"has none of \['honesty'\]"):
        load_dimension_pairs([PKU], ["honesty"])
    with pytest.raises(DataError, match="'coherence' has no pairs"):
        load_dimension_pairs([HELPSTEER], ["coherence"], min_rating_gap=5)
    rows = [json.loads(line) for line in Path(PKU).read_text().splitlines()]
    broken = tmp_path / "pku_no_safer.jsonl"
    broken.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "safer_response_id"}) + "\n" for r in rows)
    )
    with pytest.raises(DataError, match="no column 'safer_response_id'"):
        load_dimension_pairs([str(broken)], ["helpfulness", "harmlessness"])
    with pytest.raises(DataError, match="no dataset given"):
        load_dimension_pairs([])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    root = tmp_path_factory.mktemp("cli")
    texts = [line for f in (PKU, POLITE) for line in Path(f).read_text().splitlines()] * 3
    tok = train_tokenizer(texts, root / "tok", vocab_size=400)
    return build_tiny_gpt(root / "model", tok, n_layer=2, n_embd=32, n_positions=128)


TINY_FLAGS = [
    "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--learning_rate", "1e-3",
    "--report_to", "none", "--save_strategy", "no", "--gradient_checkpointing", "false", "--disable_tqdm", "true",
]  # fmt: skip


def test_train_spo_and_dpo_commands_read_multidim_data(tiny_model, tmp_path, capsys):
    config = tmp_path / "spo.yaml"
    config.write_text(f"model_name_or_path: {tiny_model}\ndataset: [{PKU}]\nalpha: [0.5]\nbeta: 0.2\n")
    out = tmp_path / "spo"
    assert main(["train", "spo", "--config", str(config), "--output_dir", str(out), *TINY_FLAGS]) == 0
    manifest = Manifest.load(out)
    assert manifest.objectives == ["helpfulness", "harmlessness"]
    assert (out / manifest.extra["final"] / "model.safetensors").is_file()
    assert main(["train", "dpo", "--model_name_or_path", tiny_model, "--dataset", f"polite={POLITE}", PKU,
                 "--dimensions", "polite", "helpfulness", "--output_dir", str(tmp_path / "dpo"), *TINY_FLAGS]) == 0  # fmt: skip
    assert Manifest.load(tmp_path / "dpo").extra["dimensions"] == {"polite": 2, "helpfulness": 3}
    code = main(["train", "modpo", "--model_name_or_path", tiny_model, "--dataset", f"polite={FIX / 'no_rejected.jsonl'}",
                 "--output_dir", str(tmp_path / "modpo")])  # fmt: skip
    assert code == 2
    assert "no column 'rejected'" in capsys.readouterr().err
