"""Store references: ``containers-storage:[DRIVER@GRAPHROOT+RUNROOT:OPTIONS]NAME``.

skopeo's spelling of an image in a store (containers/image v5.23's storage transport,
``ParseReference`` and ``ParseStoreReference``): the bracketed store specifier is optional
(without it, the default store of storage.conf), and each of its parts may be left out
(``[/g]``, ``[vfs@/g+/r]``, ``[overlay@/g+/r:overlay.mountopt=nodev]``). ``NAME`` is an image
name (``busybox`` means ``docker.io/library/busybox:latest``), ``NAME@ID``, ``@ID``, an ID
or an ID prefix of at least 3 characters.

:meth:`Store.import_image <containers_storage.Store.import_image>` takes one as its source
and :meth:`Store.export_image <containers_storage.Store.export_image>` as its destination,
so an image is copied from one store to another as ``skopeo copy`` copies it (layers,
config, a manifest of uncompressed layers, the name given).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import errors, reference
from ._strconv import go_quote
from ._struct import struct
from .digests import validate_digest

if TYPE_CHECKING:
    from .records import Image
    from .store import Store

__all__ = ["PREFIX", "StoreReference", "export_to", "import_from", "is_store_reference", "parse"]

#: The transport prefix.
PREFIX = "containers-storage:"

#: c/image's ``minimumTruncatedIDLength``.
_MIN_ID_PREFIX = 3


@struct(frozen=True)
class StoreReference:
    """A parsed store reference: the store's parts as written (empty when left out) and the
    image part, not yet resolved against the store (``image``)."""

    driver: str = ""
    graph_root: str = ""
    run_root: str = ""
    options: tuple[str, ...] = ()
    image: str = ""
    #: Whether the reference has a ``[...]`` store specifier (else: the default store).
    has_store: bool = False

    def open_store(self) -> Store:
        """The store the reference names (Go's ``GetStore`` with its parts; storage.conf's
        store without a specifier)."""
        from .options import StoreOptions
        from .store import get_store

        if not self.has_store:
            return get_store(None)
        return get_store(
            StoreOptions(
                graph_root=self.graph_root,
                run_root=self.run_root,
                graph_driver_name=self.driver,
                graph_driver_options=list(self.options),
            )
        )


def is_store_reference(ref: str) -> bool:
    """Whether ``ref`` is a ``containers-storage:`` reference."""
    return ref.startswith(PREFIX)


def parse(ref: str) -> StoreReference:
    """Split a ``containers-storage:`` reference as c/image's ``ParseReference`` does.

    Raises:
        InvalidReferenceError: No prefix, an unterminated or empty specifier, an empty
            driver or root (``invalid reference``), or a relative root (``path name is not
            absolute``).
    """
    if not is_store_reference(ref):
        raise errors.InvalidReferenceError(f"{go_quote(ref)} does not start with {PREFIX}")
    rest = ref[len(PREFIX) :]
    if not rest.startswith("["):
        return StoreReference(image=rest)
    close = rest.find("]")
    if close < 1:
        raise errors.InvalidReferenceError()
    spec, image = rest[1:close], rest[close + 1 :]
    driver = ""
    if "@" in spec:
        driver, spec = spec.split("@", 1)
        if not driver or not spec:
            raise errors.InvalidReferenceError()
    elif not spec:
        raise errors.InvalidReferenceError()
    options: tuple[str, ...] = ()
    if ":" in spec:
        spec, opts = spec.split(":", 1)
        options = tuple(opts.split(","))
    run_root = ""
    if "+" in spec:
        spec, run_root = spec.split("+", 1)
    for path in (spec, run_root):
        if path and not os.path.isabs(path):
            raise errors.InvalidReferenceError("path name is not absolute")
    return StoreReference(driver, spec, run_root, options, image, has_store=True)


def _resolve(store: Store, ref: str) -> tuple[str, str]:
    """c/image's ``ParseStoreReference`` against ``store``: ``(name, id)``, the name
    normalised with its tag (``""`` for none), the ID full (``""`` for none)."""
    invalid = errors.InvalidReferenceError.go_message
    if not ref:
        raise errors.InvalidReferenceError(f'"" is an empty reference: {invalid}')
    image_id = ""
    at = ref.rfind("@")
    if at != -1:
        possible = ref[at + 1 :]
        if not possible:
            raise errors.InvalidReferenceError(
                f"empty trailing digest or ID in {go_quote(ref)}: {invalid}"
            )
        if not _is_digest(possible):
            image_id = _full_id(store, possible, min_prefix=_MIN_ID_PREFIX)
            if not image_id:
                raise errors.InvalidReferenceError(
                    f"{go_quote(possible)} does not look like an image ID or digest: {invalid}"
                )
            ref = ref[:at]
    if not image_id and len(ref) >= _MIN_ID_PREFIX and not any(c in ref for c in "@:"):
        image_id = _full_id(store, ref, min_prefix=len(ref), need_prefix=True)
        if image_id:
            ref = ""
    name = reference.storage_name(ref)[0] if ref else ""
    return name, image_id


def _is_digest(text: str) -> bool:
    try:
        validate_digest(text)
    except errors.InvalidDigestError:
        return False
    return True


def _full_id(store: Store, text: str, *, min_prefix: int, need_prefix: bool = False) -> str:
    """``text`` as a full image ID: itself when it is one (64 hex digits), else the ID of
    the store's image it is a prefix of."""
    if not need_prefix and len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    if len(text) < min_prefix:
        return ""
    try:
        found = store.image(text)
    except errors.StorageError:
        return ""
    return found.id if found.id.startswith(text) else ""


def _find(store: Store, name: str, image_id: str) -> Image:
    """The image a resolved reference names (c/image's ``resolveImage``)."""
    if image_id:
        image = store.image(image_id)
        if name and name not in image.names and not _digest_matches(image, name):
            raise errors.ImageUnknownError(
                f"reference {go_quote(name + '@' + image_id)} does not resolve to an image ID: "
                f"{errors.ImageUnknownError.go_message}"
            )
        return image
    if "@" not in name:
        return store.image(name)
    repo, digest = name.split("@", 1)
    for image in store.images_by_digest(digest):
        if any(n.split("@", 1)[0].rsplit(":", 1)[0] == repo for n in image.names) or any(
            n.startswith(repo + "@") for n in image.names
        ):
            return image
    raise errors.ImageUnknownError(f"{go_quote(name)}: {errors.ImageUnknownError.go_message}")


def _digest_matches(image: Image, name: str) -> bool:
    return "@" in name and name.split("@", 1)[1] in image.digests


def _copy(
    src: Store,
    image: Image,
    dst: Store,
    names: Sequence[str],
    progress: Callable[[Any], object] | None,
) -> tuple[Image, str]:
    """Copy ``image`` from ``src`` to ``dst`` through an OCI layout in ``dst``'s tmp
    directory; returns the new image and its manifest digest."""
    from . import _native, oci

    tmp_root = os.path.join(dst.graph_root(), "tmp")
    if ":" in tmp_root:  # an oci: path cannot hold one
        tmp_root = tempfile.gettempdir()
    os.makedirs(tmp_root, mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix="store-copy-", dir=tmp_root)
    try:
        digest = oci.export_image(src, image.id, f"oci:{work}")
        copied = oci.import_image(dst, f"oci:{work}", names, progress)
    finally:
        _native.remove_tree(work)
    return copied, digest


def import_from(
    store: Store,
    source: str,
    names: Sequence[str] = (),
    progress: Callable[[Any], object] | None = None,
) -> Image:
    """Copy the image ``source`` (a store reference) into ``store``. The copy is named
    ``names``, or the name the reference gives (none for an ID).

    Raises:
        InvalidReferenceError: ``source`` is not a valid store reference.
        ImageUnknownError: The source store has no such image.
    """
    ref = parse(source)
    src = ref.open_store()
    name, image_id = _resolve(src, ref.image)
    image = _find(src, name, image_id)
    given = list(names) or ([name] if name and "@" not in name else [])
    return _copy(src, image, store, given, progress)[0]


def export_to(store: Store, image_ref: str, dest: str) -> str:
    """Copy the image ``image_ref`` of ``store`` into the store ``dest`` names, under the
    name it gives; returns the manifest digest of the copy.

    Raises:
        InvalidReferenceError: ``dest`` is not a valid store reference, or gives an ID
            other than the image's (an image's ID is its config's digest).
    """
    ref = parse(dest)
    dst = ref.open_store()
    image = store.image(image_ref)
    name, image_id = _resolve(dst, ref.image) if ref.image else ("", "")
    if image_id and image_id != image.id:
        raise errors.InvalidReferenceError(
            f"destination ID {go_quote(image_id)} is not the image's ID {image.id}: "
            f"{errors.InvalidReferenceError.go_message}"
        )
    return _copy(store, image, dst, [name] if name else [], None)[1]
