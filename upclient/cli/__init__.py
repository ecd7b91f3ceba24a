"""The ``upclient`` command: put, get, info, rm, ls, mkdir, mv, cp and purge from a shell.

::

    upclient put backup.tar.gz --to tus+https://host/files/
    upclient put a.bin b.bin --to "$URL" --json
    tar c dir | upclient put - --key dir.tar --to "$URL"
    upclient get ID out.bin --from "$URL"
    upclient info ID --from "$URL"
    upclient put photo.png --key a/b/photo.png --to upyun://operator@service   # password: $UPYUN_PASSWORD
    upclient mv a/b/photo.png a/c.png --from upyun://operator@service
    upclient put photo.jpg --to fdfs://10.0.0.1:22122,10.0.0.2:22122 -o group=group2
    upclient ls --from fdfs://10.0.0.1:22122          # FastDFS groups

``UPCLIENT_URL`` is the default for ``--to`` and ``--from``.  A killed or
interrupted ``put`` resumes when the same command is run again (resume points
live in the user state directory, or in ``--store DIR``).

Exit status: 0 when everything worked, 1 when anything failed, 2 for a usage
error (bad arguments, a missing file), 130 after Ctrl-C.

The package, one job a module: :mod:`.args` (the grammar), :mod:`.command`
(one run: output, logging, the client, exit status), :mod:`.put` (``put`` on
:meth:`upclient.Client.put_many`), :mod:`.verbs` (the other verbs),
:mod:`.display` (the progress line), :mod:`.redact` (secrets kept out of the
output) and :mod:`.main` (the entry point).
"""

from __future__ import annotations

from .args import build_parser, parse_size
from .command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
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
    "EXIT_INTERRUPTED",
]
