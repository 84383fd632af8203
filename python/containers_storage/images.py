"""The image store: ``<drv>-images/images.json`` and each image's big-data files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from . import _native, errors
from ._jsonstore import atomic_write, now
from ._recordstore import RecordStore, big_data_file_name, dedupe_names
from ._strconv import go_quote
from ._struct import replace
from .digests import sha256_digest, validate_digest
from .records import Image

__all__ = ["ImageStore"]


class ImageStore(RecordStore[Image]):
    """The images of one store (read-write) or of an additional image store (read-only)."""

    record_type = Image
    kind = "image"
    unknown_error = errors.ImageUnknownError
    duplicate_names_error = errors.DuplicateImageNamesError

    def __init__(self, directory: str, read_only: bool) -> None:
        super().__init__(directory, "images.json", "images.lock", read_only)
        self.by_digest: dict[str, list[str]] = {}

    def _prepare(self, records: list[Image]) -> list[Image]:
        # Freshly decoded records, not yet shared: completed in place.
        for r in records:
            _validate_digests(r)
        out = [r._fill_digests() for r in records]
        if self.read_only:
            for r in out:
                r.__dict__["read_only"] = True
        return out

    def _index_extra(self) -> None:
        by_digest: dict[str, list[str]] = {}
        for r in self.records:
            for d in r.digests:
                by_digest.setdefault(d, []).append(r.id)
        self.by_digest = by_digest

    def _extra_add(self, rec: Image) -> None:
        for d in rec.digests:
            self.by_digest.setdefault(d, []).append(rec.id)

    def _extra_drop(self, rec: Image) -> None:
        for d in rec.digests:
            ids = self.by_digest.get(d)
            if ids and rec.id in ids:
                ids.remove(rec.id)
                if not ids:
                    del self.by_digest[d]

    def data_dir(self, image_id: str) -> str:
        return os.path.join(self.directory, image_id)

    def data_path(self, image_id: str, key: str) -> str:
        return os.path.join(self.data_dir(image_id), big_data_file_name(key))

    def _locate(self, ref: str) -> Image:
        rec = self.lookup(ref)
        if rec is None:
            raise errors.ImageUnknownError(
                f"locating image with ID {go_quote(ref)}: {errors.ImageUnknownError.go_message}"
            )
        return rec

    # -- changes (write lock held) ----------------------------------------------------------

    def create(
        self,
        image_id: str,
        names: Sequence[str],
        layer: str,
        metadata: str,
        created: str | None,
        digest: str,
    ) -> Image:
        self.require_writable("create new images")
        if not image_id:
            image_id = self.new_id()
        if image_id in self.by_id:
            raise errors.DuplicateIDError(
                f"an image with ID {go_quote(image_id)} already exists: "
                + errors.DuplicateIDError.go_message
            )
        names = dedupe_names(names)
        for name in names:
            other = self.by_name.get(name)
            if other is not None:
                raise errors.DuplicateNameError(
                    f"image name {go_quote(name)} is already associated with image "
                    f"{go_quote(other.id)}: " + errors.DuplicateNameError.go_message
                )
        if digest:
            try:
                validate_digest(digest)
            except errors.InvalidDigestError as e:
                raise errors.InvalidDigestError(
                    "validating digests for new image: validating image digest "
                    f"{go_quote(digest)}: {e}"
                ) from None
        rec = Image(
            id=image_id,
            digest=digest,
            names=tuple(names),
            layer=layer,
            metadata=metadata,
            created=created or now(),
        ).with_digests()
        self.add(rec)
        self.save()
        return rec

    def _renamed(self, rec: Image, names: list[str]) -> Image:
        # Every name given is (re)put at the front of the history, newest first.
        history = list(rec.names_history)
        for name in names:
            history = dedupe_names([name, *history])
        return replace(rec, names=tuple(names), names_history=tuple(history))

    def add_mapped_layer(self, ref: str, layer_id: str) -> None:
        rec = self._locate(ref)
        self.put_record(replace(rec, mapped_layers=(*rec.mapped_layers, layer_id)))
        self.save()

    def remove_mapped_layer(self, ref: str, layer_id: str) -> None:
        rec = self._locate(ref)
        if layer_id in rec.mapped_layers:
            kept = tuple(x for x in rec.mapped_layers if x != layer_id)
            self.put_record(replace(rec, mapped_layers=kept))
            self.save()

    def delete(self, ref: str) -> None:
        self.require_writable("delete images")
        rec = self._locate(ref)
        self.remove(rec.id)
        self.save()
        _native.remove_tree(self.data_dir(rec.id))

    def wipe(self) -> None:
        self.require_writable("delete images")
        for rec in list(self.records):
            self.delete(rec.id)

    # -- big data ---------------------------------------------------------------------------

    def set_big_data(
        self,
        ref: str,
        key: str,
        data: bytes,
        digest_manifest: Callable[[bytes], str] | None = None,
    ) -> None:
        """Store a named blob; ``manifest*`` keys are digested with ``digest_manifest``
        (default: sha256 of the bytes) and feed the image's digests."""
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't set empty name for image big data item: "
                + errors.InvalidBigDataNameError.go_message
            )
        self.require_writable("save data items associated with images")
        rec = self._locate(ref)
        os.makedirs(self.data_dir(rec.id), mode=0o700, exist_ok=True)
        if key.startswith("manifest"):
            new_digest = (digest_manifest or sha256_digest)(data)
        else:
            new_digest = sha256_digest(data)
        atomic_write(self.data_path(rec.id, key), data)
        sizes = dict(rec.big_data_sizes)
        digests = dict(rec.big_data_digests)
        sizes[key] = len(data)
        digests[key] = new_digest
        names = rec.big_data_names if key in rec.big_data_names else (*rec.big_data_names, key)
        updated = replace(
            rec, big_data_sizes=sizes, big_data_digests=digests, big_data_names=names
        ).with_digests()
        if updated != rec or updated.digests != rec.digests:
            self.put_record(updated)
            self.save()

    def big_data(self, ref: str, key: str) -> bytes:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve image big data value for empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self._locate(ref)
        try:
            with open(self.data_path(rec.id, key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise missing_image_item(key, rec.id) from None

    def big_data_size(self, ref: str, key: str) -> int:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve size of image big data with empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self._locate(ref)
        if key in rec.big_data_sizes:
            return int(rec.big_data_sizes[key])
        if not self.read_only:
            try:
                data = self.big_data(rec.id, key)
            except FileNotFoundError:
                data = None
            if data is not None and self.lock.held() == "write":
                self.set_big_data(rec.id, key, data)
                return len(data)
            if data is not None:
                return len(data)
        raise errors.SizeUnknownError()

    def big_data_digest(self, ref: str, key: str) -> str:
        if not key:
            raise errors.InvalidBigDataNameError(
                "can't retrieve digest of image big data value with empty name: "
                + errors.InvalidBigDataNameError.go_message
            )
        rec = self._locate(ref)
        d = rec.big_data_digests.get(key)
        if d:
            return str(d)
        raise errors.DigestUnknownError()


def missing_image_item(key: str, image_id: str) -> FileNotFoundError:
    """Go's ``ImageBigData`` error for an image without the item (or with an empty key)."""
    return FileNotFoundError(
        f"locating item named {go_quote(key)} for image with ID {go_quote(image_id)} (consider "
        "removing the image to resolve the issue): file does not exist"
    )


def _validate_digests(rec: Image) -> None:
    """Go's ``recomputeDigests`` on load: the image digest and every manifest item's digest
    must be valid, or the store does not open."""

    def fail(what: str, e: errors.InvalidDigestError) -> errors.InvalidDigestError:
        names = "[" + " ".join(rec.names) + "]"
        return errors.InvalidDigestError(
            f"computing digests for image with ID {go_quote(rec.id)} ({names}): {what}: {e}"
        )

    if rec.digest:
        try:
            validate_digest(rec.digest)
        except errors.InvalidDigestError as e:
            raise fail(f"validating image digest {go_quote(rec.digest)}", e) from None
    for name, d in rec.big_data_digests.items():
        if not name.startswith("manifest"):
            continue
        try:
            validate_digest(d)
        except errors.InvalidDigestError as e:
            what = f"validating digest {go_quote(d)} for big data item {go_quote(name)}"
            raise fail(what, e) from None
