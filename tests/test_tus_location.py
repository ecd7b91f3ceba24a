"""A created upload's Location is resolved as ``urljoin`` resolves it, also where the parse is skipped."""

from __future__ import annotations

import itertools
import urllib.parse

import pytest

from upclient.backends.tus.protocol import resolve

BASE = "http://127.0.0.1:8080/files/"

ODD = [
    "http://h/files/abc", "https://h:1/files/abc?x=1", "http://h/a/../b", "http://h/./b", "http://h/a/.",
    "http://h/a/..", "http://h/a?", "http://h/a#", "http://h/a#f", "http://h", "http://h/", "HTTP://H/a",
    "http://h/a/.b", "http://h/a..b/c", "http://h//a", "/files/x", "x", "//h/x", "http://h/a?b#c",
    "http://h/%2e%2e/x", "ftp://h/x", "http://h/a/./", "http://h:80/a", "../up", "?q", "#f", "",
]


@pytest.mark.parametrize("location", ODD)
def test_odd_locations_resolve_as_urljoin_does(location):
    assert resolve(BASE, location) == urllib.parse.urljoin(BASE, location)


def test_every_short_path_of_dots_slashes_and_marks_resolves_as_urljoin_does():
    alphabet = "a/.?#:%"
    for n in range(6):
        for chars in itertools.product(alphabet, repeat=n):
            location = "http://h/" + "".join(chars)
            assert resolve(BASE, location) == urllib.parse.urljoin(BASE, location), location
