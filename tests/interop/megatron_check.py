"""Read windtunnel's megatron_args.sh with Megatron's own code and print what it makes of it.

Usage: python megatron_check.py ARG...   (the MEGATRON_ARGS array, one token per argument)

Megatron-LM's argument parser (megatron/training/arguments.py) is not on PyPI: the megatron-core
wheel holds megatron/core only. So each flag becomes its argparse destination the way argparse
names it (`--lr-wsd-decay-style` -> `lr_wsd_decay_style`, a switch -> True), and those values go
into the classes of megatron-core from PyPI that Megatron-LM builds from them:
- megatron.core.transformer.TransformerConfig (the model's shape; its __post_init__ checks run),
- megatron.core.optimizer.OptimizerConfig (AdamW),
- megatron.core.optimizer_param_scheduler.OptimizerParamScheduler (the WSD schedule), with the
  arguments megatron/training/training.py `get_optimizer_param_scheduler` gives it in
  iteration-based training (steps in samples: iterations x global batch size); its learning rate
  is read after every iteration.
torch is replaced by tests/interop/torch_standin.py (names only; nothing here computes with it).
The µP flags (--use-mup, --mup-*) are newer than megatron-core 0.16.1, the last release for
Python 3.11: they are passed through as values and not checked by its TransformerConfig.
"""

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_standin  # noqa: E402

torch_standin.install()
warnings.simplefilter("ignore")

from megatron.core.optimizer import OptimizerConfig  # noqa: E402
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler  # noqa: E402
from megatron.core.transformer import TransformerConfig  # noqa: E402


def namespace(tokens):
    """argparse's destinations: `--a-b V` -> a_b = V, a switch -> True."""
    args, i = {}, 0
    while i < len(tokens):
        flag = tokens[i]
        assert flag.startswith("--"), f"not a flag: {flag}"
        dest = flag[2:].replace("-", "_")
        if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            args[dest], i = tokens[i + 1], i + 2
        else:
            args[dest], i = True, i + 1
    return args


args = namespace(sys.argv[1:])
integer = lambda k: int(args[k])  # noqa: E731
real = lambda k: float(args[k])  # noqa: E731

model = TransformerConfig(
    num_layers=integer("num_layers"),
    hidden_size=integer("hidden_size"),
    ffn_hidden_size=integer("ffn_hidden_size"),
    num_attention_heads=integer("num_attention_heads"),
    num_query_groups=int(args.get("num_query_groups", args["num_attention_heads"])),
    kv_channels=integer("kv_channels"),
    hidden_dropout=real("hidden_dropout"),
    attention_dropout=real("attention_dropout"),
    normalization=args["normalization"],
    layernorm_epsilon=real("norm_epsilon"),
    add_bias_linear=not args.get("disable_bias_linear", False),
    gated_linear_unit=bool(args.get("swiglu", False)),
    init_method_std=real("init_method_std"),
)
optimizer = OptimizerConfig(
    optimizer=args["optimizer"],
    lr=real("lr"),
    min_lr=real("min_lr"),
    weight_decay=real("weight_decay"),
    adam_beta1=real("adam_beta1"),
    adam_beta2=real("adam_beta2"),
    adam_eps=real("adam_eps"),
    clip_grad=real("clip_grad"),
)


class Optimizer:
    param_groups = [{}]


gbs, iters = integer("global_batch_size"), integer("train_iters")
scheduler = OptimizerParamScheduler(
    Optimizer(),
    init_lr=0.0,
    max_lr=optimizer.lr,
    min_lr=optimizer.min_lr,
    lr_warmup_steps=integer("lr_warmup_iters") * gbs,
    lr_decay_steps=integer("lr_decay_iters") * gbs,
    lr_decay_style=args["lr_decay_style"],
    start_wd=optimizer.weight_decay,
    end_wd=optimizer.weight_decay,
    wd_incr_steps=iters * gbs,
    wd_incr_style="constant",
    wsd_decay_steps=integer("lr_wsd_decay_iters") * gbs,
    lr_wsd_decay_style=args["lr_wsd_decay_style"],
)
lrs = []
for _ in range(iters):
    scheduler.step(gbs)
    lrs.append(Optimizer.param_groups[0]["lr"])

print(
    json.dumps(
        {
            "num_layers": model.num_layers,
            "hidden_size": model.hidden_size,
            "ffn_hidden_size": model.ffn_hidden_size,
            "num_attention_heads": model.num_attention_heads,
            "num_query_groups": model.num_query_groups,
            "kv_channels": model.kv_channels,
            "gated_linear_unit": model.gated_linear_unit,
            "normalization": model.normalization,
            "init_method_std": model.init_method_std,
            "lr": optimizer.lr,
            "min_lr": optimizer.min_lr,
            "weight_decay": optimizer.weight_decay,
            "adam_beta1": optimizer.adam_beta1,
            "adam_beta2": optimizer.adam_beta2,
            "adam_eps": optimizer.adam_eps,
            "clip_grad": optimizer.clip_grad,
            "global_batch_size": gbs,
            "train_iters": iters,
            "seq_length": integer("seq_length"),
            "vocab_size": integer("vocab_size"),
            "mup": {k: v for k, v in args.items() if k.startswith("mup_") or k == "use_mup"},
            "lr_after_each_iteration": lrs,
        }
    )
)
