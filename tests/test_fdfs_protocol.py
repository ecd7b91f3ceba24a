"""The FastDFS wire format, byte by byte, from the protocol facts (no sockets)."""

from __future__ import annotations

import struct

import pytest

from upclient.backends.fdfs.backend import status_error
from upclient.backends.fdfs.protocol import (
    Cmd,
    FileId,
    ProtocolError,
    Request,
    check_ext,
    check_prefix,
    decode_metadata,
    encode_metadata,
    ext_of,
    parse_fetch,
    parse_file_info,
    parse_file_name,
    parse_groups,
    parse_server_list,
    parse_storages,
    parse_store,
    split_addresses,
)
from upclient.errors import BadInput, Conflict, NotFound, RequestRejected, ServiceError, TooLarge

#: The example of the facts page.
EXAMPLE = "group1/M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin"


def group(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


def ip(text: str, size: int) -> bytes:
    return text.encode().ljust(size, b"\0")


def q(n: int) -> bytes:
    return struct.pack(">Q", n)


class TestFileId:
    def test_decodes_the_example(self) -> None:
        fid = FileId.parse(EXAMPLE)
        assert (fid.group, fid.remote) == ("group1", "M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin")
        assert str(fid) == EXAMPLE
        assert fid.source_ip == "127.0.0.1"
        assert fid.created == 1795266027
        assert fid.size == 100000
        assert fid.crc32 == 0x7FDD1AE6
        assert not fid.appender and not fid.trunk

    def encode(self, size_field: int) -> str:
        import base64

        raw = struct.pack(">4sIQI", bytes([10, 0, 0, 7]), 1700000000, size_field, 0xDEADBEEF)
        return "group2/M01/0A/FF/" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "123456.tar"

    def test_appender_and_large_sizes(self) -> None:
        appender = FileId.parse(self.encode(1 << 58))
        assert appender.appender and appender.size is None
        big = FileId.parse(self.encode(5 * 1024**3))
        assert big.size == 5 * 1024**3 and not big.appender
        small = FileId.parse(self.encode((0x80123456 << 32) | 4096))
        assert small.size == 4096 and small.source_ip == "10.0.0.7" and small.crc32 == 0xDEADBEEF

    def test_packs_group_and_remote(self) -> None:
        fid = FileId.parse(EXAMPLE)
        assert fid.pack() == group("group1") + fid.remote.encode()

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "group1",
            "group1/",
            "/M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin",
            "group1/X00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin",
            "group1/M00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin",
            "group1/M00/00/00/short.bin",
            "group1/M00/00/00/fwAAAWsBleuASNlKAAGGoH!dGuY316.bin",
            "a-group-name-too-long/M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin",
            "https://example.com/file.jpg",
        ],
    )
    def test_rejects_what_is_not_an_id(self, text: str) -> None:
        with pytest.raises(BadInput, match="FastDFS file id"):
            FileId.parse(text)

    def test_rejects_non_strings(self) -> None:
        with pytest.raises(BadInput):
            FileId.parse(123)  # type: ignore[arg-type]


class TestRequests:
    def test_header_counts_fixed_part_and_data(self) -> None:
        r = Request.upload(1000, "jpg", path_index=2)
        assert r.head == b"\x02" + q(1000) + b"jpg\0\0\0"
        assert r.header() == q(1000 + 15) + bytes([11, 0])
        assert Request.upload(5, "", appender=True).cmd == Cmd.UPLOAD_APPENDER

    def test_file_commands(self) -> None:
        fid = FileId.parse(EXAMPLE)
        remote = fid.remote.encode()
        assert Request.download(fid, 100, 1024).head == q(100) + q(1024) + group("group1") + remote
        assert Request.append(fid, 7).head == q(len(remote)) + q(7) + remote
        assert Request.append(fid, 7).data_len == 7
        assert Request.modify(fid, 3, 4).head == q(len(remote)) + q(3) + q(4) + remote
        assert Request.truncate(fid, 9).head == q(len(remote)) + q(9) + remote
        assert Request.regenerate(fid).head == remote  # no group name
        meta = b"a\x02b"
        assert Request.set_metadata(fid, meta, merge=True).head == (
            q(len(remote)) + q(3) + b"M" + group("group1") + remote + meta
        )
        assert Request.set_metadata(fid, b"", merge=False).head[16:17] == b"O"
        slave = Request.upload_slave(fid, "_150x150", 10, "jpg")
        assert slave.head == q(len(remote)) + q(10) + b"_150x150".ljust(16, b"\0") + b"jpg\0\0\0" + remote

    def test_tracker_queries(self) -> None:
        assert Request.query_store().cmd == Cmd.QUERY_STORE and Request.query_store().head == b""
        assert Request.query_store("g2").head == group("g2") and Request.query_store("g2").cmd == 104
        assert Request.query_store(every=True).cmd == 106
        assert Request.query_store("g2", every=True).cmd == 107
        fid = FileId.parse(EXAMPLE)
        assert Request.query_fetch(fid).cmd == 102
        assert Request.query_fetch(fid, update=True).cmd == 103
        assert Request.query_fetch(fid, every=True).cmd == 105
        assert Request.list_groups().cmd == 91 and Request.list_groups("g").cmd == 90
        assert Request.list_storages("g", "id1").head == group("g") + b"id1"


class TestReplies:
    @pytest.mark.parametrize("size", [15, 45])
    def test_store_and_fetch_in_both_ip_sizes(self, size: int) -> None:
        body = group("group1") + ip("10.1.2.3", size) + q(23000) + b"\x01"
        assert len(body) == {15: 40, 45: 70}[size]
        addr = parse_store(body)
        assert (addr.group, addr.host, addr.port, addr.path_index) == ("group1", "10.1.2.3", 23000, 1)
        fetch = parse_fetch(body[:-1])
        assert (fetch.host, fetch.port) == ("10.1.2.3", 23000)

    def test_wrong_lengths_are_protocol_errors(self) -> None:
        with pytest.raises(ProtocolError, match="40 or 70"):
            parse_store(b"x" * 41)
        with pytest.raises(ProtocolError):
            parse_fetch(b"x" * 40)
        with pytest.raises(ProtocolError):
            parse_file_info(b"x" * 41)

    @pytest.mark.parametrize("size", [15, 45])
    def test_server_lists(self, size: int) -> None:
        body = group("g") + ip("10.0.0.1", size) + q(1) + ip("10.0.0.2", size) + q(2)
        assert [(a.host, a.port) for a in parse_server_list(body, with_path_index=False)] == [
            ("10.0.0.1", 1),
            ("10.0.0.2", 2),
        ]
        assert [a.path_index for a in parse_server_list(body + b"\x03", with_path_index=True)] == [3, 3]

    def test_groups(self) -> None:
        rec = group("group1") + b"\0" + b"".join(q(n) for n in range(1, 13))
        assert len(rec) == 113
        stats = parse_groups(rec * 2)
        assert len(stats) == 2
        g = stats[0]
        assert (g.name, g.total_mb, g.free_mb, g.reserved_mb, g.storage_count, g.storage_port) == (
            "group1", 1, 2, 3, 5, 6
        )
        assert g.current_trunk_file_id == 12
        old = parse_groups(group("old") + b"\0" + b"".join(q(n) for n in range(1, 12)))  # 105 bytes
        assert old[0].reserved_mb == 0 and old[0].trunk_free_mb == 3
        with pytest.raises(ProtocolError):
            parse_groups(b"x" * 112)

    def test_a_group_without_a_trunk_file_says_minus_one(self) -> None:
        """current_trunk_file_id is signed on the wire: -1 when there is none."""
        numbers = b"".join(q(n) for n in range(1, 12)) + struct.pack(">q", -1)
        (g,) = parse_groups(group("group1") + b"\0" + numbers)
        assert g.current_trunk_file_id == -1 and g.subdir_count_per_path == 11
        (old,) = parse_groups(group("old") + b"\0" + numbers[8:])  # 105 bytes, before 6.x
        assert old.current_trunk_file_id == -1

    @pytest.mark.parametrize("size,record", [(15, 487), (45, 517)])
    def test_storages(self, size: int, record: int) -> None:
        rec = (
            bytes([7, 0])
            + b"s1".ljust(16, b"\0")
            + ip("10.0.0.9", size + 1)
            + b"\0" * 16
            + b"6.16.1".ljust(8, b"\0")
            + b"".join(q(n) for n in (100, 200, 3000, 2000, 10, 5, 1, 256, 0, 23000))
            + struct.pack(">3i", 1, 2, 3)
            + b"".join(q(1000 + n) for n in range(42))
            + b"\0"
        )
        assert len(rec) == record
        (s,) = parse_storages(rec)
        assert (s.id, s.ip, s.status_name, s.version) == ("s1", "10.0.0.9", "ACTIVE", "6.16.1")
        assert (s.join_time, s.up_time, s.total_mb, s.free_mb, s.storage_port) == (100, 200, 3000, 2000, 23000)
        assert (s.total_upload_count, s.success_upload_count, s.total_download_count) == (1000, 1001, 1012)

    @pytest.mark.parametrize("size", [16, 46])
    def test_file_info(self, size: int) -> None:
        stat = parse_file_info(q(12345) + q(1700000000) + q(0xCAFEBABE) + ip("10.0.0.3", size))
        assert (stat.size, stat.created, stat.crc32, stat.source_ip) == (12345, 1700000000, 0xCAFEBABE, "10.0.0.3")

    def test_file_name(self) -> None:
        fid = parse_file_name(group("group1") + b"M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin")
        assert str(fid) == EXAMPLE
        with pytest.raises(ProtocolError):
            parse_file_name(group("group1"))


class TestMetadata:
    def test_round_trip(self) -> None:
        meta = {"author": "x", "größe": "ünïcode", "empty": ""}
        raw = encode_metadata(meta)
        assert raw == "author\x02x\x01größe\x02ünïcode\x01empty\x02".encode()
        assert decode_metadata(raw) == meta
        assert decode_metadata(b"") == {}

    def test_limits_count_bytes(self) -> None:
        encode_metadata({"k" * 64: "v" * 256})
        with pytest.raises(BadInput, match="at most 64"):
            encode_metadata({"k" * 65: "v"})
        with pytest.raises(BadInput, match="at most 256"):
            encode_metadata({"k": "é" * 129})  # 258 bytes
        with pytest.raises(BadInput, match="separators"):
            encode_metadata({"k": "a\x01b"})
        with pytest.raises(BadInput):
            encode_metadata({"": "v"})


class TestNames:
    @pytest.mark.parametrize("ext,want", [("jpg", "jpg"), (".tar", "tar"), ("", ""), (None, ""), ("a.b-_9", "a.b-_9")])
    def test_good_ext(self, ext: str, want: str) -> None:
        assert check_ext(ext) == want

    @pytest.mark.parametrize("ext", ["toolong", "a b", "jp/g", "ü", 5])
    def test_bad_ext(self, ext: object) -> None:
        with pytest.raises(BadInput, match="ext"):
            check_ext(ext)  # type: ignore[arg-type]

    def test_ext_of(self) -> None:
        assert ext_of("photo.jpg") == "jpg" and ext_of("a.tar.gz") == "gz"
        assert ext_of("README") == "" and ext_of(".bashrc") == "" and ext_of(None) == ""

    def test_prefix(self) -> None:
        assert check_prefix("_150x150") == "_150x150"
        for bad in ("", "x" * 17, "a/b"):
            with pytest.raises(BadInput):
                check_prefix(bad)

    def test_tracker_addresses(self) -> None:
        assert split_addresses("10.0.0.1:22122, 10.0.0.2") == [("10.0.0.1", 22122), ("10.0.0.2", 22122)]
        assert split_addresses("[::1]:9000") == [("::1", 9000)]
        for bad in ("", "h:port", "h:0", ","):
            with pytest.raises(BadInput):
                split_addresses(bad)


def test_status_errors_map_into_the_shared_tree() -> None:
    assert isinstance(status_error(2, "info", "s:1"), NotFound)
    assert isinstance(status_error(17, "put_slave", "s:1"), Conflict)
    assert isinstance(status_error(22, "append", "s:1"), RequestRejected)
    assert isinstance(status_error(28, "put", "s:1"), TooLarge)
    busy = status_error(16, "put", "s:1")
    assert isinstance(busy, ServiceError) and busy.retryable
    err = status_error(2, "info", "10.0.0.1:23000")
    assert err.code == 2 and "ENOENT" in str(err) and "10.0.0.1:23000" in str(err)
    assert isinstance(status_error(99, "x", "s:1"), RequestRejected)


class TestAppenderRecovery:
    """What a resumable session does after a failed append, whatever the storage shows."""

    class Storage:
        def __init__(self, held: int) -> None:
            self.held = held
            self.truncated = []

        def file_stat(self, fid, address=None):
            from upclient.backends.fdfs.protocol import FileStat

            return FileStat(self.held, 0, 0, "127.0.0.1")

        def truncate(self, id, size):
            self.truncated.append(size)
            self.held = size

    def session(self, held: int):
        from upclient.transfer import Part
        from upclient.backends.fdfs.uploads import AppenderUpload
        from upclient.source import BytesSource

        storage = self.Storage(held)
        s = AppenderUpload.__new__(AppenderUpload)  # no tracker needed for recover()
        s.backend, s.source, s.address, s.size = storage, BytesSource(b"x" * 400), None, 100
        s.fid = FileId.parse(EXAMPLE)
        return s, storage, Part(index=1, offset=100, size=100)

    def test_a_lost_answer_counts_the_part_as_sent(self) -> None:
        s, storage, part = self.session(200)
        s.recover(part, OSError())
        assert s.size == 200 and s.confirmed(part) == 100 and not storage.truncated

    def test_a_partial_tail_is_cut_back_to_the_part_start(self) -> None:
        s, storage, part = self.session(150)
        s.recover(part, OSError())
        assert storage.truncated == [100] and s.size == 100 and s.confirmed(part) == 0

    def test_nothing_arrived(self) -> None:
        s, storage, part = self.session(100)
        s.recover(part, OSError())
        assert s.size == 100 and not storage.truncated

    @pytest.mark.parametrize("held", [50, 250])
    def test_a_file_changed_by_someone_else_is_a_conflict(self, held: int) -> None:
        s, _, part = self.session(held)
        with pytest.raises(Conflict, match="someone else"):
            s.recover(part, OSError())
