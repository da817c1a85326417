"""Crash campaign: SIGKILL the running gateway at chosen instants, restart it, check the promises.

A real `dicom-gateway run` forwards to a real DCMTK `storescp +uf` (every received instance
becomes a new file, so a duplicate shows). A modality thread streams synthetic studies with
DCMTK `storescu`, a few files per association, and records what the gateway acknowledged.
The killer aims each SIGKILL at one phase, chosen by a seeded RNG:

- receive: an association is sending and the spool's instance rows are growing;
- deid: a study round is `processing` in state.db (a worker is de-identifying it);
- forward: a round is `forwarding` (the SCU is sending it);
- db-write: a gateway thread is inside write/pwrite/fsync/fdatasync on state.db or its WAL
  (read from /proc/PID/task/*/syscall, so the kill lands inside the write).

Each kill is counted under the phase observed in the instant before it (the target is only
where it aimed). Two kills in three take the worker processes too, as systemd's
KillMode=control-group does; one in three takes the main process alone, as the OOM killer
does, and the restart must not trip over workers that outlived it. After the last kill the
gateway drains, is stopped cleanly, and the campaign checks: every acknowledged instance
arrived exactly once under its de-identified SOP Instance UID, nothing arrived carrying an
identifying value, and the storage folder holds no orphan (no round, no spool or outbox
file, no half-made quarantine entry).

    PYTHONPATH=tests python tests/faults/crash_campaign.py --kills 200   # `make faults N=200`
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from killer import PHASES, Watcher, aim_and_kill, kill_all
from pydicom import dcmread
from service_harness import (
    Received,
    Site,
    ae_destination,
    create_secret,
    free_port,
    leaks_in,
    make_site,
    received_files,
    sop_instance_uid,
    start_gateway,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

PER_STUDY = 24
BATCH = 8
SIZE = 32
BAD_EVERY = 4  # the last instance of every 4th study has its pixel data cut in half


@dataclass
class Figures:
    """What the campaign counts; `problems` lists every broken promise (empty: passed)."""

    kills: Counter[str] = field(default_factory=Counter)
    aimed: Counter[str] = field(default_factory=Counter)
    main_only: int = 0
    outlived: int = 0  # workers still running ORPHAN_SECONDS after their gateway died
    sent: int = 0
    acknowledged: int = 0
    delivered: int = 0
    unacknowledged_delivered: int = 0
    duplicates: int = 0
    lost: int = 0
    unclean: int = 0
    quarantined: int = 0
    quarantine_duplicates: int = 0
    orphans: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    durability: str = "fsync"

    def table(self) -> str:
        by_phase = ", ".join(f"{p} {self.kills[p]}" for p in (*PHASES, "idle") if self.kills[p])
        return "\n".join(
            [
                f"crash campaign ({self.durability}): {sum(self.kills.values())} kills "
                f"({by_phase}) in {self.seconds:.0f} s; {self.main_only} of them the main "
                "process alone",
                f"  instances sent            {self.sent}",
                f"  acknowledged              {self.acknowledged}",
                f"  delivered (acknowledged)  {self.delivered}",
                f"  delivered, not acked      {self.unacknowledged_delivered}",
                f"  duplicates                {self.duplicates}",
                f"  lost                      {self.lost}",
                f"  unclean                   {self.unclean}",
                f"  quarantined (cut pixels)  {self.quarantined}"
                f" (+{self.quarantine_duplicates} entries twice)",
                f"  orphans                   {len(self.orphans)}",
                f"  workers outliving a kill  {self.outlived}",
            ]
        )


# --- the modality --------------------------------------------------------------------------


class Modality:
    """Streams synthetic studies (made as needed) to the gateway, BATCH files per association.

    A file is `sent` once storescu reported sending it; `acknowledged` when the answer was a
    success. An unanswered file is not sent again (the figures count it as not acknowledged);
    a file storescu never got to (connection refused, association cut) goes out later.
    """

    def __init__(self, folder: Path, port: int, seed: int) -> None:
        self.folder, self.port, self.seed = folder, port, seed
        self.patients: list[SyntheticPatient] = []
        self.bad: set[Path] = set()  # instances the gateway must quarantine, not forward
        self.sent: dict[Path, str] = {}
        self.acknowledged: list[Path] = []
        self.in_flight = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="modality", daemon=True)
        self.error: BaseException | None = None

    def _studies(self) -> Iterator[list[Path]]:
        for index in range(100_000):
            patient = random_patient(self.seed * 10_000 + index)
            self.patients.append(patient)
            study = make_ct_study(
                self.folder / f"study{index:05d}",
                instances=PER_STUDY,
                rows=SIZE,
                columns=SIZE,
                patient=patient,
                seed=self.seed * 10_000 + index,
            )
            if index % BAD_EVERY == BAD_EVERY - 1:
                self.bad.add(cut_pixel_data(study[-1]))
            yield study

    def _run(self) -> None:
        try:
            for study in self._studies():
                pending = list(study)
                while pending and not self.stop.is_set():
                    batch = pending[:BATCH]
                    self.in_flight.set()
                    try:
                        result = storescu(self.port, batch, timeout=60)
                    finally:
                        self.in_flight.clear()
                    attempted = [p for p in batch if p in result.statuses]
                    self.sent.update({p: result.statuses[p] for p in attempted})
                    self.acknowledged += [p for p in attempted if p in result.acknowledged]
                    pending = [p for p in pending if p not in result.statuses]
                    if not attempted:
                        self.stop.wait(0.1)  # the gateway is restarting
                if self.stop.is_set():
                    return
        except BaseException as exc:  # reported by the campaign, not lost in a thread
            self.error = exc


def cut_pixel_data(path: Path) -> Path:
    """Half the pixel data: DCMTK sends it, the gateway must quarantine it (with a reason)."""
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(path)
    return path


# --- the campaign ----------------------------------------------------------------------------


def run_campaign(
    workdir: Path,
    kills: int,
    seed: int = 1,
    log=print,
    durability: str = "fsync",
    first: Sequence[str] = PHASES,
) -> Figures:
    """`kills` SIGKILLs, aimed at the phases of `first` in turn, then by a Random(seed); the
    figures and any broken promise. `durability`: the site's `spool.durability` (a kill is a
    crash of the process, which both promise to survive)."""
    rng = random.Random(seed)
    figures = Figures(durability=durability)
    started = time.monotonic()
    secret = create_secret(workdir / "keys")
    archive_port = free_port()
    archive = workdir / "archive"
    with storescp_on(archive_port, archive, extra_args=["+xa", "+uf"]):
        site = make_site(
            workdir / "site",
            secret,
            destination=ae_destination(archive_port),
            quiet_seconds=0.5,
            max_attempts=10_000,
        )
        site.write(spool={"durability": durability})
        watcher = Watcher(site)
        modality = Modality(workdir / "in", site.listen_port, seed)
        gateway = start_gateway(site)
        modality.thread.start()
        try:
            for number in range(kills):
                # `first` in turn, so a short campaign aims at each phase it names.
                target = first[number] if number < len(first) else rng.choice(PHASES)
                figures.aimed[target] += 1
                main_only = rng.random() < 1 / 3
                figures.main_only += main_only
                observed, survivors = aim_and_kill(
                    gateway, watcher, modality.in_flight, target, rng, main_only
                )
                figures.outlived += survivors
                figures.kills[observed] += 1
                alone = " (main process alone)" if main_only else ""
                log(f"kill {number + 1}/{kills}: aimed at {target}, hit {observed}{alone}")
                gateway = start_gateway(site, timeout=60)
                # Let the restarted gateway get some work done before the next kill.
                time.sleep(rng.uniform(0.2, 1.5))
            modality.stop.set()
            modality.thread.join(timeout=90)
            assert not modality.thread.is_alive(), "the modality did not stop"
            if modality.error is not None:
                raise modality.error
            wait_until(
                lambda: gateway.metric("queue_depth") == 0,
                timeout=120,
                what="the gateway to forward everything",
                interval=0.25,
            )
            assert gateway.stop() == 0, "the gateway did not stop cleanly"
        finally:
            watcher.close()
            modality.stop.set()
            if gateway.alive():
                kill_all(gateway)
        received = received_files(archive)
    check(figures, site, modality, received)
    figures.seconds = time.monotonic() - started
    return figures


def check(figures: Figures, site: Site, modality: Modality, received: list) -> None:
    pseudonyms = site.pseudonyms()
    expected = {pseudonyms.uid(sop_instance_uid(p)): p for p in modality.sent}
    acked = {pseudonyms.uid(sop_instance_uid(p)) for p in modality.acknowledged}
    counted = Counter(r.sop_instance_uid for r in received)
    bad = {pseudonyms.uid(sop_instance_uid(p)) for p in modality.bad & set(modality.sent)}
    held = Counter(
        pseudonyms.uid(sop_instance_uid(entry))
        for entry in (site.storage / "quarantine").glob("*/original.dcm")
    )
    figures.sent = len(modality.sent)
    figures.acknowledged = len(acked)
    figures.delivered = len((acked - bad) & set(counted))
    figures.unacknowledged_delivered = len(set(counted) - acked)
    figures.duplicates = sum(n - 1 for n in counted.values())
    figures.quarantined = len(acked & bad & set(held))
    figures.quarantine_duplicates = sum(n - 1 for n in held.values())
    figures.lost = len((acked - bad) - set(counted)) + len((acked & bad) - set(held))
    strangers = set(counted) - set(expected)
    if set(counted) & bad:
        figures.problems.append(f"{len(set(counted) & bad)} broken instances were forwarded")
    if figures.outlived:
        figures.problems.append(f"{figures.outlived} workers outlived their gateway")
    if figures.quarantine_duplicates:
        figures.problems.append(f"{figures.quarantine_duplicates} instances quarantined twice")
    if set(held) - bad:
        figures.problems.append(f"{len(set(held) - bad)} good instances were quarantined")
    leaks = find_leaks(received, expected, modality.patients)
    not_marked = [r.path.name for r in received if r.identity_removed != "YES"]
    figures.unclean = len({name for name, _ in leaks} | set(not_marked))
    figures.orphans = orphans(site)
    if figures.lost:
        figures.problems.append(f"{figures.lost} acknowledged instances lost")
    if strangers:
        figures.problems.append(f"{len(strangers)} received instances were never sent")
    if figures.unclean:
        figures.problems.append(f"{figures.unclean} received files are not clean: {leaks[:3]}")
    if figures.orphans:
        figures.problems.append(f"orphans in the storage folder: {figures.orphans[:5]}")


def find_leaks(
    received: list[Received], originals: dict[str, Path], patients: list[SyntheticPatient]
) -> list[tuple[str, str]]:
    """(file, value) for every identifying value found in a received file's bytes.

    Every patient's names, IDs, addresses... are searched in every file; an all-digit value
    (a birth date) only in its own patient's files: among a few hundred patients' dates,
    one is bound to turn up by chance inside some 2.25 UID's forty digits.
    """
    textual = {v for p in patients for v in p.identifying_values() if not v.isdigit()}
    hits: list[tuple[str, str]] = []
    for got in received:
        source = originals.get(got.sop_instance_uid)
        own: set[str] = set()
        if source is not None:
            patient = patients[int(source.parent.name.removeprefix("study"))]
            own = {v for v in patient.identifying_values() if v.isdigit()}
        hits += leaks_in([got.path], textual | own)
    return hits


def orphans(site: Site) -> list[str]:
    """After a clean stop with nothing left to forward: anything left over is an orphan."""
    found: list[str] = []
    db_path = site.storage / "state.db"
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        for table in ("rounds", "instances", "forwarded"):
            count = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if count:
                found.append(f"state.db: {count} rows in {table}")
    spool, outbox = site.storage / "spool", site.storage / "outbox"
    for path in [*spool.rglob("*"), *outbox.rglob("*")]:
        free_slot = path.parent == spool / "slots" and path.is_file() and not path.stat().st_size
        if path not in (spool / "tmp", spool / "slots") and not free_slot:
            found.append(str(path.relative_to(site.storage)))
    found += [str(p.relative_to(site.storage)) for p in site.storage.glob("quarantine/.tmp-*")]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-faults-"))
    figures = run_campaign(workdir, args.kills, args.seed, durability=args.durability)
    print(figures.table())
    for problem in figures.problems:
        print("PROBLEM:", problem)
    if args.keep or figures.problems:
        print("work folder kept:", workdir)
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
