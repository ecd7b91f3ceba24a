"""What ``make bench`` measures: the client configurations and the scenarios (a-n) they run in.

Every client run is described by a :class:`ClientSpec` (``kind`` picks the
runner in ``bench/worker.py``, or curl, or the harness itself for h) and
every scenario by a :class:`Scenario`; ``bench/run.py``'s docstring says what
each one is for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

MiB = 1024 * 1024
GiB = 1024 * MiB
PART = 8 * MiB
#: ShapingProxy settings for scenarios c, g and j: 20 ms each way, 20 MB/s per connection.
WAN_DELAY = 0.020
WAN_RATE = 20e6
#: The community emulator's bearer token.
COMMUNITY_TOKEN = "bench-t0k3n"
#: The UPYUN emulator's service, operator and password (i, j).
UPYUN_SERVICE = "bench"
UPYUN_OPERATOR = "bench-op"
UPYUN_PASSWORD = "bench-pw"


def size_label(n: int) -> str:
    """``1 GiB``, ``64 MiB``, ``16 KiB``."""
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    if n >= MiB:
        return f"{n / MiB:g} MiB"
    return f"{n / 1024:g} KiB"


# -- clients ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClientSpec:
    """One client configuration: ``kind`` picks the runner, ``params`` go to it."""

    id: str
    kind: str  # upclient, tuspy, resumable-upload, curl, upclient-community, ..., upyun-multi (worker.CLIENTS)
    params: Tuple[Tuple[str, Any], ...] = ()

    @property
    def options(self) -> Dict[str, Any]:
        return dict(self.params)


def client(id: str, kind: str, **params: Any) -> ClientSpec:
    return ClientSpec(id, kind, tuple(sorted(params.items())))


# upclient with its defaults (part_size 16 MiB), and some variations for information
UPCLIENT = client("upclient", "upclient", concurrency=4)
UPCLIENT_SERIAL = client("upclient concat=False", "upclient", concurrency=4, concat=False)
UPCLIENT_8 = client("upclient part=8MiB", "upclient", part_size=PART, concurrency=4)
UPCLIENT_C1 = client("upclient c=1", "upclient", concurrency=1)
UPCLIENT_C4 = client("upclient c=4", "upclient", concurrency=4)
UPCLIENT_MANY = client("upclient put_many", "upclient", concurrency=4, max_files=8)
TUSPY = client("tuspy", "tuspy", chunk_size=PART)
TUSPY_LOOP = client("tuspy loop", "tuspy", chunk_size=PART)
RU = client("resumable-upload", "resumable-upload", chunk_size=PART, parallel=1)
RU_P4 = client("resumable-upload p=4", "resumable-upload", chunk_size=PART, parallel=4)
RU_LOOP = client("resumable-upload loop", "resumable-upload", chunk_size=PART, parallel=1)
CURL = client("curl", "curl")
# the community backend (f, g): both clients ask for 8 MiB parts; upclient's default is 16 MiB
COMM_UP = client("upclient", "upclient-community", concurrency=4)  # its defaults: 16 MiB parts
COMM_UP_8 = client("upclient part=8MiB", "upclient-community", part_size=PART, concurrency=4)
COMM_UP_C1 = client("upclient c=1", "upclient-community", part_size=PART, concurrency=1)
COMM_UP_C4 = client("upclient c=4", "upclient-community", part_size=PART, concurrency=4)
COMM_UP_C8 = client("upclient c=8", "upclient-community", part_size=PART, concurrency=8)
COMM_SDK = client("community-uploader", "community-sdk", part_size=PART)
# the UPYUN backend (i, j): upclient with its defaults (16 MiB parts, concurrency 4, Content-MD5 per part)
UPYUN_UP = client("upclient", "upclient-upyun")
UPYUN_UP_NOSUM = client("upclient checksum=False", "upclient-upyun", checksum=False)
UPYUN_UP_C1 = client("upclient c=1", "upclient-upyun", concurrency=1)
UPYUN_UP_C4 = client("upclient c=4", "upclient-upyun", concurrency=4)
UPYUN_UP_C8 = client("upclient c=8", "upclient-upyun", concurrency=8)
UPYUN_RESUME = client("upyun resume", "upyun-resume")  # the SDK's defaults: 1 MiB parts, serial
UPYUN_MULTI = client("upyun multi x4", "upyun-multi", part_size=16 * MiB, threads=4)
# the FastDFS backend (k, l, m) against the PyPI fastdfs-client 1.3.0
FDFS_PUT = client("upclient put", "upclient-fdfs", mode="put")  # its default above part_size: appender + regenerate
FDFS_PUT_ONE = client("upclient one request", "upclient-fdfs", mode="put", resumable=False)  # one streamed request
FDFS_PUT_RESUME = client("upclient resumable", "upclient-fdfs", mode="put", resumable=True)  # appender, kept
FDFS_SDK_PUT = client("fastdfs-client", "fdfs-sdk", mode="put")  # upload_by_filename
FDFS_GET = client("upclient get", "upclient-fdfs", mode="get")
FDFS_SDK_GET = client("fastdfs-client", "fdfs-sdk", mode="get")  # download_to_file
FDFS_PUT_LOOP = client("upclient put loop", "upclient-fdfs", mode="put")
FDFS_PUT_MANY = client("upclient put_many", "upclient-fdfs", mode="put", many=True)  # max_files: its default, 4
FDFS_SDK_LOOP = client("fastdfs-client loop", "fdfs-sdk", mode="put")
# h: measured in the harness itself (ids of its rows)
MD5_HASHLIB = client("hashlib md5 1MiB blocks", "md5")
MD5_UPCLIENT = client("upclient file_digest", "md5")
MD5_FIRST = client("client.md5 first (store)", "md5")
MD5_CACHED = client("client.md5 again (hit)", "md5")


# -- scenarios -------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    key: str
    title: str
    server: str  # sink, tus-node, resumable-upload, community, upyun, fdfs, none (h)
    shaped: bool
    sizes: List[int]  # one file of each size, or
    count: int  # ... this many files of sizes[0] (count > 1)
    clients: List[ClientSpec]
    rounds: int
    reference: ClientSpec  # the upclient configuration that ratios use
    note: str = ""
    download: bool = False  # l: the clients download a file the harness stored first
    tls: bool = False  # n: the server speaks HTTPS (a certificate of a CA the clients are told to trust)


def scenarios(quick: bool, big: Optional[int] = None) -> List[Scenario]:
    """Every scenario; ``big``: the size of the single loopback file (a, b, e, f, h, i, k, l, n)."""
    big = big or (64 * MiB if quick else GiB)
    wan = 16 * MiB if quick else 256 * MiB
    # j: more than one 16 MiB part even with --quick, so upclient's multipart path runs
    wan_upyun = 48 * MiB if quick else 256 * MiB
    rounds = 1 if quick else 5  # loopback figures move with other work on the machine
    small = 100 if quick else 1000  # d and m
    return [
        Scenario(
            "a", f"{size_label(big)} file, loopback, discarding sink", "sink", False, [big], 1,
            [UPCLIENT, UPCLIENT_SERIAL, UPCLIENT_8, TUSPY, RU, RU_P4, CURL], rounds, UPCLIENT,
            note="sink offers concatenation: upclient (concurrency 4) and resumable-upload p=4 "
            "send parallel partial uploads; 'part=8MiB' is for information (more requests)",
        ),
        Scenario(
            "b", f"{size_label(big)} file, loopback, @tus/server 2.4.5", "tus-node", False, [big], 1,
            [UPCLIENT, TUSPY, RU, CURL], rounds, UPCLIENT,
            note="no concatenation on @tus/server: every client sends PATCH requests in order "
            "(upclient: the whole file in one streamed PATCH, like curl)",
        ),
        Scenario(
            "c", f"{size_label(wan)} file, 40 ms RTT + 20 MB/s per connection, resumable-upload server",
            "resumable-upload", True, [wan], 1,
            [UPCLIENT_C1, UPCLIENT_C4, TUSPY, RU, RU_P4, CURL], 1, UPCLIENT_C4,
            note=f"{size_label(wan)}, not 1 GiB: a serial client needs ~{wan / WAN_RATE:.0f} s per run",
        ),
        Scenario(
            "d", f"{small} files of 16 KiB, loopback, discarding sink", "sink", False,
            [16 * 1024], small,
            [UPCLIENT_MANY, TUSPY_LOOP, RU_LOOP], 1 if quick else 3, UPCLIENT_MANY,
            note="put_many with max_files=8 against one client object uploading in a loop",
        ),
        Scenario(
            "e", "upclient peak RSS by file size, loopback, discarding sink", "sink", False,
            [big // 2, big, 2 * big], 1, [UPCLIENT_8, UPCLIENT], 1, UPCLIENT_8,
            note="part_size 8 MiB (and the 16 MiB default), concurrency 4; memory must not grow with the file",
        ),
        Scenario(
            "f", f"{size_label(big)} file, loopback, community emulator", "community", False, [big], 1,
            [COMM_UP, COMM_UP_8, COMM_SDK], 1 if quick else 3, COMM_UP,
            note="upclient with its defaults (16 MiB parts, concurrency 4), the SDK with its own (the "
            "emulator's 8 MiB parts, concurrency 3); 'upclient part=8MiB' is the same part size as the SDK",
        ),
        Scenario(
            "g", f"{size_label(wan)} file, 40 ms RTT + 20 MB/s per connection, community emulator", "community",
            True, [wan], 1, [COMM_UP_C1, COMM_UP_C4, COMM_UP_C8, COMM_SDK], 1, COMM_UP_C4,
            note=f"{size_label(wan)}, not 1 GiB; part PUTs go through the proxy too (--public-url); "
            "8 MiB parts; the SDK at its default concurrency 3",
        ),
        Scenario(
            "h", f"MD5 of a {size_label(big)} file (page cache warm) and client.md5 resume start-up", "none",
            False, [big], 1, [MD5_HASHLIB, MD5_UPCLIENT, MD5_FIRST, MD5_CACHED], 1 if quick else 3,
            MD5_UPCLIENT,
            note="in this process; 'again (hit)' is a new client on the FileStore the first call filled",
        ),
        Scenario(
            "i", f"{size_label(big)} file, loopback, UPYUN emulator", "upyun", False, [big], 1,
            [UPYUN_UP, UPYUN_UP_NOSUM, UPYUN_RESUME, UPYUN_MULTI], rounds, UPYUN_UP,
            note="upclient with its defaults (16 MiB parts, concurrency 4, Content-MD5 per part) and without "
            "checksums, as the SDK sends them; "
            "the SDK's resume upload with its own (1 MiB parts, serial, no checksum) and its multi uploader "
            "(16 MiB parts from a ThreadPoolExecutor(4), no checksum)",
        ),
        Scenario(
            "j", f"{size_label(wan_upyun)} file, 40 ms RTT + 20 MB/s per connection, UPYUN emulator", "upyun",
            True, [wan_upyun], 1,
            [UPYUN_UP_C1, UPYUN_UP_C4, UPYUN_UP_C8, UPYUN_RESUME, UPYUN_MULTI], 1, UPYUN_UP_C4,
            note=f"{size_label(wan_upyun)}, not 1 GiB: the SDK's serial 1 MiB parts pay a round trip each "
            f"(~{wan_upyun / 11e6:.0f} s a run at ~11 MB/s); upclient 16 MiB parts, checksum on",
        ),
        Scenario(
            "k", f"{size_label(big)} file upload, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False, [big], 1,
            [FDFS_PUT, FDFS_PUT_ONE, FDFS_PUT_RESUME, FDFS_SDK_PUT], rounds, FDFS_PUT,
            note="upclient's default put (resumable: an appender file grown by 16 MiB appends, then "
            "regenerated into a normal file), resumable=False (one upload request, streamed) and "
            "resumable=True (the appender file kept) vs fastdfs-client 1.3.0 upload_by_filename; every "
            "stored file is checked by SHA-256",
        ),
        Scenario(
            "l", f"{size_label(big)} file download, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False, [big], 1,
            [FDFS_GET, FDFS_SDK_GET], rounds, FDFS_GET,
            note="client.get(id, path) vs fastdfs-client download_to_file(path, id), the same stored file "
            "(uploaded once by the harness); every downloaded file is checked by SHA-256",
            download=True,
        ),
        Scenario(
            "m", f"{small} files of 10 KiB, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False,
            [10 * 1024], small, [FDFS_PUT_LOOP, FDFS_PUT_MANY, FDFS_SDK_LOOP], 1 if quick else 3, FDFS_PUT_LOOP,
            note="one client object each: client.put in a loop, client.put_many (max_files 4, its default), "
            "fastdfs-client upload_by_filename in a loop",
        ),
        Scenario(
            "n", f"{size_label(big)} file, HTTPS loopback, discarding sink (TLS in the sink)", "sink", False,
            [big], 1, [UPCLIENT, UPCLIENT_SERIAL, TUSPY, CURL], rounds, UPCLIENT,
            note="the sink terminates TLS itself (Python ssl, a trustme certificate); clients trust its CA: "
            "upclient verify=ca.pem, curl --cacert, tuspy REQUESTS_CA_BUNDLE; 'concat=False' is one "
            "streamed PATCH on one connection, as curl sends",
            tls=True,
        ),
    ]
