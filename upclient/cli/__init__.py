"""The ``upclient`` command: put, get, info, rm, abort, ls, mkdir, mv, cp and purge from a shell.

::

    upclient put backup.tar.gz --to tus+https://host/files/
    upclient put a.bin b.bin --to "$URL" --json
    tar c dir | upclient put - --key dir.tar --to "$URL"
    upclient get ID out.bin --from "$URL"
    upclient info ID --from "$URL"
    upclient info http://127.0.0.1:1080/files/ID      # a tus upload URL names its server
    upclient rm ID --from "$URL"                      # always on the server
    upclient abort big.bin --from "$URL"              # give up big.bin's interrupted upload
    upclient put photo.png --key a/b/photo.png --to upyun://operator@service   # password: $UPYUN_PASSWORD
    upclient mv a/b/photo.png a/c.png --from upyun://operator@service
    upclient put photo.jpg --to fdfs://10.0.0.1:22122,10.0.0.2:22122 -o group=group2
    upclient ls --from fdfs://10.0.0.1:22122          # FastDFS groups

``UPCLIENT_URL`` is the default for ``--to`` and ``--from``.  A killed or
interrupted ``put`` resumes when the same command is run again (resume points
live in the user state directory, or in ``--store DIR``).

Exit statuses tell a wrapper whether a retry can help (:mod:`.exits`, also
in ``--help``): 0 all done, 1 failed, 2 usage, 3 credentials refused, 4 not
found, 5 a retry may help, 6 locked, 130 interrupted.

The package, one job a module: :mod:`.args` (the grammar), :mod:`.command`
(one run: output, logging, the client, exit status), :mod:`.exits` (the exit
statuses), :mod:`.put` (``put`` on :meth:`upclient.Client.put_many`),
:mod:`.verbs` (the other verbs), :mod:`.display` (the progress line),
:mod:`.redact` (secrets kept out of the output) and :mod:`.main` (the entry
point).
"""

from __future__ import annotations

from .args import build_parser, parse_size
from .exits import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RETRY,
    EXIT_USAGE,
)
from .display import ProgressDisplay, format_bytes
from .main import main

__all__ = [
    "main",
    "build_parser",
    "parse_size",
    "format_bytes",
    "ProgressDisplay",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_NOT_FOUND",
    "EXIT_RETRY",
    "EXIT_LOCKED",
    "EXIT_INTERRUPTED",
]
