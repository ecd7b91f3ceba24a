"""README.rst is what PyPI shows: it must be valid reStructuredText and name the two commands."""

from pathlib import Path

import docutils.core

README = Path(__file__).resolve().parent.parent / "README.rst"


def test_readme_is_valid_restructuredtext():
    docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"),
        settings_overrides={"report_level": 2, "halt_level": 2, "warning_stream": False},
    )


def test_readme_starts_with_the_two_commands():
    head = README.read_text(encoding="utf-8")[:1500]
    assert "make demo" in head and "make test" in head
