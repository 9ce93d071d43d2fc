"""Chat templates with `{% generation %}` markers, so TRL can mask everything but assistant turns.

TRL's `assistant_only_loss` needs the markers and will not patch a template itself (FACTS.md). For
ChatML-style templates (SmolLM2, Qwen) the per-message line is the same shape, so we rewrite it: the
assistant's content and its end token go inside the markers, the role header stays outside.
"""

from __future__ import annotations

import re

from training.errors import TrainingError

GENERATION_TAG = "{% generation %}"

# {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
# (quotes, spacing and the literal newline vary between models)
_CHATML_LINE = re.compile(
    r"\{\{-?\s*(['\"])<\|im_start\|>\1\s*\+\s*message\[(['\"])role\2\]\s*\+\s*(['\"])(\n|\\n)\3\s*\+\s*"
    r"message\[(['\"])content\5\]\s*\+\s*(['\"])<\|im_end\|>\6\s*\+\s*(['\"])(\n|\\n)\7\s*-?\}\}"
)

_REPLACEMENT = (
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
)


class TemplateError(TrainingError, ValueError):
    pass


def with_generation_markers(template: str) -> str:
    """Return ``template`` with assistant content wrapped in generation markers (idempotent)."""
    if GENERATION_TAG in template:
        return template
    new, n = _CHATML_LINE.subn(lambda _m: _REPLACEMENT, template)
    if n != 1:
        raise TemplateError(
            "cannot derive {% generation %} markers for this chat template (not ChatML-style); "
            "set chat_template_path to a template that has them"
        )
    return new
