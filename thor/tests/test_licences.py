"""What Thor ships may be run as a service and shipped in an image: every package the production lock installs is
under a permissive licence, or a weak copyleft named here for the package it covers.

Each package's licence is read from what pip installed from `requirements.lock` (its SPDX expression, else its
short licence field, else its classifiers), so a new dependency, or a new release that changes its licence,
is judged when the lock changes. A network copyleft (AGPL, SSPL), GPL, a source-available licence or a
package that states none fails the suite: whoever adds one decides, and says so here.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"

# SPDX identifiers and the classifiers' names for them (the words a package's metadata uses).
PERMISSIVE = {
    "0BSD",
    "Apache",
    "Apache Software License",
    "Apache License, Version 2.0",
    "Apache-2.0",
    "BSD",
    "BSD License",
    "BSD 3-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "CC0-1.0",
    "ISC",
    "LLVM-exception",
    "MIT",
    "MIT License",
    "MIT-0",
    "Mozilla Public License 2.0 (MPL 2.0)",  # file-level copyleft: Thor modifies no such file
    "MPL-2.0",
    "New BSD",
    "PSF-2.0",
    "Python Software Foundation License",
    "ZPL-2.1",
    "Zope Public License",
    "Zlib",
}
# Weak copyleft, allowed for the packages named: used unmodified, as a library, never linked into Thor's code.
# An image that ships them ships their licence texts (pip installs them with each package).
ALLOWED_FOR = {"LGPL-3.0-only": {"psycopg", "psycopg-binary", "psycopg-pool"}}
# Words that join the terms of an SPDX expression (or of a field that spells one out).
JOINERS = re.compile(r"\s+(?:AND|OR|WITH)\s+|[()]", re.IGNORECASE)


def locked_packages() -> list[str]:
    names = []
    for line in LOCK.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", line):
            names.append(match.group(1).lower())
    return names


def licence_terms(package: str) -> set[str]:
    """The licences a package states, as SPDX identifiers or classifier names; empty when it states none."""
    metadata = importlib.metadata.metadata(package)
    if expression := _field(metadata, "License-Expression"):
        return _terms(expression)
    field = _field(metadata, "License").strip()
    # Some packages put the whole licence text (or "Dual License") in this field: the classifiers then say it.
    if field and "\n" not in field and (terms := _terms(field)) <= PERMISSIVE | set(ALLOWED_FOR):
        return terms
    classifiers = metadata.get_all("Classifier") or []
    return {line.split("::")[-1].strip() for line in classifiers if line.startswith("License ::")}


def _field(metadata, name: str) -> str:
    return (metadata.get_all(name) or [""])[0]


def _terms(expression: str) -> set[str]:
    return {term.strip() for term in JOINERS.split(expression) if term and term.strip()}


def refused_terms(package: str, terms: set[str]) -> set[str]:
    return {term for term in terms if term not in PERMISSIVE and package not in ALLOWED_FOR.get(term, set())}


def test_the_lock_names_the_packages_that_are_installed():
    packages = locked_packages()
    assert len(packages) > 50, "requirements.lock was not read"
    assert {"django", "djangorestframework", "kiteconnect", "psycopg"} <= set(packages)


@pytest.mark.parametrize("package", locked_packages())
def test_every_package_the_service_ships_is_under_a_licence_it_may_be_run_and_shipped_under(package):
    terms = licence_terms(package)
    assert terms, f"{package} states no licence: find it and name it here before shipping it"
    assert not refused_terms(package, terms), f"{package} is under {sorted(terms)}"


class TestTheJudgement:
    """The rule itself, on licences no locked package has today."""

    @pytest.mark.parametrize(
        "terms",
        [
            {"AGPL-3.0-only"},  # a network copyleft: running it as a service is distributing it
            {"GPL-3.0-or-later"},
            {"SSPL-1.0"},
            {"BUSL-1.1"},
            {"MIT", "Commons Clause"},
            {"GNU General Public License v3 (GPLv3)"},
        ],
    )
    def test_copyleft_and_source_available_licences_are_refused(self, terms):
        assert refused_terms("some-package", terms)

    def test_the_lgpl_is_allowed_only_for_the_packages_it_is_named_for(self):
        assert not refused_terms("psycopg", {"LGPL-3.0-only"})
        assert refused_terms("some-package", {"LGPL-3.0-only"}) == {"LGPL-3.0-only"}

    def test_a_choice_of_licences_is_split_into_its_terms(self):
        assert _terms("MPL-2.0 AND (Apache-2.0 OR MIT)") == {"MPL-2.0", "Apache-2.0", "MIT"}
        assert _terms("BSD-2-Clause AND Apache-2.0 WITH LLVM-exception") == {
            "BSD-2-Clause",
            "Apache-2.0",
            "LLVM-exception",
        }
