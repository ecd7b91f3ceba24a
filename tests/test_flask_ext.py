"""upclient.contrib.flask in process: settings from app.config, one client per app, and the views' answers.

The app is the example's (``examples/flask_app.py``: ``create_app``), served
by Werkzeug's threaded server on a real socket in a thread, against the
storage servers of upclient's pytest plugin.  Werkzeug's server hands the
app the body as it arrives, so these tests also see parts reach the storage
while the browser still sends.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import http.client
import importlib.util
import logging
import threading
from typing import Any, Iterator

import pytest
from werkzeug.serving import make_server

import upclient
from upclient import errors
from upclient.contrib.flask import EXTENSION_KEY, Upclient
from tests.test_flask_rig import (
    EXAMPLES,
    KiB,
    MiB,
    blocks,
    digest_of,
    form_body,
    leftovers,
    raw_body,
    send,
    send_and_vanish,
    wait_for,
)


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("flask_app_example", EXAMPLES / "flask_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def config_for(storage: Any, **more: Any) -> dict:
    config = {"UPCLIENT_URL": storage.url}
    config.update({f"UPCLIENT_{k.upper()}": v for k, v in storage.settings.items()})
    config.update(more)
    return config


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    """``app`` on Werkzeug's threaded server on 127.0.0.1; its port; stopped (and the app's client closed) after."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug-test-server", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)
        if EXTENSION_KEY in app.extensions:
            example.uploads.close(app)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ settings and the client's life


def test_settings_come_from_app_config_as_flask_users_give_them(upclient_community_server):
    storage = upclient_community_server
    app = example.create_app(config_for(
        storage,
        UPCLIENT_PART_SIZE="1048576",  # from the environment: strings
        UPCLIENT_CONCURRENCY=2,
        UPCLIENT_READ_TIMEOUT="30",
        UPCLIENT_CHECKSUM="false",
        UPCLIENT_TIMEOUT=45,
        UPCLIENT_MAX_SIZE=10 * MiB,
        UPCLIENT_OPTIONS={"max_files": 3},
    ))
    client = app.extensions["upclient"]
    assert isinstance(client, upclient.Client)
    s = client.settings
    assert (s.part_size, s.concurrency, s.read_timeout, s.checksum, s.max_files) == (MiB, 2, 30.0, False, 3)
    assert isinstance(client.store, upclient.MemoryStore)  # a request body never resumes
    with serving(app) as port:
        answer = send(port, "PUT", "/upload/token.bin", raw_body(7, 3 * MiB))  # the token reached the API
        too_big = send(port, "PUT", "/upload/big.bin", raw_body(8, 10 * MiB + 1))
    assert answer.status == 201, answer.payload
    assert storage.stored_sha256(answer.payload["id"]) == raw_body(7, 3 * MiB).digests()[0]
    assert too_big.status == 413


def test_a_setting_in_error_fails_at_start_up_naming_its_key_and_never_its_value(upclient_upyun_server):
    storage = upclient_upyun_server
    with pytest.raises(errors.BadInput, match="UPCLIENT_URL"):
        example.create_app({"UPCLIENT_URL": ""})
    with pytest.raises(errors.BadInput, match=r"app.config \(UPCLIENT_<NAME> is Client's <name>\).*passwrd") as typo:
        example.create_app(config_for(storage, UPCLIENT_PASSWRD="hunter2"))
    assert "hunter2" not in str(typo.value)
    with pytest.raises(errors.BadInput, match="UPCLIENT_PART_SIZE") as caught:
        example.create_app(config_for(storage, UPCLIENT_PART_SIZE="hunter2-secret"))
    assert "hunter2" not in str(caught.value)
    with pytest.raises(errors.BadInput, match="UPCLIENT_TIMEOUT"):
        example.create_app(config_for(storage, UPCLIENT_TIMEOUT=0))


def test_one_client_serves_every_request_and_is_closed_with_the_app_not_after_a_request(upclient_fdfs_server):
    storage = upclient_fdfs_server
    app = example.create_app(config_for(storage))
    client = app.extensions["upclient"]
    with serving(app) as port:
        ids = [send(port, "PUT", f"/upload/{i}.bin", raw_body(i, 200 * KiB)).payload["id"] for i in range(3)]
        assert app.extensions["upclient"] is client
        assert client.info(ids[0]).size == 200 * KiB  # still open after the requests
    # serving() closed it, as an app's shutdown does
    assert EXTENSION_KEY not in app.extensions
    with pytest.raises(errors.BadInput, match="closed"):
        client.put(b"late", key="late.bin")

    # an app that is dropped closes its client when collected (at the latest at exit)
    other = example.create_app(config_for(storage))
    orphan = other.extensions["upclient"]
    del other
    gc.collect()
    with pytest.raises(errors.BadInput, match="closed"):
        orphan.put(b"late", key="late.bin")


def test_one_extension_serves_apps_of_a_factory_each_with_its_own_storage(upclient_fdfs_server,
                                                                        upclient_community_server):
    apps = [example.create_app(config_for(upclient_fdfs_server)),
            example.create_app(config_for(upclient_community_server))]
    assert apps[0].extensions["upclient"] is not apps[1].extensions["upclient"]
    with serving(apps[0]) as fdfs_port, serving(apps[1]) as community_port:
        to_fdfs = send(fdfs_port, "PUT", "/upload/a.bin", raw_body(1, 100 * KiB))
        to_community = send(community_port, "PUT", "/upload/b.bin", raw_body(2, 100 * KiB))
    assert upclient_fdfs_server.stored_sha256(to_fdfs.payload["id"]) == raw_body(1, 100 * KiB).digests()[0]
    assert upclient_community_server.stored_sha256(to_community.payload["id"]) == \
        raw_body(2, 100 * KiB).digests()[0]


def test_the_extension_outside_an_initialised_app_says_what_to_do():
    import flask

    bare = flask.Flask("bare")
    with bare.test_request_context("/"):
        with pytest.raises(RuntimeError, match="init_app"):
            Upclient().put_body("x.bin")


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize("shape", ["raw", "form"])
def test_parts_reach_the_storage_while_the_browser_still_sends(upclient_upyun_server, shape):
    """No temporary file first: the view streams. The browser holds back the rest of its body until
    the storage has a part (with request.files, the view would not even have started)."""
    storage = upclient_upyun_server
    size = 8 * MiB
    body = raw_body(5, size) if shape == "raw" else form_body([("note", "x"), ("file", "held.bin", 5, size)])
    held = threading.Event()

    def hold_back(sent: int) -> None:
        if sent >= 3 * MiB and not held.is_set():
            held.set()
            wait_for(lambda: storage.part_log, "a part to reach the storage while the browser waits")

    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB))
    with serving(app) as port:
        answer = send(port, "PUT" if shape == "raw" else "POST",
                      "/upload/held.bin" if shape == "raw" else "/upload", body, between=hold_back)
    assert held.is_set()
    assert answer.status == 201, answer.payload
    assert storage.stored_sha256(answer.payload["id"]) == body.digests()[0]


def test_a_form_gives_its_fields_and_stores_each_file_under_a_safe_name(upclient_fdfs_server):
    storage = upclient_fdfs_server
    body = form_body([
        ("album", "summer"),
        ("file", "../../etc/first photo.jpg", 1, 3 * MiB + 7),
        ("empty", "", 0, 0),  # a file input left empty: browsers send it with no file name
        ("file", "second.bin", 2, 70 * KiB),
        ("caption", "à la plage"),
    ])
    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB))
    with serving(app) as port:
        answer = send(port, "POST", "/upload", body)
    assert answer.status == 201, answer.payload
    files = answer.payload["files"]
    assert [(f["field"], f["filename"], f["size"]) for f in files] == [
        ("file", "../../etc/first photo.jpg", 3 * MiB + 7), ("file", "second.bin", 70 * KiB)]
    digests = body.digests()
    assert [storage.stored_sha256(f["id"]) for f in files] == [digests[0], digests[2]]
    assert files[0]["id"].endswith(".jpg")  # FastDFS keeps the extension of the key: etc_first_photo.jpg
    assert answer.payload["fields"] == {"album": "summer", "caption": "à la plage"}


def test_a_key_chooser_sees_the_fields_sent_before_the_file(upclient_upyun_server):
    import flask

    storage = upclient_upyun_server
    app = flask.Flask("chooser")
    app.config.update(config_for(storage))
    uploads = Upclient(app)

    @app.post("/albums")
    def album() -> Any:
        stored = uploads.put_form(key=lambda filename, fields: f"albums/{fields['album']}/{filename}")
        return {"keys": [f.result.id for f in stored.files]}, 201

    body = form_body([("album", "summer"), ("file", "a.jpg", 3, 50 * KiB)])
    with serving(app) as port:
        answer = send(port, "POST", "/albums", body)
    uploads.close(app)
    assert answer.status == 201, answer.payload
    assert storage.stored_sha256("albums/summer/a.jpg") == body.digests()[0]


def test_a_fixed_key_takes_one_file_and_a_second_is_refused(upclient_fdfs_server, caplog):
    import flask

    storage = upclient_fdfs_server
    app = flask.Flask("fixed")
    app.config.update(config_for(storage))
    uploads = Upclient(app)

    @app.post("/avatar")
    def avatar() -> Any:
        stored = uploads.put_form(key="avatar.png")
        return {"id": stored.files[0].result.id}, 201

    caplog.set_level(logging.WARNING, logger="upclient.contrib.flask")
    with serving(app) as port:
        one = send(port, "POST", "/avatar", form_body([("file", "me.png", 1, 10 * KiB)]))
        two = send(port, "POST", "/avatar", form_body([("file", "a.png", 2, 10 * KiB), ("file", "b.png", 3, 10 * KiB)]))
    uploads.close(app)
    assert one.status == 201 and storage.stored_sha256(one.payload["id"]) == digest_of(1, 10 * KiB)
    assert two.status == 400, two.payload
    assert "more than one file" in str(two.payload)
    assert "a form failed after storing group1/" in caplog.text  # the first one stays; its id is logged


def test_storage_that_needs_the_size_first_takes_a_form_whose_file_comes_last(upclient_upyun_server):
    """UPYUN's multipart needs the length first: it is Content-Length less what surrounds the last field.
    A file followed by another field is refused, and the storage keeps nothing of it."""
    storage = upclient_upyun_server
    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB))
    last = form_body([("note", "first"), ("file", "last.bin", 1, 3 * MiB + 1)])
    not_last = form_body([("file", "middle.bin", 2, 3 * MiB + 1), ("note", "after")])
    with serving(app) as port:
        good = send(port, "POST", "/upload", last)
        bad = send(port, "POST", "/upload", not_last)
    assert good.status == 201, good.payload
    assert storage.stored_sha256(good.payload["id"]) == last.digests()[0]
    assert bad.status == 400 and "last field" in bad.payload["error"], bad.payload
    assert not storage.exists("middle.bin") and storage.uploads() == {}


# ------------------------------------------------------------------ refusals and failures


def test_a_file_over_the_limit_is_refused_and_its_started_upload_aborted(upclient_fdfs_server):
    storage = upclient_fdfs_server
    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB, UPCLIENT_MAX_SIZE=3 * MiB))
    with serving(app) as port:
        raw = send(port, "PUT", "/upload/big.bin", raw_body(1, 3 * MiB + 1))
        assert leftovers(storage) == []  # refused from its Content-Length, before a byte went anywhere
        # a form's file size is known only as it arrives: three parts are on the storage when it trips
        form = send(port, "POST", "/upload", form_body([("file", "big.bin", 2, 8 * MiB)]))
        fits = send(port, "POST", "/upload", form_body([("file", "fits.bin", 3, 3 * MiB)]))
    assert raw.status == 413 and form.status == 413, (raw.payload, form.payload)
    assert fits.status == 201, fits.payload
    assert storage.stored_sha256(fits.payload["id"]) == digest_of(3, 3 * MiB)
    assert len(leftovers(storage)) == 1  # that file alone


def test_flasks_own_max_content_length_holds_for_both_views(upclient_fdfs_server):
    storage = upclient_fdfs_server
    app = example.create_app(config_for(storage))
    app.config["MAX_CONTENT_LENGTH"] = MiB
    with serving(app) as port:
        raw = send(port, "PUT", "/upload/big.bin", raw_body(1, MiB + 1))
        form = send(port, "POST", "/upload", form_body([("file", "big.bin", 2, MiB)]))
        fits = send(port, "PUT", "/upload/fits.bin", raw_body(3, MiB))
    assert (raw.status, form.status, fits.status) == (413, 413, 201), (raw.payload, form.payload, fits.payload)
    assert len(leftovers(storage)) == 1


def test_an_upload_in_flight_when_the_app_closes_its_client_is_503(upclient_upyun_server):
    storage = upclient_upyun_server
    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB))

    def close_midway(sent: int) -> None:
        if sent >= 3 * MiB and EXTENSION_KEY in app.extensions:
            wait_for(lambda: storage.part_log, "a part on the storage")
            example.uploads.close(app)  # what the app's shutdown does

    with serving(app) as port:
        answer = send(port, "PUT", "/upload/late.bin", raw_body(1, 8 * MiB), between=close_midway)
    assert answer.status == 503, answer.payload
    assert not storage.exists("late.bin")


def test_a_body_without_a_content_length_is_411_and_a_bad_form_400(upclient_fdfs_server):
    storage = upclient_fdfs_server
    app = example.create_app(config_for(storage))
    with serving(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("PUT", "/upload/chunked.bin", body=iter([b"abc", b"def"]), encode_chunked=True)
        chunked = conn.getresponse()
        chunked.read()
        conn.close()
        not_a_form = send(port, "POST", "/upload", raw_body(1, 1000, content_type="application/json"))
        broken = form_body([("file", "cut.bin", 1, 1000)])
        broken.content_type = "multipart/form-data; boundary=not-the-one-used"
        bad_form = send(port, "POST", "/upload", broken)
        no_file = send(port, "POST", "/upload", form_body([("note", "no file here")]))
    assert chunked.status == 411
    assert (not_a_form.status, bad_form.status, no_file.status) == (400, 400, 400), \
        (not_a_form.payload, bad_form.payload, no_file.payload)
    assert leftovers(storage) == []


def test_a_storage_that_refuses_the_credentials_is_502_and_the_answer_tells_no_secret(upclient_community_server):
    app = example.create_app(config_for(upclient_community_server, UPCLIENT_TOKEN="wrong-token-s3cret"))
    with serving(app) as port:
        answer = send(port, "PUT", "/upload/x.bin", raw_body(1, 100 * KiB))
    assert answer.status == 502
    assert "AuthError" in answer.payload["error"] and "s3cret" not in str(answer.payload)


def test_under_werkzeugs_server_a_browser_that_goes_away_leaves_no_partial_file(upclient_fdfs_server, caplog):
    """Werkzeug's server does not terminate the input: its LimitedStream raises ClientDisconnected."""
    storage = upclient_fdfs_server
    app = example.create_app(config_for(storage, UPCLIENT_PART_SIZE=MiB))
    caplog.set_level(logging.INFO, logger="upclient.contrib.flask")
    with serving(app) as port:
        send_and_vanish(port, "PUT", "/upload/gone.bin", raw_body(1, 8 * MiB), cut=5 * MiB,
                        before_leaving=lambda: wait_for(lambda: leftovers(storage), "the appender file"))
        wait_for(lambda: leftovers(storage) == [], "the partial file to go")
        wait_for(lambda: "the client went away" in caplog.text, "the app to log the browser going")


def test_the_rigs_form_is_one_werkzeug_itself_parses_to_the_same_bytes():
    """The rig itself: its form bodies are well formed, and their digests are those of the bytes sent."""
    import io

    from werkzeug.formparser import parse_form_data

    body = form_body([("a", "1"), ("f", "x.bin", 9, 3 * MiB + 5), ("b", "2")])
    sent = b"".join(body.pieces())
    assert len(sent) == body.length
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": body.content_type, "CONTENT_LENGTH": str(body.length),
               "wsgi.input": io.BytesIO(sent)}
    _, form, files = parse_form_data(environ)
    assert form.to_dict() == {"a": "1", "b": "2"}
    assert sha256(files["f"].read()) == body.digests()[0] == sha256(b"".join(blocks(9, 3 * MiB + 5)))
