"""The intents file: intent names, descriptions, example utterances and refusal texts."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from serving.errors import ServingError

DEFAULT_INTENTS = Path(__file__).with_name("intents.yaml")
ROUTES = ("domain", "chat", "out_of_scope")


class Intent(BaseModel):
    description: str = ""
    examples: list[str] = Field(min_length=1)
    refusal: dict[str, str] = Field(default_factory=dict)


class Intents(BaseModel):
    intents: dict[str, Intent]

    def refusal(self, lang: str) -> str:
        texts = self.intents["out_of_scope"].refusal
        return (
            texts.get(lang) or texts.get("en") or next(iter(texts.values()), "Sorry, I can't help with that.")
        )


class IntentsError(ServingError, ValueError):
    """The intents file is missing or malformed (one line)."""


def load_intents(path: Path | None = None) -> Intents:
    path = Path(path) if path else DEFAULT_INTENTS
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        intents = Intents.model_validate(data)
    except FileNotFoundError as e:
        raise IntentsError(f"intents file not found: {path}") from e
    except yaml.YAMLError as e:
        raise IntentsError(f"intents file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    except ValidationError as e:
        err = e.errors()[0]
        raise IntentsError(f"intents file {path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from e
    missing = [r for r in ROUTES if r not in intents.intents]
    if missing:
        raise IntentsError(
            f"intents file {path} lacks intent(s) {', '.join(missing)} (need {', '.join(ROUTES)})"
        )
    return intents
