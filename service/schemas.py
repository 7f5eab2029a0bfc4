"""Request and response bodies of the HTTP API; every limit names its field and setting."""

from __future__ import annotations

import uuid
from typing import Annotated

from bentoml.validators import ContentType
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from service.rejections import reject
from shiftwatch.settings import service_settings

LABEL_MAX_CHARS = 256  # /feedback's label, before it is matched against the models' labels


def check_id(name: str, value: str | None) -> None:
    """`request_id` and `domain`, wherever they arrive: 1 to SHIFTWATCH_MAX_ID_CHARS characters
    (one limit, so an id /predict accepts is one /feedback accepts)."""
    limit = service_settings().max_id_chars
    if value is not None and not 0 < len(value) <= limit:
        raise reject(
            f"bad_{name}", f"{name}: must be 1 to {limit} characters (SHIFTWATCH_MAX_ID_CHARS)"
        )


class Instance(BaseModel):
    """One sequence to classify: `tokens` (pre-split words) or `text` (raw text). Either way
    the answering model's own tokenizer encodes it; tokens are joined by single spaces."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[str] | None = Field(None, description="The sequence as tokens.")
    text: str | None = Field(None, description="The sequence as raw text.")
    request_id: str | None = Field(
        None, description="Client id for /feedback; generated if absent."
    )
    domain: str | None = Field(
        None, description="Client-supplied domain, for per-domain monitoring."
    )
    model: str | None = Field(None, description="A loaded model; default: the primary.")

    @model_validator(mode="after")
    def _check_limits(self) -> Instance:
        limits = service_settings()
        if (self.tokens is None) == (self.text is None):
            raise reject("tokens_or_text", "give exactly one of 'tokens' or 'text'")
        text = self.sequence
        field = "text" if self.text is not None else "tokens"
        if len(text) > limits.max_text_chars:
            raise reject(
                "text_too_long",
                f"{field}: {len(text)} characters exceeds the limit of {limits.max_text_chars} "
                "(SHIFTWATCH_MAX_TEXT_CHARS)",
            )
        words = len(text.split())
        if not words:
            raise reject(
                "empty_sequence", f"{field}: the sequence is empty; at least 1 token is required"
            )
        if words > limits.max_tokens:
            raise reject(
                "too_many_tokens",
                f"{field}: {words} whitespace-separated tokens exceeds the limit of "
                f"{limits.max_tokens} (SHIFTWATCH_MAX_TOKENS)",
            )
        for name in ("request_id", "domain"):
            check_id(name, getattr(self, name))
        if self.model is not None and self.model not in limits.models:
            raise reject(
                "unknown_model",
                f"model: {self.model!r} is not loaded; loaded models: {limits.models}",
            )
        if self.request_id is None:
            self.request_id = uuid.uuid4().hex
        return self

    @property
    def sequence(self) -> str:
        """The sequence as text, whichever way it was given (tokens joined by single spaces)."""
        if self.tokens is not None:
            return " ".join(self.tokens)
        return self.text or ""


def count_limit(field: str, noun: str, setting: str) -> AfterValidator:
    """A validator for list length: 1 to `settings.<setting>` items, errors naming the field."""

    def check(items: list) -> list:
        limit = getattr(service_settings(), setting)
        if not items:
            raise reject("empty_request", f"{field}: at least 1 {noun} is required")
        if len(items) > limit:
            raise reject(
                f"too_many_{field}",
                f"{field}: {len(items)} {noun}s exceeds the limit of {limit} (SHIFTWATCH_{setting.upper()})",
            )
        return items

    return AfterValidator(check)


Instances = Annotated[list[Instance], count_limit("instances", "instance", "max_instances")]


class Prediction(BaseModel):
    """The answer for one instance."""

    request_id: str
    label: str
    confidence: float
    probabilities: dict[str, float]  # by label, in the model's label order
    model: str
    model_version: str  # BentoML store tag of the bundle that answered


# /predict's answer. The stated content type is not decoration: for a list answer without
# one, BentoML 1.4 builds the list's whole JSON schema on every response to find its media
# type, which was 40% of the worker's request CPU (py-spy, docs/benchmarks.md).
Predictions = Annotated[list[Prediction], ContentType("application/json")]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    # Then one of the loaded models' labels (the service); bounded before that check, which
    # quotes it back.
    label: str = Field(min_length=1, max_length=LABEL_MAX_CHARS)

    @model_validator(mode="after")
    def _check_limits(self) -> FeedbackItem:
        check_id("request_id", self.request_id)
        return self


FeedbackItems = Annotated[list[FeedbackItem], count_limit("labels", "label", "max_feedback_items")]


class FeedbackReceipt(BaseModel):
    accepted: int  # label events written (each distinct request id and label once)
    duplicates: int  # labels for request ids already labelled here (counted, not written)


# The request bodies as a whole, as BentoML's API layer names them: the argument is the field.
class PredictRequest(BaseModel):
    instances: Instances


class FeedbackRequest(BaseModel):
    labels: FeedbackItems
