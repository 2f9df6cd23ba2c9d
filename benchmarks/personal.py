"""Personalisation from a few choices: simulated users with real tastes choosing between SmolLM2's responses.

N users, each a Dirichlet mixture of K = 4 real scorers (harmless: a BTL reward model trained on the shipped
HH pairs; MiniLM relevance; VADER sentiment; conciseness), choose between SmolLM2's own responses by
Bradley-Terry on their mixture (METHODS.md §8). Measured on users never trained on, against the number k
of their choices given: NP-BTL's held-out accuracy beside pooled BTL and an oracle that knows their weights,
the cosine of ``infer_preference``'s weights with the true ones (under the population's prior, learnt from
the training users' choices), and Rewarded Soups (one RLOO run with LoRA per objective on SmolLM2) steered by
the weights inferred from 10 choices against the true and other users' weights (``steer_share``). Every
stage is cached in ``--work_dir``; docs/personalisation.md explains the setup.

    python benchmarks/personal.py --out personal.json            # about 40 minutes on 2 idle cores
    python benchmarks/personal.py --quick --out quick.json       # a development-sized run
    python benchmarks/personal.py --policy ric --out ric.json    # RiC (48 LoRA steps) steered instead
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

QUICK_WORLD = {"n_prompts": 12, "n_eval_prompts": 8, "max_new_tokens": 24, "offline_max_steps": 6, "rl_steps": 1}
QUICK_USERS = {"n_users": 12, "unseen_users": 4, "eval_repeats": 50, "num_targets": 10, "infer_repeats": 5,
               "npbtl_max_steps": 300, "steer_prompts": 2}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from pluralign.worlds.chat.personal_benchmark import PersonalSettings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--work_dir", type=Path, help="stage cache (default runs/personal, --quick: runs/personal_quick)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes for development (same stages, minutes)")
    ap.add_argument("--users", type=int, help="simulated users N (default 135: 35 trained on, 100 unseen)")
    ap.add_argument("--unseen", type=int, help="of them held out, never trained on (default 100)")
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="Dirichlet concentration of the users' weights (PersonalLLM's 0.05; 0.5: more mixed users)")
    ap.add_argument("--tau", type=float, default=0.25, help="choice temperature in z-units (0: deterministic)")
    ap.add_argument("--ric_steps", type=int, help="RiC offline SFT steps (default: 2 epochs of the training responses)")
    ap.add_argument("--base_model", help="the policy's base model (default builtin:smollm2-135m-instruct)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", choices=["ric", "soups"], default="soups",
                    help="the steerable policy driven by the users' weights (soups: one RLOO run per objective)")  # fmt: skip
    ap.add_argument("--guidance_scale", type=float, default=1.0,
                    help="ric: classifier-free guidance on the tags when it answers (1: plain decoding)")  # fmt: skip
    ap.add_argument("--driver", choices=["corner", "mean"], default=PersonalSettings.driver,
                    help="drive the policy by the inferred weights' corner (all weight on their largest) or by the weights themselves")  # fmt: skip
    args = ap.parse_args(argv)

    from pluralign.training.quiet import quiet_libraries
    from pluralign.worlds.chat.personal import PERSONAL
    from pluralign.worlds.chat.personal_benchmark import format_table, run_personal

    quiet_libraries()
    world = dict(QUICK_WORLD) if args.quick else {}
    users = dict(QUICK_USERS) if args.quick else {}
    if args.ric_steps:
        world["offline_max_steps"] = args.ric_steps
    if args.base_model:
        world["base_model"] = args.base_model
    for key, value in (("n_users", args.users), ("unseen_users", args.unseen)):
        if value is not None:
            users[key] = value
    from pluralign.errors import PluralignError

    try:
        settings = PersonalSettings(alpha=args.alpha, tau=args.tau, seed=args.seed, quick=args.quick, policy=args.policy,
                                    guidance_scale=args.guidance_scale, driver=args.driver, **users)  # fmt: skip
    except PluralignError as exc:  # one line naming the field, no traceback
        print(f"personal: {exc}", file=sys.stderr)
        return 2
    start = time.time()

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    work = args.work_dir or Path("runs/personal_quick" if args.quick else "runs/personal")
    result = run_personal(work, settings, PERSONAL.settings(seed=args.seed, **world), progress)
    print(format_table(result))
    progress(f"personal: done in {result['total_seconds']:.0f}s; stages: "
             + ", ".join(f"{k} {v:.0f}s" for k, v in result["stage_seconds"].items()))  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
