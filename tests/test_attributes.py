"""Attribute-labelled data -> pairs labelled by the attribute (the hidden user type) that decided them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralign.data.attributes import attribute_pairs, detect_format, group_by_attribute
from pluralign.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "attributes"


def test_ultrafeedback_fine_grained_pairs_and_conflicts():
    pairs = attribute_pairs(str(FIXTURES / "ultrafeedback.jsonl"), attributes=["helpfulness", "honesty"])
    # egg: (0,1) rated by both attributes, (0,2) and (1,2) by helpfulness only (honesty N/A); capital: both
    assert len(pairs) == 6
    assert {p["attribute"] for p in pairs} == {"helpfulness", "honesty"}
    for p in pairs:
        assert p["chosen"] != p["rejected"]
    conflicting = attribute_pairs(
        str(FIXTURES / "ultrafeedback.jsonl"), attributes=["helpfulness", "honesty"], conflicting_only=True
    )
    by_attr = {p["attribute"]: p for p in conflicting}
    assert len(conflicting) == 2 and all(p["conflict"] for p in conflicting)
    assert by_attr["helpfulness"]["chosen"].startswith("Put it in boiling water")
    assert by_attr["honesty"]["chosen"].startswith("I am not sure")
    assert by_attr["honesty"]["rejected"] == by_attr["helpfulness"]["chosen"]


def test_pku_better_and_safer_ids():
    pairs = attribute_pairs(str(FIXTURES / "pku_saferlhf.jsonl"))
    assert detect_format(pairs[0].keys() | {"response_0", "response_1", "better_response_id"}) == "pairwise_ids"
    groups = group_by_attribute(pairs)
    assert set(groups) == {"better", "safer"} and len(groups["better"]) == 3 and len(groups["safer"]) == 3
    wifi_better = next(p for p in groups["better"] if "wifi" in p["prompt"])
    wifi_safer = next(p for p in groups["safer"] if "wifi" in p["prompt"])
    assert wifi_better["chosen"] == "Use a cracking tool on their router."
    assert wifi_safer["chosen"] == "Ask your neighbour for the password."
    conflicting = attribute_pairs(str(FIXTURES / "pku_saferlhf.jsonl"), conflicting_only=True)
    assert len(conflicting) == 4 and not any("knife" in p["prompt"] for p in conflicting)


def test_helpsteer_ratings_grouped_by_prompt():
    pairs = attribute_pairs(str(FIXTURES / "helpsteer.jsonl"), attributes=["helpfulness", "verbosity"])
    assert len(pairs) == 6  # three responses to one prompt -> 3 pairs x 2 attributes; the single answer has none
    conflicting = attribute_pairs(
        str(FIXTURES / "helpsteer.jsonl"), attributes=["helpfulness", "verbosity"], conflicting_only=True
    )
    assert len(conflicting) == 2
    verbose = next(p for p in conflicting if p["attribute"] == "verbosity")
    assert verbose["chosen"].startswith("Photosynthesis is the process")
    all_attrs = attribute_pairs(str(FIXTURES / "helpsteer.jsonl"))
    assert {p["attribute"] for p in all_attrs} == {"helpfulness", "correctness", "coherence", "complexity", "verbosity"}


def test_pairwise_rows_with_attribute_column_pass_through():
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "attribute": "x"},
        {"prompt": "p", "chosen": "b", "rejected": "a", "attribute": "y"},
        {"prompt": "q", "chosen": "c", "rejected": "d", "attribute": "x"},
    ]
    out = attribute_pairs(rows, conflicting_only=True)
    assert [(p["chosen"], p["attribute"]) for p in out] == [("a", "x"), ("b", "y")]


def test_errors_are_one_line_and_name_the_problem():
    with pytest.raises(DataError, match="safety_response_id"):
        attribute_pairs(str(FIXTURES / "pku_saferlhf.jsonl"), attributes=["safety"])
    with pytest.raises(DataError, match="empty"):
        attribute_pairs([])
    with pytest.raises(DataError, match="no attribute column 'humour'"):
        attribute_pairs(str(FIXTURES / "helpsteer.jsonl"), attributes=["humour"])
    with pytest.raises(DataError, match="unknown attribute format"):
        attribute_pairs(str(FIXTURES / "helpsteer.jsonl"), format="csv")
    with pytest.raises(DataError, match="no conflicting pairs"):
        attribute_pairs(str(FIXTURES / "helpsteer.jsonl"), attributes=["correctness"], conflicting_only=True)
    with pytest.raises(DataError, match="row 0 has no 'attribute'"):
        attribute_pairs([{"prompt": "p", "chosen": "a", "rejected": "b", "attribute": None}])
