"""Which runs can be compared: protocol and data of each run, against each other and the paper's.

The paper's numbers were computed with the reference protocol (``paper``) on
the hub dataset. The SHA-256 of the published files is not known offline, so
a run on the hub data under the ``paper`` protocol counts as paper-comparable,
with its revision shown (``unknown`` when the result did not record it). Runs
on the bundled sample, a local folder, or another protocol are marked, as are
runs whose protocol or data differ from the other runs of the report.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from longrm_tasks.data.provenance import Provenance
from longrm_tasks.report.layout import Run

PAPER_PROTOCOL = "paper"


def data_digest(prov: Provenance | None) -> str | None:
    """One short tag for a set of data files (SHA-256 over the sorted name:hash lines), None when unknown."""
    if prov is None or not prov.files:
        return None
    text = "".join(f"{name}:{sha}\n" for name, sha in sorted(prov.files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def paper_gaps(run: Run) -> list[str]:
    """Why a run is not comparable with the paper (empty when it is)."""
    gaps = []
    if run.protocol is None:
        gaps.append("protocol not recorded")
    elif run.protocol != PAPER_PROTOCOL:
        gaps.append(f"protocol {run.protocol}")
    prov = run.provenance
    if prov is None:
        gaps.append("data not recorded")
    elif prov.source != "hub":
        gaps.append(f"{'the bundled sample' if prov.source == 'sample' else 'local data'}, not the hub data")
    return gaps


@dataclass
class Standing:
    """A run's provenance line and its marks."""

    run: Run
    paper_comparable: bool
    marks: list[str]

    @property
    def settings_line(self) -> str:
        """Protocol and the options a run departs from the defaults with."""
        run = self.run
        parts = [f"protocol {run.protocol or '?'}"]
        # shown only when a run departs from them (overlong: the protocol's own rule)
        defaults = {"order": "paper", "parser": "reference",
                    "overlong": "wrong" if run.protocol == PAPER_PROTOCOL else "truncate"}
        for key in ("order", "parser", "overlong", "max_length", "gen_tokens"):
            value = run.settings.get(key)
            if value not in (None, "", -1, defaults.get(key)):
                parts.append(f"{key} {value}")
                if key == "max_length" and run.settings.get("max_length_source"):
                    parts[-1] += f" (from {run.settings['max_length_source']})"
        return " · ".join(parts)

    @property
    def data_line(self) -> str:
        """Data source, hub revision and a digest of the file hashes."""
        prov = self.run.provenance
        if prov is None:
            return "data ?"
        where = prov.source
        if prov.source == "hub":
            where += f" @ {prov.revision[:12]}" if prov.revision else " @ revision unknown"
        digest = data_digest(prov)
        return f"data {where}" + (f" ({len(prov.files)} files, digest {digest})" if digest else "")

    @property
    def line(self) -> str:
        return f"{self.settings_line} · {self.data_line}"


def standings(runs: Sequence[Run]) -> list[Standing]:
    """Each run's comparability with the paper and with the report's first run that records the same thing."""
    out = []
    first_protocol = next((r for r in runs if r.protocol is not None), None)
    first_data = next((r for r in runs if r.provenance is not None), None)
    for run in runs:
        gaps = paper_gaps(run)
        marks = []
        if gaps:
            marks.append("≠ paper: " + ", ".join(gaps))
        elif run.provenance.revision is None:
            marks.append("paper-comparable (hub revision unknown: unpinned)")
        else:
            marks.append("paper-comparable")
        if first_protocol is not None and run is not first_protocol and run.protocol is not None \
                and run.protocol != first_protocol.protocol:
            marks.append(f"protocol differs from {first_protocol.name}")
        if first_data is not None and run is not first_data and run.provenance is not None \
                and not run.provenance.same_data(first_data.provenance):
            marks.append(f"data differs from {first_data.name}")
        out.append(Standing(run, not gaps, marks))
    return out


def file_hash_lines(runs: Sequence[Run], width: int = 12) -> list[str]:
    """One line per distinct data set: its digest and every file's SHA-256 prefix."""
    seen: dict[str, Provenance] = {}
    for run in runs:
        digest = data_digest(run.provenance)
        if digest and digest not in seen:
            seen[digest] = run.provenance
    return [f"data {digest}: " + ", ".join(f"{name.removesuffix('.jsonl')} {sha[:width]}"
                                           for name, sha in sorted(prov.files.items()))
            for digest, prov in seen.items()]
