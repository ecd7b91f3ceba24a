"""The tracker (``tracker_service.c``): where to store, where to fetch, group and storage listings.

IP fields are 15 bytes, or 45 with ``ip_size=45`` as a 6.15+ tracker with
``response_ip_addr_size = IPv6``; NUL padded:

====  =========================================  ===========================================
101   query store, any group (the first group)   group16 + ip + port8 + store_path_index1
104   query store in a group: group16            same; an unknown group -> 2
106   query store, all servers                   group16 + N x (ip + port8) + spi1
107   same in a group: group16                   same; unknown group -> 2
102   query fetch: group16 + remote              group16 + ip + port8 (no check that the
103   query update: group16 + remote             file exists; remote 22..127 bytes else 22)
105   query fetch all: group16 + remote          group16 + N x (ip + port8)
91    list all groups                            N x 113-byte group stat
90    list one group: group16                    one 113-byte group stat; unknown -> 2
92    list storages: group16 [+ storage id]      N x 487-byte records (517 with ip_size=45)
111   active test                                status 0
82    quit                                       no reply; the connection is closed
====  =========================================  ===========================================

Anything else answers 22; tracker errors never close the connection;
a body over 64 KiB closes it.
"""

from __future__ import annotations

import logging
import shutil
import struct
from typing import Callable, Dict

from upclient.testing.fdfs.codec import (
    CMD_ACTIVE_TEST,
    EINVAL,
    ENOENT,
    GROUP_NAME_LEN,
    MAX_NAME_LEN,
    SUBDIR_COUNT,
    TRACKER_LIST_ALL_GROUPS,
    TRACKER_LIST_ONE_GROUP,
    TRACKER_LIST_STORAGE,
    TRACKER_QUERY_FETCH_ALL,
    TRACKER_QUERY_FETCH_ONE,
    TRACKER_QUERY_STORE_WITH_GROUP_ALL,
    TRACKER_QUERY_STORE_WITH_GROUP_ONE,
    TRACKER_QUERY_STORE_WITHOUT_GROUP_ALL,
    TRACKER_QUERY_STORE_WITHOUT_GROUP_ONE,
    TRACKER_QUERY_UPDATE,
    Status,
    cstr,
    group16,
)
from upclient.testing.fdfs.connection import Emulator, Handler, Request
from upclient.testing.fdfs.node import StorageNode

__all__ = ["TrackerHandler"]

LOG = logging.getLogger("upclient.testing.fdfs")

VERSION = "6.16.1"
STORAGE_STATUS_ACTIVE = 7
STORAGE_RW_MODE = 3  # read and write
UPLOAD_PRIORITY = 10
TRACKER_MAX_BODY = 64 * 1024
MiB = 1024 * 1024


class TrackerHandler(Handler):
    """A tracker connection (``tracker_service.c``): small requests, errors never close."""

    role = "tracker"

    def dispatch(self, req: Request) -> bool:
        if req.length > TRACKER_MAX_BODY:
            LOG.debug("tracker: command %d with a %d-byte body: closing", req.cmd, req.length)
            return False
        body = req.take(req.length)
        handler = self._COMMANDS.get(req.cmd)
        if handler is None:
            raise Status(EINVAL, f"unknown tracker command {req.cmd}")
        req.reply(0, handler(self, body))
        return True

    @property
    def _emulator(self) -> Emulator:
        return self.server.emulator

    def _ip_field(self) -> bytes:
        return self._emulator.advertised_ip.encode("ascii").ljust(self._emulator.ip_size, b"\0")

    def _node_for(self, raw_group: bytes) -> StorageNode:
        name = cstr(raw_group).decode("latin-1")
        node = self._emulator._nodes.get(name)
        if node is None:
            raise Status(ENOENT, f"group {name!r} does not exist")
        return node

    @staticmethod
    def _expect_length(body: bytes, n: int) -> None:
        if len(body) != n:
            raise Status(EINVAL, f"body of {len(body)} bytes, expected {n}")

    def _store_reply(self, node: StorageNode) -> bytes:
        return group16(node.group) + self._ip_field() + struct.pack(">QB", node.port, 0)

    def query_store_any(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return self._store_reply(self._emulator._first_node())

    def query_store_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._store_reply(self._node_for(body))

    def query_store_all(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return self._store_reply(self._emulator._first_node())

    def query_store_all_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._store_reply(self._node_for(body))

    def query_fetch(self, body: bytes) -> bytes:
        """102/103/105: the tracker only checks the group and the name's length, not that the file exists."""
        if len(body) < GROUP_NAME_LEN + 22 or len(body) >= GROUP_NAME_LEN + MAX_NAME_LEN:
            raise Status(EINVAL, f"query fetch body of {len(body)} bytes")
        node = self._node_for(body[:GROUP_NAME_LEN])
        return group16(node.group) + self._ip_field() + struct.pack(">Q", node.port)

    def _group_stat(self, node: StorageNode) -> bytes:
        usage = shutil.disk_usage(node.store.data)
        return struct.pack(
            ">17s12q",
            node.group.encode("ascii"),
            usage.total // MiB,
            usage.free // MiB,
            0,  # reserved_mb
            0,  # trunk_free_mb
            1,  # storage_count
            node.port,
            1,  # readable_count
            1,  # writable_count
            0,  # current_write_server
            1,  # store_path_count
            SUBDIR_COUNT,
            0,  # current_trunk_file_id
        )

    def list_one_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._group_stat(self._node_for(body))

    def list_all_groups(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return b"".join(self._group_stat(node) for node in self._emulator._nodes.values())

    def list_storages(self, body: bytes) -> bytes:
        """92: group16 [+ storage id or ip]; a given id that matches no storage -> 2."""
        if len(body) < GROUP_NAME_LEN or len(body) > GROUP_NAME_LEN + 45:
            raise Status(EINVAL, f"list storages body of {len(body)} bytes")
        node = self._node_for(body[:GROUP_NAME_LEN])
        wanted = cstr(body[GROUP_NAME_LEN:]).decode("latin-1")
        ip = self._emulator.advertised_ip
        if wanted and wanted != ip:
            raise Status(ENOENT, f"no storage {wanted!r} in group {node.group!r}")
        usage = shutil.disk_usage(node.store.data)
        conns, stats = node.stats.snapshot()
        ip_len = self._emulator.ip_size + 1
        return struct.pack(
            f">BB16s{ip_len}s16s8s10q3i42qB",
            STORAGE_STATUS_ACTIVE,
            STORAGE_RW_MODE,
            ip.encode("ascii"),  # id: the ip without use_storage_id
            ip.encode("ascii"),
            b"",  # src_id
            VERSION.encode("ascii"),
            node.join_time,
            node.up_time,
            usage.total // MiB,
            usage.free // MiB,
            0,  # reserved_mb
            UPLOAD_PRIORITY,
            1,  # store_path_count
            SUBDIR_COUNT,
            0,  # current_write_path
            node.port,
            *conns,
            *stats,
            0,  # if_trunk_server
        )

    def active_test(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return b""

    _COMMANDS: Dict[int, Callable[["TrackerHandler", bytes], bytes]] = {
        TRACKER_QUERY_STORE_WITHOUT_GROUP_ONE: query_store_any,
        TRACKER_QUERY_STORE_WITH_GROUP_ONE: query_store_group,
        TRACKER_QUERY_STORE_WITHOUT_GROUP_ALL: query_store_all,
        TRACKER_QUERY_STORE_WITH_GROUP_ALL: query_store_all_group,
        TRACKER_QUERY_FETCH_ONE: query_fetch,
        TRACKER_QUERY_UPDATE: query_fetch,
        TRACKER_QUERY_FETCH_ALL: query_fetch,
        TRACKER_LIST_ONE_GROUP: list_one_group,
        TRACKER_LIST_ALL_GROUPS: list_all_groups,
        TRACKER_LIST_STORAGE: list_storages,
        CMD_ACTIVE_TEST: active_test,
    }
