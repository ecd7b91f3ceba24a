"""Secrets appear nowhere (issue 11, item 3): the whole flow of every backend, searched.

Each backend runs against its real server on 127.0.0.1 (tus: ``@tus/server``,
as it answers with an absolute ``Location`` and as it answers with a
relative one; the community, UPYUN and FastDFS emulators) with distinctive
secrets and every logger at DEBUG: a multipart put interrupted and resumed
(so a resume record is written), get, info, listing, delete, and failures
(wrong credentials: 401, a deleted file: 404, a 5xx, a dropped connection).
Then every log record, the repr and str of every object a user holds,
every exception (message, args, attributes, the whole traceback with its
causes), every file of the store, and the output of the CLI (human and
``--json``, ``-vvv``) are searched for each secret in each form it may take
(as given, percent-encoded, base64; a Basic header; UPYUN's signing key and
the signatures it computes; the signatures of community presigned part URLs).

A failure names the backend, the secret and where it was found.  FastDFS
has no credentials: what a user can still give it (``headers=``, ``auth=``,
a password in the URL) is searched for just the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

import upclient
from upclient import errors

from .contract import HookedFileSource, resume_points
from .secrets_flow import Evidence, Secrets, capture_logs, cli_env, leak_report, run_cli
from .secrets_rigs import RETRY, CommunityRig, FdfsRig, Rig, TusRelativeRig, TusRig, UpyunRig, write_file

RIGS = ["tus", "tus-relative-location", "community", "upyun", "fdfs"]


@pytest.fixture(scope="module", params=RIGS)
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp(f"secrets-{request.param}")
    with contextlib.ExitStack() as stack:  # stops the rig's servers, whatever happens
        if request.param.startswith("tus"):
            node = request.getfixturevalue("node_server")
            yield (TusRig if request.param == "tus" else TusRelativeRig)(work, stack, node)
        else:
            yield {"community": CommunityRig, "upyun": UpyunRig, "fdfs": FdfsRig}[request.param](work, stack)


# -- the flows --------------------------------------------------------------------------------


def library_flow(rig: Rig, ev: Evidence) -> None:
    """Every verb and every kind of failure, through the library, at DEBUG."""
    work = rig.work / "library"
    work.mkdir()
    store = upclient.FileStore(work / "store")
    part = rig.part
    big = work / "big.bin"
    size = 12 * part + 5
    digest = write_file(big, size)
    settings = dict(part_size=part, concurrency=2, retry=RETRY, connect_timeout=5, read_timeout=30)
    progress: List[upclient.Progress] = []
    with rig.client(store, **settings) as client:
        ev.objects("client", client, client.backend, client.settings, client.settings.retry, client.store)
        cancel = threading.Event()
        with HookedFileSource(big, lambda off: off >= size // 3 and cancel.set()) as src:
            ev.attempt("put interrupted by a cancel",
                       lambda: client.put(src, key=rig.key("big.bin"), cancel=cancel, on_progress=progress.append),
                       expect=errors.Cancelled)
        assert resume_points(store), "the interrupted put kept no resume record"
        ev.store("store after the interrupted put", store.directory)
        result = ev.attempt("resumed put",
                            lambda: client.put(big, key=rig.key("big.bin"), on_progress=progress.append))
        assert isinstance(result, upclient.UploadResult) and result.resumed
        assert rig.stored_sha256(result) == digest
        assert hashlib.sha256(client.get(result.id)).hexdigest() == digest
        copy = work / "copy.bin"
        ev.attempt("get to a file", lambda: client.get(result.id, copy, on_progress=progress.append))
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
        ev.attempt("info", lambda: client.info(result.id))
        ev.attempt("exists", lambda: client.exists(result.id))
        listing = ev.attempt("iter", lambda: list(itertools.islice(client.iter(rig.prefix or ""), 50)),
                             expect=errors.Unsupported if rig.prefix is None else None)
        if rig.prefix is not None:
            assert isinstance(listing, list) and listing, "nothing listed"
        ev.objects("progress", *progress)
        assert progress, "no progress reported"
        outcomes = client.put_many([copy, work / "missing.bin"], keys=[rig.key("many.bin"), rig.key("none.bin")])
        ev.objects("put_many", *outcomes)
        assert [o.ok for o in outcomes] == [True, False]

        # a file of its own for each failure: a resume of the one before would skip the failing part
        failing = work / "failing-5xx.bin"
        write_file(failing, 4 * part + 3)
        with rig.server_error():
            ev.attempt("put meeting a 5xx", lambda: client.put(failing, key=rig.key("failing-5xx.bin")),
                       expect=errors.ServiceError)
        dropping = work / "failing-drop.bin"
        write_file(dropping, 4 * part + 3)
        with rig.dropped():
            ev.attempt("put whose connection drops", lambda: client.put(dropping, key=rig.key("failing-drop.bin")),
                       expect=errors.TransportError)
        ev.store("store after failed puts", store.directory)
        ev.attempt("abort of a failed put", lambda: client.abort(dropping))

        client.delete(result.id)
        ev.attempt("info of a deleted file (404)", lambda: client.info(result.id), expect=errors.NotFound)
        ev.attempt("get of a deleted file (404)", lambda: client.get(result.id), expect=errors.NotFound)
        ev.attempt("delete of a deleted file (404)", lambda: client.delete(result.id), expect=errors.NotFound)

    wrong = rig.wrong_client(store, **settings)
    if wrong is not None:
        with wrong, rig.refusing():
            ev.objects("client with wrong credentials", wrong, wrong.backend)
            ev.attempt("put with wrong credentials (401)", lambda: wrong.put(failing, key=rig.key("denied.bin")),
                       expect=errors.AuthError)
            ev.attempt("info with wrong credentials (401)", lambda: wrong.info(result.id), expect=errors.AuthError)
    rig.extra_flow(ev, store)
    ev.store("store at the end", store.directory)


def cli_flow(rig: Rig, ev: Evidence) -> None:
    """The same through ``python -m upclient``, human and ``--json``, with every log line (``-vvv``)."""
    work = rig.work / "cli"
    work.mkdir()
    env = cli_env(work / "state")
    store = str(work / "store")
    args, extra = rig.cli_args()
    run_env = dict(env, **extra)
    first, second, third = work / "one.bin", work / "two.bin", work / "three.bin"
    digest = write_file(first, 6 * rig.part + 1)
    write_file(second, 3 * rig.part + 2)
    write_file(third, 3 * rig.part + 3)
    part = ["--part-size", str(rig.part), "--store", store, "--retries", "1"]

    run_cli(ev, "put -vvv", ["put", str(first), "--key", rig.key("one.bin"), "-vvv", *part, *args], run_env)
    done = run_cli(ev, "put --json -vvv",
                   ["put", str(first), "--key", rig.key("one.bin"), "--json", "-vvv", *part, *args], run_env)
    (line,) = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    assert line["ok"], line
    uploaded = line["id"]
    where = ["--from", *args[1:]]
    run_cli(ev, "info --json -vvv", ["info", uploaded, "--json", "-vvv", *where], run_env)
    run_cli(ev, "info", ["info", uploaded, *where], run_env)
    copy = work / "copy.bin"
    run_cli(ev, "get -vvv", ["get", uploaded, str(copy), "-vvv", *where], run_env)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    run_cli(ev, "ls --json -vvv", ["ls", rig.prefix or "", "--json", "-vvv", *where], run_env, expect=rig.ls_status)
    with rig.server_error():
        run_cli(ev, "put meeting a 5xx -vvv", ["put", str(second), "--key", rig.key("two.bin"), "-vvv", *part,
                                               *args], run_env, expect=5)
    with rig.dropped():
        run_cli(ev, "put --json whose connection drops -vvv",
                ["put", str(third), "--key", rig.key("three.bin"), "--json", "-vvv", *part, *args], run_env, expect=5)
    run_cli(ev, "rm -vvv", ["rm", uploaded, "-vvv", *where], run_env)
    run_cli(ev, "info of a deleted file -vvv", ["info", uploaded, "-vvv", *where], run_env, expect=4)
    run_cli(ev, "info --json of a deleted file", ["info", uploaded, "--json", *where], run_env, expect=4)
    wrong_args, wrong_extra = rig.cli_args(wrong=True)
    with rig.refusing():
        refused = run_cli(ev, "put --json with wrong credentials -vvv",
                          ["put", str(second), "--key", rig.key("x.bin"), "--json", "-vvv", *part, *wrong_args],
                          dict(env, **wrong_extra), expect=None)
    assert refused.returncode in (2, 3), refused.stderr  # 3: refused by the server; 2: refused before asking
    rig.cli_extra(ev, env, part)
    ev.store("the CLI's store", Path(store))


@pytest.fixture(scope="module")
def library_run(rig: Rig) -> Evidence:
    ev = Evidence(rig.secrets)
    with capture_logs(ev) as recorder:
        library_flow(rig, ev)
    assert recorder.records, "no log record was captured"
    if rig.name != "fdfs":
        assert recorder.names.get("urllib3.connectionpool"), "urllib3's DEBUG records were not captured"
    for label in rig.derived:
        assert rig.secrets.values(label), f"no {label} was seen: the search would not find one"
    return ev


@pytest.fixture(scope="module")
def cli_run(rig: Rig) -> Evidence:
    ev = Evidence(rig.secrets)
    cli_flow(rig, ev)
    return ev


# -- the searches -----------------------------------------------------------------------------


def no_leaks(rig: Rig, ev: Evidence, category: str, shown: str) -> None:
    """Fail with one line per secret found: which secret, where, and the text around it."""
    if ev.leaks(category):
        pytest.fail(leak_report(rig.name, category, ev, shown), pytrace=False)


def test_no_secret_in_any_log_record(rig, library_run):
    no_leaks(rig, library_run, "logs", "log records")


def test_no_secret_in_reprs_of_clients_results_infos_and_progress(rig, library_run):
    assert library_run.count("objects") > 10
    no_leaks(rig, library_run, "objects", "reprs and strs")


def test_no_secret_in_exceptions_their_args_or_tracebacks(rig, library_run):
    kinds = set(library_run.raised)
    assert errors.Cancelled in kinds and any(issubclass(k, errors.NotFound) for k in kinds), kinds
    no_leaks(rig, library_run, "exceptions", "exceptions")


def test_no_secret_in_resume_records_or_digests(rig, library_run):
    assert library_run.count("store") >= 1
    no_leaks(rig, library_run, "store", "the store's files")


def test_no_secret_in_the_output_of_the_command_line(rig, cli_run):
    assert cli_run.count("cli") >= 20
    no_leaks(rig, cli_run, "cli", "CLI output")
    no_leaks(rig, cli_run, "store", "the CLI's store")


# -- the search itself can fail ------------------------------------------------------------------


def test_the_search_finds_a_secret_in_every_form_and_place(tmp_path):
    secrets = Secrets()
    secrets.add("password", "pw-S3CRET/+x")
    secrets.add_pattern("signature", r"UPYUN op:[A-Za-z0-9+/]{27}=")
    ev = Evidence(secrets)
    import logging

    with capture_logs(ev):
        logging.getLogger("upclient.anything").debug("url %s", "http://u:pw-S3CRET%2F%2Bx@host/")
        logging.getLogger("urllib3.connectionpool").debug("%s", "UPYUN op:" + "A" * 27 + "=")
    assert [line.split(" in ")[0] for line in ev.leaks("logs")] == ["password", "signature"]
    try:
        raise errors.NetworkError("plain") from ValueError("cHctUzNDUkVULyt4")  # base64, in a cause
    except errors.NetworkError as exc:
        ev.exception("raised", exc)
    assert ev.leaks("exceptions")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.json").write_text(json.dumps({"u": "pw-S3CRET%2F%2Bx"}))
    assert ev.store("store", tmp_path) == 1 and ev.leaks("store")
