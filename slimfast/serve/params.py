"""Request parameters: one pydantic model per endpoint, unknown names refused.

They come from the query string, or, in a multipart upload, also from form fields (a name given
both ways is refused). FastAPI validates the query string from these models, which also puts
them in the OpenAPI document; :func:`merge` validates the two sources together.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .compare import CODECS

Model = Annotated[str | None, Field(description="a model or family name from GET /v1/models (default: the "
                                                "default model); NAME@N for installed version N", max_length=200)]
MaxBytes = Annotated[int | None, Field(ge=1, description="the largest file that fits, in bytes")]
TargetBpp = Annotated[float | None, Field(gt=0, allow_inf_nan=False, description="the largest file that fits, "
                                                                                  "in bits per pixel")]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="after")
    def _one_size_limit(self):
        if getattr(self, "max_bytes", None) is not None and getattr(self, "target_bpp", None) is not None:
            raise ValueError("give either max_bytes or target_bpp, not both")
        return self


class CompressParams(_Params):
    """``slimfast.compress``'s options; a size limit excludes quality and width."""

    model: Model = None
    quality: Annotated[float | None, Field(ge=0, le=100, allow_inf_nan=False,
                                           description="0 to 100, higher is better (fractions allowed)")] = None
    width: Annotated[int | None, Field(ge=1, description="a slimmable model's latent width")] = None
    max_bytes: MaxBytes = None
    target_bpp: TargetBpp = None

    @model_validator(mode="after")
    def _limit_alone(self):
        if (self.max_bytes is not None or self.target_bpp is not None) and \
                (self.quality is not None or self.width is not None):
            raise ValueError("give a quality or width, or a size limit (max_bytes / target_bpp), not both")
        return self


class DecompressParams(_Params):
    format: Annotated[Literal["png", "webp", "jpeg"] | None,
                      Field(description="the output format; without it, the Accept header chooses (default PNG)")] = None


class CompareParams(_Params):
    """One codec of the comparison page at a target size (exactly one of max_bytes, target_bpp)."""

    codec: Annotated[Literal[CODECS], Field(description="the codec to run")]
    model: Model = None
    max_bytes: MaxBytes = None
    target_bpp: TargetBpp = None

    @model_validator(mode="after")
    def _needs_limit(self):
        if self.max_bytes is None and self.target_bpp is None:
            raise ValueError("give a target size: max_bytes or target_bpp")
        return self


def merge(cls: type[_Params], query: dict, fields: dict) -> _Params:
    """``cls`` from the query string and the form fields together; ``ValueError`` with one line."""
    both = sorted(set(query) & set(fields))
    if both:
        raise ValueError(f"{', '.join(both)} given both in the query string and in the form")
    try:
        return cls.model_validate({**query, **fields})
    except ValidationError as exc:
        raise ValueError(describe(exc.errors())) from None


def describe(errors) -> str:
    """Pydantic's errors as one line: ``name: what is wrong; ...``."""
    parts = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
        msg = "unknown parameter" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
