"""The container store: ``<drv>-containers/containers.json``, each container's big data and
its ``userdata`` directories in the graph and run roots."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

from . import errors
from ._jsonstore import atomic_write, now
from ._mounts import remove_all
from ._recordstore import RecordStore, big_data_file_name, dedupe_names
from ._strconv import go_quote
from ._struct import replace
from .digests import sha256_digest
from .records import Container, IDMap

__all__ = ["ContainerStore"]


def _overlapping(maps: Sequence[IDMap]) -> bool:
    spans = sorted((m.container_id, m.container_id + m.size) for m in maps)
    return any(a[1] > b[0] for a, b in itertools.pairwise(spans))


class ContainerStore(RecordStore[Container]):
    """The containers of a store (always read-write)."""

    record_type = Container
    kind = "container"
    unknown_error = errors.ContainerUnknownError

    def __init__(self, directory: str, run_directory: str) -> None:
        super().__init__(directory, "containers.json", "containers.lock", False)
        self.run_directory = run_directory
        os.makedirs(run_directory, mode=0o700, exist_ok=True)
        self.by_layer: dict[str, Container] = {}

    def _index_extra(self) -> None:
        self.by_layer = {r.layer: r for r in self.records if r.layer}

    def _extra_add(self, rec: Container) -> None:
        if rec.layer:
            self.by_layer[rec.layer] = rec

    def _extra_drop(self, rec: Container) -> None:
        if self.by_layer.get(rec.layer) is rec:
            del self.by_layer[rec.layer]

    def _lookup_extra(self, ref: str) -> Container | None:
        return self.by_layer.get(ref)

    def data_dir(self, ctr_id: str) -> str:
        return os.path.join(self.directory, ctr_id)

    def data_path(self, ctr_id: str, key: str) -> str:
        return os.path.join(self.data_dir(ctr_id), big_data_file_name(key))

    def userdata_dir(self, ctr_id: str) -> str:
        return os.path.join(self.directory, ctr_id, "userdata")

    def run_userdata_dir(self, ctr_id: str) -> str:
        return os.path.join(self.run_directory, ctr_id, "userdata")

    def create(
        self,
        ctr_id: str,
        names: Sequence[str],
        image: str,
        layer: str,
        metadata: str,
        flags: dict[str, Any],
        uid_map: Sequence[IDMap],
        gid_map: Sequence[IDMap],
    ) -> Container:
        if not ctr_id:
            ctr_id = self.new_id()
        if ctr_id in self.by_id:
            raise errors.DuplicateIDError()
        names = dedupe_names(names)
        for name in names:
            other = self.by_name.get(name)
            if other is not None:
                raise errors.DuplicateNameError(
                    f"the container name {go_quote(name)} is already in use by {other.id}. "
                    "You have to remove that container to be able to reuse that name: "
                    + errors.DuplicateNameError.go_message
                )
        for maps in (uid_map, gid_map):
            if _overlapping(maps):
                raise errors.InvalidMappingsError(
                    "overlapping ranges in ID mappings: " + errors.InvalidMappingsError.go_message
                )
        rec = Container(
            id=ctr_id,
            names=tuple(names),
            image=image,
            layer=layer,
            metadata=metadata,
            created=now(),
            flags=dict(flags),
            uidmap=tuple(uid_map),
            gidmap=tuple(gid_map),
        )
        self.add(rec)
        self.save()
        # As Go: the userdata directories appear on first use (container_directory).
        return rec

    def remove_directories(self, ctr_id: str) -> None:
        """Remove the container's directories in the graph and run roots, unmounting what
        is mounted in them (podman's ``userdata/shm``), as Go's ``DeleteContainer`` does."""
        remove_all(self.data_dir(ctr_id))
        remove_all(os.path.join(self.run_directory, ctr_id))

    def delete(self, ref: str) -> None:
        """Remove the container's directories, then its record: a failure leaves it listed,
        for a retry to finish, never a record gone with its directories left."""
        rec = self.get(ref)
        self.remove_directories(rec.id)
        self.remove(rec.id)
        self.save()

    def wipe(self) -> None:
        for rec in list(self.records):
            self.delete(rec.id)

    def set_big_data(self, ref: str, key: str, data: bytes) -> None:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't set empty name for container big data item: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self.get(ref)
        os.makedirs(self.data_dir(rec.id), mode=0o700, exist_ok=True)
        atomic_write(self.data_path(rec.id, key), data)
        sizes = dict(rec.big_data_sizes)
        digests = dict(rec.big_data_digests)
        sizes[key] = len(data)
        digests[key] = sha256_digest(data)
        names = rec.big_data_names if key in rec.big_data_names else (*rec.big_data_names, key)
        updated = replace(rec, big_data_sizes=sizes, big_data_digests=digests, big_data_names=names)
        if updated != rec:
            self.put_record(updated)
            self.save()

    def big_data(self, ref: str, key: str) -> bytes:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve container big data value for empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self.get(ref)
        path = self.data_path(rec.id, key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            # Go returns os.ReadFile's error as it is.
            raise FileNotFoundError(f"open {path}: no such file or directory") from None

    def big_data_size(self, ref: str, key: str) -> int:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve size of container big data with empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self.get(ref)
        if key in rec.big_data_sizes:
            return int(rec.big_data_sizes[key])
        try:
            data = self.big_data(rec.id, key)
        except FileNotFoundError:
            raise errors.SizeUnknownError() from None
        if self.lock.held() == "write":
            self.set_big_data(rec.id, key, data)
        return len(data)

    def big_data_digest(self, ref: str, key: str) -> str:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve digest of container big data value with empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self.get(ref)
        d = rec.big_data_digests.get(key)
        if d:
            return str(d)
        try:
            data = self.big_data(rec.id, key)
        except FileNotFoundError:
            raise errors.DigestUnknownError() from None
        if self.lock.held() == "write":
            self.set_big_data(rec.id, key, data)
        return sha256_digest(data)
