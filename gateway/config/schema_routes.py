"""`routes:`: which profile, pixel settings and destinations an instance gets, by rules.

Rules are tried in order and the first whose `when` matches an instance wins; an instance no
rule matches takes the defaults (`deid.profile`, `deid.ocr`/`deid.pixel_rules`, `destination`).
A condition names a DICOM attribute by keyword (or one of the short names below) and says
how its value must look; every condition of a rule must hold. All of it is checked at
start-up: an unknown keyword, a bad regular expression or two rules of one name are
configuration errors naming the file, the key and the reason.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydicom.datadict import dictionary_VR, tag_for_keyword

from gateway.base.yaml_files import show, value_error
from gateway.config.schema_types import FilePath, Text, _Section

__all__ = ["SHORT_NAMES", "Condition", "PixelSettings", "RouteConfig"]

# Short names a site may use in `when:` for the attributes routes test most.
SHORT_NAMES = {
    "modality": "Modality",
    "sop_class": "SOPClassUID",
    "series_description": "SeriesDescription",
    "study_description": "StudyDescription",
    "manufacturer": "Manufacturer",
    "station_name": "StationName",
}


class Condition(_Section):
    """How one attribute's value must look: exactly one of the forms.

    `equals` (a value or a list of values, any of which may match; multi-valued attributes
    match when any value does), `regex` (searched in the value as text, or in any value),
    `present` (true: the attribute is there and not empty; false: absent or empty)."""

    equals: str | list[str] | None = None
    regex: str | None = None
    present: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_value_means_equals(cls, data: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            return {"equals": str(data)}
        if isinstance(data, list):
            return {"equals": [str(item) for item in data]}
        return data

    @model_validator(mode="after")
    def _exactly_one_form(self) -> Condition:
        given = [name for name in ("equals", "regex", "present") if getattr(self, name) is not None]
        if len(given) != 1:
            raise value_error(
                "route_condition",
                "give exactly one of equals, regex or present"
                + (f" (got {', '.join(given)})" if given else ""),
            )
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise value_error(
                    "route_regex",
                    f"{show(self.regex)} is not a regular expression ({exc})",
                    key="regex",
                ) from None
        return self


class PixelSettings(_Section):
    """A route's pixel cleaning: on or off, and the rules file that says how."""

    ocr: bool | None = None  # None: deid.ocr
    rules: FilePath | None = None  # None: deid.pixel_rules


class RouteConfig(_Section):
    name: Text
    when: dict[str, Condition] = Field(default_factory=dict)  # empty: every instance
    profile: FilePath | None = None  # None: deid.profile
    pixels: PixelSettings | None = None
    # Names of `destinations:` entries (the main `destination` is "default"); None: default.
    destinations: list[Text] | None = None
    drop: bool = False  # not forwarded; recorded in the audit with the rule's name

    @field_validator("when")
    @classmethod
    def _known_attributes(cls, when: dict[str, Condition]) -> dict[str, Condition]:
        for key in when:
            keyword = SHORT_NAMES.get(key, key)
            tag = tag_for_keyword(keyword)
            if tag is None:
                raise value_error(
                    "route_attribute",
                    f"{show(key)} is not a DICOM keyword (e.g. Modality, SeriesDescription) "
                    f"nor one of {', '.join(sorted(SHORT_NAMES))}",
                    key=key,
                )
            if dictionary_VR(tag) == "SQ":
                raise value_error(
                    "route_attribute", f"{show(key)} is a sequence; name an attribute in it "
                    "that is not", key=key,
                )  # fmt: skip
        return when

    @model_validator(mode="after")
    def _drop_alone(self) -> RouteConfig:
        if self.drop and (self.destinations or self.profile or self.pixels):
            raise value_error(
                "route_drop", "a rule that drops sends nowhere: no profile, pixels or "
                "destinations beside drop: true", key="drop",
            )  # fmt: skip
        if self.destinations is not None and not self.destinations:
            raise value_error(
                "route_destinations",
                "an empty list sends nowhere: write drop: true to drop",
                key="destinations",
            )
        return self

    def keyword(self, key: str) -> str:
        return SHORT_NAMES.get(key, key)
