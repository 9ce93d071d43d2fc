"""CPT: plain next-token loss on packed text, with forgetting defences as options.

Defences: replay mix (done in `keel data prepare`), freezing the bottom N% of layers, a smaller LR for
embed_tokens/lm_head, early stop when general-text perplexity rises, and weight averaging with the
parent after training.
"""

from __future__ import annotations

import math
from pathlib import Path

from training.config import CPTConfig
from training.stages import common


def freeze_bottom_layers(model, pct: float) -> int:
    """Freeze the first ``pct``% of decoder layers (embeddings have their own LR knob instead).

    Returns how many layers were frozen."""
    layers = model.get_decoder().layers
    n = int(len(layers) * pct / 100.0)
    for layer in layers[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return n


def embedding_param_ids(model) -> set[int]:
    """embed_tokens and lm_head (one tensor when tied, as in SmolLM2)."""
    ids = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings()
    if out is not None:
        ids.add(id(out.weight))
    return ids


def make_trainer_class(embed_lr_ratio: float):
    import trl

    class CPTTrainer(trl.SFTTrainer):
        """SFTTrainer whose optimizer gives embeddings a separate learning rate."""

        def create_optimizer(self, model=None):
            if self.optimizer is not None or embed_lr_ratio == 1.0:
                return super().create_optimizer(model)
            model = model if model is not None else self.model
            decay = set(self.get_decay_parameter_names(model))
            embed = embedding_param_ids(model)
            lr = self.args.learning_rate
            groups: dict[tuple[bool, bool], list] = {}
            seen: set[int] = set()
            for name, p in model.named_parameters():
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                groups.setdefault((id(p) in embed, name in decay), []).append(p)
            param_groups = [
                {
                    "params": ps,
                    "lr": lr * (embed_lr_ratio if is_embed else 1.0),
                    "weight_decay": self.args.weight_decay if has_decay else 0.0,
                }
                # the main group first: the Trainer logs the first group's LR
                for (is_embed, has_decay), ps in sorted(groups.items())
            ]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            kwargs.pop("lr", None)
            self.optimizer = cls(param_groups, lr=lr, **kwargs)
            return self.optimizer

    return CPTTrainer


def make_early_stop(margin: float):
    """Stop when general held-out perplexity exceeds (1+margin) × its first measured value."""
    from transformers import TrainerCallback

    class GeneralPplEarlyStop(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.stopped_at: int | None = None

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            loss = (metrics or {}).get("eval_general_loss")
            if loss is None:
                return
            ppl = math.exp(min(loss, 50.0))
            if self.start is None:
                self.start = ppl
            elif ppl > self.start * (1.0 + margin):
                self.stopped_at = state.global_step
                control.should_training_stop = True

    return GeneralPplEarlyStop()


def average_with_parent(folder: Path, parent: Path, alpha: float) -> int:
    """In place: every tensor in ``folder``'s safetensors becomes (1-alpha)*trained + alpha*parent.

    Works tensor by tensor on the files, so it never holds two full models (and works after ZeRO-3).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    parent_files = sorted(Path(parent).glob("*.safetensors"))
    index = {}
    for pf in parent_files:
        with safe_open(str(pf), "pt") as f:
            for k in f.keys():  # noqa: SIM118 - safe_open is not a dict
                index[k] = pf
    merged = 0
    for tf in sorted(Path(folder).glob("*.safetensors")):
        out = {}
        with safe_open(str(tf), "pt") as f:
            meta = f.metadata()
            for k in f.keys():  # noqa: SIM118
                t = f.get_tensor(k)
                if k in index:
                    with safe_open(str(index[k]), "pt") as pf:
                        p = pf.get_tensor(k).to(t.dtype)
                    if p.shape == t.shape:
                        t = (1.0 - alpha) * t + alpha * p
                        merged += 1
                out[k] = t.contiguous()
        save_file(out, str(tf), metadata=meta)
    return merged


def main(cfg: CPTConfig, resume: bool = False) -> common.RunResult:
    common.setup_torch(cfg)
    paths, snap = common.prepare_run(cfg, resume)
    recorder = common.make_recorder()
    budget = common.make_budget(cfg, paths, resume)
    callbacks = [recorder, budget]
    evals = {
        name: common.read_rows(path, cfg.max_eval_samples)
        for name, path in snap.evals.items()
        if name in ("domain", "general")
    }
    stopper = None
    if cfg.early_stop_margin > 0 and "general" in evals:
        stopper = make_early_stop(cfg.early_stop_margin)
        callbacks.append(stopper)
    tokenizer = common.load_tokenizer(cfg.model)
    model = common.load_model(cfg.model)
    frozen = freeze_bottom_layers(model, cfg.freeze_bottom_pct) if cfg.freeze_bottom_pct > 0 else 0
    args = cfg.for_trainer(paths.work, has_eval=bool(evals))
    # a first evaluation gives the baseline the early stop compares against
    args.eval_on_start = bool(evals) and bool(cfg.eval_steps)
    trainer = make_trainer_class(cfg.embed_lr_ratio)(
        model=model,
        args=args,
        train_dataset=common.read_rows(snap.train, cfg.max_train_samples),
        eval_dataset=evals or None,
        processing_class=tokenizer,
        peft_config=common.peft_config(cfg),
        callbacks=callbacks,
    )
    steps = common.run_training(trainer, paths, resume, recorder)
    if evals and (not cfg.eval_steps or steps % cfg.eval_steps):
        trainer.evaluate()  # final validation perplexities for the manifest (unless just measured)
    post_save = None
    if cfg.merge_alpha > 0:

        def post_save(folder: Path) -> None:
            average_with_parent(folder, Path(cfg.model), cfg.merge_alpha)

    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate/DeepSpeed wrap it
    extra = {
        "frozen_layers": frozen,
        "group_lrs": sorted({g.get("initial_lr", g["lr"]) for g in opt.param_groups})
        if opt is not None
        else [],
    }
    if stopper is not None:
        extra["early_stopped_at"] = stopper.stopped_at
    return common.save_final(trainer, tokenizer, cfg, paths, snap, steps, recorder, budget, post_save, extra)
