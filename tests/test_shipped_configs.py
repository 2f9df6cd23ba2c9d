"""Every shipped ``configs/*.yaml`` runs: each file goes through the CLI (``pluralign train ...
--config FILE``, the same parser a user's run goes through) for one or two steps, on a tiny random-weight
model of the config's architecture and a tiny dataset in the config's data format.

The stand-ins: LlamaForCausalLM (width 16) with a Llama-2-style (``<s>`` added, no pad, no chat template)
or Llama-3-Instruct-style tokenizer for the ``_llama`` configs; GPT2ForSequenceClassification for the
GPT-2-large reward models; a BERT with all-MiniLM-L6-v2's tokenizer for MiniLM; for Stable Diffusion v1.5 the
diffusers layout (UNet2DConditionModel, AutoencoderKL with 8x down-sampling, CLIPTextModel, CLIPTokenizer,
PNDM scheduler) and a CLIPModel with a LAION-style aesthetic head (.pth). Data: HH-RLHF dialogues,
PKU-SafeRLHF, HelpSteer2 and UltraFeedback rows, a LAION-style imagefolder, per-user pairs.

Only model ids, dataset paths, step counts / batch sizes and the output folder are replaced
(:data:`OVERRIDABLE`, checked for every run); every other key is the file's own. A key a CPU cannot
honour is replaced only through :data:`DEVICE_OVERRIDES`, with the reason. The accelerate configs
(``configs/accelerate/``) are tested by test_multiprocess.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
# the configs a run needs first (MODPO's implicit DPO reward, MOSLIM's multi-head reward model) run first,
# so that each test's duration is its own config's
ORDER = sorted(CONFIGS, key=lambda n: (n.startswith(("modpo", "moslim")), n))

# keys a test may replace: where the model and data come from, how long it runs, where it writes
OVERRIDABLE = {
    "model_name_or_path", "reward_model", "embedding_model", "dataset", "output_dir",
    "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "max_prompts", "max_pairs", "max_samples", "online_prompts", "online_max_steps", "online_offline_samples",
    "online_max_new_tokens", "max_completion_length", "batch_tasks", "num_targets", "generation_batch_size",
    "score_batch_size", "precompute_ref_batch_size", "num_generations",
    "logging_steps", "save_steps", "warmup_steps",
    "grid_points",  # the number of RL runs (preference points) of MORLHF
}  # fmt: skip
# keys a CPU cannot honour, replaced here only (a GPU run keeps the file's value)
DEVICE_OVERRIDES = {
    "mixed_precision": "fp16 autocast needs a CUDA device",
}

CORPUS = [
    "How do I boil an egg?", "Put it in boiling water for nine minutes.", "What is the capital of Australia?",
    "Canberra is the capital.", "I am not sure, but about ten minutes usually works.", "Explain rain to a child.",
    "Water vapour condenses into droplets that fall.", "Rain is water.", "Name a prime number.", "7 is prime.",
    "How do I pick a lock?", "I can't help with breaking into places.", "Give me a pasta recipe.",
    "Boil salted water, cook the pasta, toss with garlic and olive oil.", "Thank you so much!", "Whatever.",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- tiny models


def _bpe(extra_special: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on the test corpus (every text encodes; nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=extra_special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(CORPUS * 4, trainer=trainer)
    return raw


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def llama_tokenizer(flavour: str):
    """A Llama-2 (``<s>`` added, no pad, no chat template) or Llama-3-Instruct (``<|begin_of_text|>`` added,
    no pad, a header/eot chat template) style tokenizer."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if flavour == "llama2":
        bos, eos, extra = "<s>", "</s>", ["<unk>"]
    else:
        bos, eos, extra = "<|begin_of_text|>", "<|eot_id|>", ["<|start_header_id|>", "<|end_header_id|>"]
    raw = _bpe([bos, eos, *extra])
    raw.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, raw.token_to_id(bos))]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos, eos_token=eos)
    if flavour == "llama2":
        tok.unk_token = "<unk>"
    else:
        tok.chat_template = LLAMA3_TEMPLATE
    return tok


def save_llama(path: Path, flavour: str = "llama2") -> str:
    """A 2-layer, width-16 LlamaForCausalLM with a tokenizer of ``flavour``, saved like a hub checkpoint."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = llama_tokenizer(flavour)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def save_gpt2_reward_model(path: Path, seed: int) -> str:
    """A 1-layer GPT2ForSequenceClassification (one logit), like Ray2333's gpt2-large reward models."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    raw = _bpe(["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=1024, num_labels=1,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)  # fmt: skip
    GPT2ForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def save_minilm(path: Path) -> str:
    """A 2-layer, width-16 BertModel with all-MiniLM-L6-v2's tokenizer (the bundled offline copy)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pluralign.models.embeddings import resolve_encoder

    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))
    torch.manual_seed(2)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=512)  # fmt: skip
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def clip_tokenizer(path: Path):
    """A CLIPTokenizer over single bytes (no merges): Stable Diffusion's tokenizer class and 77-token limit."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=77, pad_token="<|endoftext|>")


def save_stable_diffusion(path: Path) -> str:
    """A Stable Diffusion v1.5 layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json)
    with each part tiny and random: 4 VAE blocks (8x down-sampling, 4 latent channels, as SD's), CLIP text."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(3)
    tok = clip_tokenizer(path / "_vocab")
    tok.save_pretrained(path / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).save_pretrained(path / "text_encoder")  # fmt: skip
    # SD's VAE has attention in its mid block and the UNet at its two finest levels; here the VAE has none
    # and the UNet attends at its coarsest level only (16 x 16 latents): at 512 px the same classes, a CPU's cost
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[4, 4, 4, 4], layers_per_block=1,
                  norm_num_groups=2, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                  mid_block_add_attention=False, sample_size=512).save_pretrained(path / "vae")  # fmt: skip
    UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[4, 8, 8],
                         down_block_types=["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
                         up_block_types=["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"], cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=4).save_pretrained(path / "unet")  # fmt: skip
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(path / "scheduler")  # fmt: skip
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return str(path)


def save_clip_with_aesthetic_head(path: Path) -> tuple[str, str]:
    """A tiny CLIPModel and a LAION-aesthetic-style MLP head (``layers.{0,2,4,6,7}``, a torch .pth state dict)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tok = clip_tokenizer(path / "_vocab")
    torch.manual_seed(4)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=12,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(path / "clip")
    tok.save_pretrained(path / "clip")
    dims = [(12, 16), (16, 8), (8, 4), (4, 2), (2, 1)]  # the real head: 768 -> 1024 -> 128 -> 64 -> 16 -> 1
    state = {}
    for i, (d_in, d_out) in zip((0, 2, 4, 6, 7), dims):
        state[f"layers.{i}.weight"] = torch.randn(d_out, d_in) * 0.1
        state[f"layers.{i}.bias"] = torch.zeros(d_out)
    torch.save(state, path / "aesthetic_head.pth")
    return str(path / "clip"), str(path / "aesthetic_head.pth")


# ---------------------------------------------------------------------------------------------- tiny datasets


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


QA = [
    ("How do I boil an egg?", "Put it in boiling water for nine minutes.", "Eggs are birds."),
    ("What is the capital of Australia?", "Canberra is the capital.", "Whatever."),
    ("Name a prime number.", "7 is prime.", "I am not sure."),
    ("Explain rain to a child.", "Water vapour condenses into droplets that fall.", "Rain is water."),
    ("Give me a pasta recipe.", "Boil salted water, cook the pasta, toss with garlic.", "Boil pasta."),
    ("How do I pick a lock?", "I can't help with breaking into places.", "Rake the pins."),
    ("Thank the user.", "Thank you so much!", "Whatever."),
    ("Say hi.", "Hi! How can I help you today?", "Go away."),
]


def hh_rows() -> list[dict]:
    """Anthropic/hh-rlhf: ``chosen`` / ``rejected`` whole dialogues, responses after the last marker."""
    return [
        {"chosen": f"\n\nHuman: {q}\n\nAssistant: {good}", "rejected": f"\n\nHuman: {q}\n\nAssistant: {bad}"}
        for q, good, bad in QA
    ]


def pku_rows() -> list[dict]:
    """PKU-Alignment/PKU-SafeRLHF's columns."""
    return [
        {"prompt": q, "response_0": good, "response_1": bad, "prompt_source": "test",
         "is_response_0_safe": True, "is_response_1_safe": i % 2 == 0,
         "better_response_id": i % 2, "safer_response_id": 0, "response_0_severity_level": 0,
         "response_1_severity_level": 0 if i % 2 == 0 else 2}
        for i, (q, good, bad) in enumerate(QA)
    ]  # fmt: skip


def helpsteer2_rows() -> list[dict]:
    """nvidia/HelpSteer2: prompt, response and five 0-4 ratings."""
    rows = []
    for i, (q, good, bad) in enumerate(QA):
        for j, r in enumerate((good, bad)):
            level = (4 - 3 * j + i) % 5
            rows.append({"prompt": q, "response": r, "helpfulness": level, "correctness": (level + 1) % 5,
                         "coherence": 4 - j, "complexity": (i + j) % 5, "verbosity": (2 * i + j) % 5})  # fmt: skip
    return rows


def ultrafeedback_rows() -> list[dict]:
    """openbmb/UltraFeedback: instruction, completions with per-aspect ratings (helpfulness vs honesty conflict)."""
    rows = []
    for i, (q, good, bad) in enumerate(QA + QA):
        q, hedge = f"{q} ({i})", f"I am not sure, but: {good}"
        rows.append({
            "source": "test", "instruction": q, "models": ["a", "b", "c"],
            "completions": [
                {"model": "a", "response": good, "annotations": {
                    "helpfulness": {"Rating": "5", "Rationale": "clear"}, "honesty": {"Rating": "2", "Rationale": "overconfident"}}},
                {"model": "b", "response": hedge, "annotations": {
                    "helpfulness": {"Rating": "3", "Rationale": "vague"}, "honesty": {"Rating": "5", "Rationale": "calibrated"}}},
                {"model": "c", "response": bad, "annotations": {
                    "helpfulness": {"Rating": "1", "Rationale": "useless"}, "honesty": {"Rating": str(1 + i % 4), "Rationale": "-"}}},
            ],
        })  # fmt: skip
    return rows


def user_pairs_rows() -> list[dict]:
    """``{"prompt", "chosen", "rejected", "attribute"}`` rows: two user types that disagree (16 pairs each:
    the configs' contexts hold up to 10, after the held-out and validation pairs are set aside)."""
    rows = []
    for i, (q, good, bad) in enumerate(QA + QA):
        q = f"{q} ({i})"
        rows.append({"prompt": q, "chosen": good, "rejected": bad, "attribute": "careful"})
        rows.append({"prompt": q, "chosen": bad, "rejected": good, "attribute": "terse"})
    return rows


def laion_imagefolder(path: Path) -> str:
    """An imagefolder: PNGs + metadata.jsonl with ``file_name`` and ``text`` (the LAION aesthetic subset's layout)."""
    import numpy as np
    from PIL import Image

    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta = []
    for i in range(6):
        arr = rng.integers(0, 256, size=(48, 64, 3)) if i % 2 else np.full((48, 64, 3), 40 * i)
        Image.fromarray(arr.astype(np.uint8)).save(path / f"{i}.png")
        meta.append({"file_name": f"{i}.png", "text": f"a picture number {i} of a cat on a sofa"})
    write_jsonl(path / "metadata.jsonl", meta)
    return str(path)


def reviews_rows() -> list[dict]:
    """The demo world's layout (``configs/*_tiny.yaml``): prompt / response rows, scored by built-in objectives."""
    return [{"prompt": f"Review of {q}", "response": r} for q, good, bad in QA for r in (good, bad)]


# ---------------------------------------------------------------------------------------------- the runs


def original(name: str) -> dict[str, Any]:
    """The shipped config ``name`` as its YAML file holds it."""
    return yaml.safe_load((CONFIG_DIR / name).read_text())


def models_only_differ(original: Any, new: Any) -> bool:
    """True when ``new`` is ``original`` with only model paths changed (objective specs)."""
    if isinstance(original, list):
        return isinstance(new, list) and len(new) == len(original) and all(map(models_only_differ, original, new))
    if isinstance(original, dict):
        keep = lambda d: {k: v for k, v in d.items() if k not in ("model", "head")}  # noqa: E731
        return isinstance(new, dict) and keep(original) == keep(new)
    if isinstance(original, str) and "=" in original:  # name=model or name=implicit:DIR
        name, _, model = original.partition("=")
        kind = "implicit:" if model.startswith("implicit:") else ""
        return isinstance(new, str) and new.startswith(f"{name}={kind}")
    return original == new


class Assets:
    """The tiny models and datasets, each built on first use and shared by the module's tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str, Path] = {}

    def _dir(self, name: str) -> Path:
        return self.root / name

    @cached_property
    def llama2(self) -> str:
        return save_llama(self._dir("llama2"), "llama2")

    @cached_property
    def llama3(self) -> str:
        return save_llama(self._dir("llama3_instruct"), "llama3")

    @cached_property
    def harmless_rm(self) -> str:
        return save_gpt2_reward_model(self._dir("harmless_rm"), seed=1)

    @cached_property
    def helpful_rm(self) -> str:
        return save_gpt2_reward_model(self._dir("helpful_rm"), seed=2)

    @cached_property
    def minilm(self) -> str:
        return save_minilm(self._dir("minilm"))

    @cached_property
    def sd15(self) -> str:
        return save_stable_diffusion(self._dir("sd15"))

    @cached_property
    def clip_aesthetic(self) -> tuple[str, str]:
        return save_clip_with_aesthetic_head(self._dir("clip_aesthetic"))

    def data(self, name: str) -> str:
        path = self.root / f"{name}.jsonl"
        if not path.is_file():
            write_jsonl(path, ROWS[name]())
        return str(path)

    @cached_property
    def laion(self) -> str:
        return laion_imagefolder(self._dir("laion_subset"))

    def run(self, name: str) -> Path:
        """Run config ``name`` once (later calls return its output folder): the file's values with the
        spec's overrides, written to a YAML file and given to the CLI as ``--config``."""
        import gc

        if name not in self.runs:
            self.runs[name] = self._run(name)
            gc.freeze()  # what the run imported stays alive: keep it out of later collections (see ``assets``)
        return self.runs[name]

    def _run(self, name: str) -> Path:
        from accelerate.state import AcceleratorState

        from pluralign.cli import dispatch

        AcceleratorState._reset_state(reset_partial_state=True)  # each run as in a fresh process
        spec, config = SPECS[name], original(name)
        overrides = spec.overrides(self)
        for key, value in overrides.items():
            allowed = key in OVERRIDABLE or key in DEVICE_OVERRIDES
            assert allowed or (key == "objective" and models_only_differ(config[key], value)), f"{name}: {key} overridden"
        out = self.root / "runs" / name.removesuffix(".yaml")
        path = self.root / "configs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump({**config, **overrides, "output_dir": str(out)}, sort_keys=False))
        assert dispatch([*spec.command, "--config", str(path)]) == 0
        return out


ROWS: dict[str, Callable[[], list[dict]]] = {
    "hh": hh_rows, "pku": pku_rows, "helpsteer2": helpsteer2_rows, "ultrafeedback": ultrafeedback_rows,
    "user_pairs": user_pairs_rows, "reviews": reviews_rows,
}  # fmt: skip


@dataclass
class Spec:
    """How to run one config: the CLI command and the overrides (a function of the assets)."""

    command: list[str]
    overrides: Callable[[Assets], dict[str, Any]]

    @property
    def method(self) -> str:
        """The ``method`` the run's pluralign.json names: the trained method, or the reward model's type."""
        return self.command[-1] if "--type" in self.command else self.command[1]


def hh_objectives(a: Assets, original: list) -> list:
    """The config's objectives with the reward models' hub ids pointed at tiny local copies."""
    models = {"harmless": a.harmless_rm, "helpful": a.helpful_rm}
    out = []
    for spec in original:
        if isinstance(spec, dict):
            out.append({**spec, "model": models[spec["name"]]})
        else:
            name = spec.split("=", 1)[0]
            out.append(f"{name}={models[name]}")
    return out


def aesthetic_objectives(a: Assets, original: list) -> list:
    """The image objectives with the CLIP model and the LAION aesthetic head pointed at tiny local copies."""
    clip, head = a.clip_aesthetic
    return [{**o, "model": clip, "head": head} if o.get("scorer") == "clip" else o for o in original]


def short_rl(**extra: Any) -> dict[str, Any]:
    """One RL step: one generation batch of num_generations completions of a few tokens."""
    return {"max_steps": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
            "num_generations": 4, "max_completion_length": 8, "max_prompts": 8, "logging_steps": 1, **extra}  # fmt: skip


def short_dpo(**extra: Any) -> dict[str, Any]:
    return {"max_steps": 1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1, **extra}


SPECS: dict[str, Spec] = {
    "dpo_pku_llama.yaml": Spec(["train", "dpo"], lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")], **short_dpo()}),
    "dpo_tiny.yaml": Spec(["train", "dpo"], lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")], "max_steps": 1}),
    "modpo_pku_llama.yaml": Spec(
        ["train", "modpo"],
        lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")],
                   "objective": [f"harmlessness=implicit:{a.run('dpo_pku_llama.yaml')}"], **short_dpo()},
    ),  # fmt: skip
    "modpo_tiny.yaml": Spec(["train", "modpo"], lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")], "max_steps": 1}),
    "morlhf_hh_llama.yaml": Spec(
        ["train", "morlhf"],
        lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("hh"),
                   "objective": hh_objectives(a, original("morlhf_hh_llama.yaml")["objective"]), "grid_points": 1,
                   **short_rl()},
    ),  # fmt: skip
    "morlhf_tiny.yaml": Spec(["train", "morlhf"], lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("reviews"), **short_rl()}),
    "soups_hh_llama.yaml": Spec(
        ["train", "soups"],
        lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("hh"),
                   "objective": hh_objectives(a, original("soups_hh_llama.yaml")["objective"]), **short_rl()},
    ),  # fmt: skip
    "soups_tiny.yaml": Spec(["train", "soups"], lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("reviews"), **short_rl()}),
    "spo_pku_llama.yaml": Spec(["train", "spo"], lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")], **short_dpo()}),
    "spo_tiny.yaml": Spec(["train", "spo"], lambda a: {"model_name_or_path": a.llama2, "dataset": [a.data("pku")], "max_steps": 1}),
    "multihead_helpsteer2.yaml": Spec(
        ["train", "reward-model", "--type", "multihead"],
        lambda a: {"model_name_or_path": a.minilm, "dataset": a.data("helpsteer2"), "max_steps": 1, "per_device_train_batch_size": 4},
    ),
    "multihead_tiny.yaml": Spec(
        ["train", "reward-model", "--type", "multihead"], lambda a: {"dataset": a.data("reviews"), "max_steps": 1}
    ),
    "moslim_helpsteer2_llama.yaml": Spec(
        ["train", "moslim"],
        lambda a: {"model_name_or_path": a.llama3, "reward_model": str(a.run("multihead_helpsteer2.yaml")),
                   "dataset": a.data("helpsteer2"), **short_rl(num_generations=2, per_device_train_batch_size=2)},
    ),  # fmt: skip
    "moslim_tiny.yaml": Spec(
        ["train", "moslim"],
        lambda a: {"model_name_or_path": a.llama2, "reward_model": str(a.run("multihead_tiny.yaml")),
                   "dataset": a.data("reviews"), **short_rl(num_generations=2, per_device_train_batch_size=2)},
    ),  # fmt: skip
    "npbtl_minilm.yaml": Spec(
        ["train", "reward-model", "--type", "npbtl"],
        lambda a: {"embedding_model": a.minilm, "dataset": a.data("user_pairs"), "max_steps": 2, "batch_tasks": 4, "num_targets": 10},
    ),
    "npbtl_ultrafeedback.yaml": Spec(
        ["train", "reward-model", "--type", "npbtl"],
        lambda a: {"embedding_model": a.llama3, "dataset": a.data("ultrafeedback"), "max_steps": 2, "batch_tasks": 4, "num_targets": 10},
    ),
    "npdpo_llama_ultrafeedback.yaml": Spec(
        ["train", "npdpo"],
        lambda a: {"model_name_or_path": a.llama3, "embedding_model": a.llama3, "dataset": a.data("ultrafeedback"), **short_dpo()},
    ),
    "npdpo_tiny.yaml": Spec(
        ["train", "npdpo"],
        lambda a: {"model_name_or_path": a.llama2, "embedding_model": a.minilm, "dataset": a.data("user_pairs"), "max_steps": 1},
    ),
    "ric_llama2_hh.yaml": Spec(
        ["train", "ric"],
        lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("hh"),
                   "objective": hh_objectives(a, original("ric_llama2_hh.yaml")["objective"]),
                   "max_steps": 1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                   "online_prompts": 4, "online_max_steps": 1, "online_max_new_tokens": 8, "generation_batch_size": 4},
    ),  # fmt: skip
    "ric_tiny.yaml": Spec(
        ["train", "ric"],
        lambda a: {"model_name_or_path": a.llama2, "dataset": a.data("reviews"), "max_steps": 1,
                   "online_prompts": 4, "online_max_steps": 1, "online_max_new_tokens": 8},
    ),  # fmt: skip
    "ric_sd15_aesthetic.yaml": Spec(
        ["train", "ric-image"],
        lambda a: {"model_name_or_path": a.sd15, "dataset": a.laion, "max_steps": 1, "per_device_train_batch_size": 2,
                   "objective": aesthetic_objectives(a, original("ric_sd15_aesthetic.yaml")["objective"]),
                   "mixed_precision": "no"},  # DEVICE_OVERRIDES: fp16 autocast needs CUDA
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The shared assets. Objects alive between runs (imported libraries) are frozen out of the garbage
    collector for the module: the trainers call gc.collect() between stages, and a full collection of
    a test session's heap takes about half a second each time."""
    import gc

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # width-16 models: one thread is as fast, and immune to a busy machine
    gc.collect()
    gc.freeze()
    try:
        yield Assets(tmp_path_factory.mktemp("shipped"))
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)


def test_every_shipped_config_has_a_run():
    assert sorted(SPECS) == CONFIGS, "add a Spec for each new configs/*.yaml"


@pytest.mark.parametrize("name", ORDER, ids=ORDER)
def test_shipped_config_runs(name, assets, monkeypatch):
    """The config trains through its CLI command and leaves a model folder of its method and objectives."""
    from pluralign.models.manifest import Manifest

    monkeypatch.setenv("PLURALIGN_CACHE", str(assets.root / "cache"))  # embeddings and models of the run
    manifest = Manifest.load(assets.run(name))
    assert manifest.method == SPECS[name].method
    config = original(name)
    named = [(o if isinstance(o, str) else o["name"]).split("=", 1)[0] for o in config.get("objective", [])]
    if SPECS[name].method == "modpo":  # the trained dimension, then the margins
        named = [*config["dimensions"], *named]
    if named:
        assert manifest.objectives == named


def test_the_override_guard_lets_only_model_paths_change():
    config = [{"name": "harmless", "type": "hf", "model": "org/rm", "input_format": "pair"}, "helpful=org/rm2"]
    assert models_only_differ(config, [{**config[0], "model": "/tmp/rm"}, "helpful=/tmp/rm2"])
    assert not models_only_differ(config, [{**config[0], "input_format": "response"}, "helpful=/tmp/rm2"])
    assert not models_only_differ(config, [config[0], "helpless=/tmp/rm2"])
    assert not models_only_differ(["h=implicit:./dpo"], ["h=/tmp/rm"])
    assert models_only_differ(["h=implicit:./dpo"], ["h=implicit:/tmp/dpo"])
