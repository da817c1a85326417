"""C-FIND against the source, Study Root: the studies a request names (STUDY level), and
the instances of one study (IMAGE level), whose SOP Instance UIDs the retrieve asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from gateway.pull.association import PullError
from gateway.pull.request import PullRequest

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["FoundStudy", "InstanceRef", "find_instances", "find_studies", "query_contexts"]

FIND = StudyRootQueryRetrieveInformationModelFind
_PENDING = (0xFF00, 0xFF01)


def query_contexts() -> list[PresentationContext]:
    """C-FIND, and C-MOVE for the move mode (on the same association)."""
    return [build_context(FIND), build_context(StudyRootQueryRetrieveInformationModelMove)]


@dataclass(frozen=True)
class FoundStudy:
    """One study the source holds (its UIDs stay in memory; only hashes are written)."""

    study_uid: str
    expected: int | None  # NumberOfStudyRelatedInstances, when the archive gives it
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class InstanceRef:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str  # "" when the archive does not return it


def _find(assoc: Association, identifier: Dataset, what: str) -> list[Dataset]:
    found: list[Dataset] = []
    for status, answer in assoc.send_c_find(identifier, FIND):
        code = int(status.get("Status", -1)) if status else -1
        if code in _PENDING:
            if answer is not None:
                found.append(answer)
            continue
        if code == 0:
            return found
        if not status:
            raise PullError(f"{what}: no C-FIND response (connection lost or timed out)")
        raise PullError(f"{what}: the source answered the C-FIND with status {code:#06x}")
    raise PullError(f"{what}: the C-FIND ended without a final response")


def find_studies(
    assoc: Association, request: PullRequest
) -> tuple[list[FoundStudy], list[str], int]:
    """The studies each key names, each once; the positions of keys that found nothing;
    how many keys found something."""
    studies: dict[str, FoundStudy] = {}
    not_found: list[str] = []
    matched = 0
    for value, where in zip(request.values, request.where, strict=True):
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.AccessionNumber = ""
        query.PatientID = ""
        query.NumberOfStudyRelatedInstances = ""
        query.ModalitiesInStudy = ""
        setattr(query, request.attribute, value)
        answers = _find(assoc, query, f"study query ({where})")
        uids = [str(a.get("StudyInstanceUID", "") or "") for a in answers]
        if not any(uids):
            not_found.append(where)
            continue
        matched += 1
        for answer, uid in zip(answers, uids, strict=True):
            if uid and uid not in studies:
                studies[uid] = FoundStudy(uid, _count(answer), _modalities(answer))
    return list(studies.values()), not_found, matched


def _count(answer: Dataset) -> int | None:
    value = answer.get("NumberOfStudyRelatedInstances", None)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _modalities(answer: Dataset) -> tuple[str, ...]:
    value = answer.get("ModalitiesInStudy", None)
    if value in (None, ""):
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted({str(v) for v in items if v}))


def find_instances(assoc: Association, study_uid: str) -> list[InstanceRef]:
    """Every instance of the study, in the archive's order, each once."""
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    found: dict[str, InstanceRef] = {}
    for answer in _find(assoc, query, "instance query"):
        sop = str(answer.get("SOPInstanceUID", "") or "")
        if sop and sop not in found:
            found[sop] = InstanceRef(
                study_uid,
                str(answer.get("SeriesInstanceUID", "") or ""),
                sop,
                str(answer.get("SOPClassUID", "") or ""),
            )
    return list(found.values())
