"""The captured decode step with q/k/v and gate/up each as one matmul (one stacked weight, one LoRA pair),
against the step of the code before, the shape of an MLPO rollout on few-shot prompts.

The baseline is another checkout of teamtune (the one before the stacking) run by this same script in the same
GPU call: the first run writes its raw timings (`--raw`), the second reads them (`--against`) and records both.
Random weights of SmolLM2-135M's shape held in float32 as the training recipes hold them, decoded in bf16 (the
recipes' default), bare and with one LoRA adapter (r 16, all linear layers) on every row; sampling at
temperature 1, top-p 1.

    PYTHONPATH=<old checkout>/src python benchmarks/fused_projections.py --raw /tmp/before.json
    python benchmarks/fused_projections.py --against /tmp/before.json --out benchmarks/results/rollout_fused.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from decode_profile import kernel_table, step_ms
from peft import LoraConfig, get_peft_model

from teamtune.fastgen.decoder import FastDecoder, _Key, _State
from teamtune.fastgen.model import _Weights, compute_dtype
from teamtune.models import load_model

from common import device_name, record, save_records

SAMPLING = (True, 1.0, 1.0)


def timings(args) -> dict:
    """ms per captured step and kernels per eager step, per (adapter, batch)."""
    base = load_model(args.model, device="cuda", dtype="float32", seed=0).model.eval()
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    out = {"device": device_name(base.device)}
    for kind in ("bare", "lora"):
        model = base if kind == "bare" else get_peft_model(base, lora, adapter_name="leader").eval()
        names = [] if kind == "bare" else ["leader"]
        dec = FastDecoder()
        with torch.inference_mode():
            w = _Weights(model, names, compute_dtype(model))
            for batch in args.batches:
                key = _Key(tuple(names), batch, args.prompt, args.new, SAMPLING, (2, 10**9))
                st = _State(w, batch, args.prompt, args.new, 2, [10**9])
                st.rows.fill_(len(names))  # every row through the adapter (the leader's call)
                st.start.copy_(torch.randint(0, args.prompt // 2, (batch,), device=st.start.device))
                ms = min(step_ms(dec, w, st, key, args.steps) for _ in range(3))
                kernels, _, _ = kernel_table(dec, w, st, key)
                out[f"{kind}/{batch}"] = {"ms": ms, "kernels": kernels}
                print(
                    f"{kind}, batch {batch}, cache {args.prompt + args.new}: {ms:.3f} ms, {kernels} kernels"
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:smollm2-135m")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--prompt", type=int, default=1152)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--raw", help="write this run's raw timings here (the baseline run)")
    ap.add_argument("--against", help="the baseline run's raw timings: record both, with ratios")
    ap.add_argument("--out", default="benchmarks/results/rollout_fused.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("fused_projections.py needs a CUDA device (the step is timed as a captured graph)")
    now = timings(args)
    if args.raw:
        Path(args.raw).write_text(json.dumps(now, indent=2))
    if not args.against:
        return
    before = json.loads(Path(args.against).read_text())
    records = []
    for k, v in now.items():
        if k == "device":
            continue
        kind, batch = k.split("/")
        records.append(
            record(
                f"rollout_fused_step_{kind}_b{batch}",
                now["device"],
                1e3 / v["ms"],
                f"decode steps/s, {kind}, batch {batch}, cache {args.prompt + args.new} (kernels {v['kernels']})",
                f"separate projections (kernels {before[k]['kernels']})",
                1e3 / before[k]["ms"],
                ms=v["ms"],
                baseline_ms=before[k]["ms"],
            )
        )
    save_records(args.out, records)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
