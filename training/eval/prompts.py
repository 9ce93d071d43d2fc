"""The lm-evaluation-harness prompts for MMLU and CMMLU, so accuracies compare with published numbers.

lm-eval builds ``description + (exemplar + " " + letter + "\\n\\n") * k + question`` and scores the
continuations " A".." D" (fewshot sampler ``first_n`` over the dev split, target delimiter " ").
"""

from __future__ import annotations

from training.eval.data import LETTERS, MCBenchmark, MCItem, MCSubject


def description(bench: MCBenchmark, subject: MCSubject) -> str:
    if bench.name == "cmmlu":
        return f"以下是关于{subject.display}的单项选择题，请直接给出正确答案的选项。\n\n"
    return f"The following are multiple choice questions (with answers) about {subject.display}.\n\n"


def question_text(bench: MCBenchmark, item: MCItem) -> str:
    a, b, c, d = item.choices
    tail = "答案：" if bench.name == "cmmlu" else "Answer:"
    return f"{item.question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n{tail}"


def fewshot_prefix(bench: MCBenchmark, subject: MCSubject, shots: int) -> str:
    """The part every question of a subject shares: description and the first ``shots`` dev items."""
    if shots > len(subject.dev):
        from training.eval.data import EvalDataError

        raise EvalDataError(
            f"{bench.source}: subject {subject.name!r} has {len(subject.dev)} dev questions, {shots}-shot needs {shots}"
        )
    exemplars = "".join(f"{question_text(bench, ex)} {LETTERS[ex.answer]}\n\n" for ex in subject.dev[:shots])
    return description(bench, subject) + exemplars


def build_prompt(bench: MCBenchmark, subject: MCSubject, item: MCItem, shots: int) -> str:
    return fewshot_prefix(bench, subject, shots) + question_text(bench, item)
