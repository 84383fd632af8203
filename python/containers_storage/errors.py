"""The exceptions of containers_storage, mirroring Go containers/storage's ``Err*`` set.

Every exception raised on purpose by this package derives from :class:`StorageError`. Each
class documents the Go variable it stands for; ``str(exc)`` starts with Go's message text,
so scripts matching on the Go tools' output keep working. Lookup failures also derive from
:class:`LookupError`, invalid arguments from :class:`ValueError`.

This module imports nothing from the native extension: the extension imports it.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousPrefixError",
    "ArchiveError",
    "ContainerUnknownError",
    "DigestMismatchError",
    "DigestUnknownError",
    "DuplicateIDError",
    "DuplicateImageNamesError",
    "DuplicateLayerNamesError",
    "DuplicateNameError",
    "ImageUnknownError",
    "ImageUsedByContainerError",
    "IncompleteOptionsError",
    "InvalidBigDataNameError",
    "InvalidDigestError",
    "InvalidMappingsError",
    "InvalidReferenceError",
    "LayerHasChildrenError",
    "LayerNotMountedError",
    "LayerUnknownError",
    "LayerUsedByContainerError",
    "LayerUsedByImageError",
    "LoadError",
    "LockNotHeldError",
    "LockReadOnlyError",
    "LockUpgradeError",
    "NotAContainerError",
    "NotALayerError",
    "NotAnIDError",
    "NotAnImageError",
    "NotSupportedError",
    "ParentIsContainerError",
    "ParentUnknownError",
    "SizeUnknownError",
    "StorageError",
    "StoreIsReadOnlyError",
    "UnsafePathError",
]


class StorageError(Exception):
    """Base class of every error this package raises.

    Subclasses carry Go's message as ``go_message``; raising one without arguments uses it.
    """

    go_message: str = "storage error"

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.go_message,)))


class ContainerUnknownError(StorageError, LookupError):
    """No container has that name or ID (Go: ``ErrContainerUnknown``)."""

    go_message = "container not known"


class ImageUnknownError(StorageError, LookupError):
    """No image has that name or ID (Go: ``ErrImageUnknown``)."""

    go_message = "image not known"


class ParentUnknownError(StorageError, LookupError):
    """The would-be parent layer does not exist (Go: ``ErrParentUnknown``)."""

    go_message = "parent of layer not known"


class LayerUnknownError(StorageError, LookupError):
    """No layer has that name or ID (Go: ``ErrLayerUnknown``)."""

    go_message = "layer not known"


class LoadError(StorageError):
    """The store's metadata could not be loaded (Go: ``ErrLoadError``)."""

    go_message = "error loading storage metadata"


class DuplicateIDError(StorageError, ValueError):
    """The ID is already in use (Go: ``ErrDuplicateID``)."""

    go_message = "that ID is already in use"


class DuplicateNameError(StorageError, ValueError):
    """The name is already assigned to another item (Go: ``ErrDuplicateName``)."""

    go_message = "that name is already in use"


class ParentIsContainerError(StorageError, ValueError):
    """The would-be parent layer is a container's layer (Go: ``ErrParentIsContainer``)."""

    go_message = "would-be parent layer is a container"


class NotAContainerError(StorageError, LookupError):
    """The identifier names something that is not a container (Go: ``ErrNotAContainer``)."""

    go_message = "identifier is not a container"


class NotAnImageError(StorageError, LookupError):
    """The identifier names something that is not an image (Go: ``ErrNotAnImage``)."""

    go_message = "identifier is not an image"


class NotALayerError(StorageError, LookupError):
    """The identifier names something that is not a layer (Go: ``ErrNotALayer``)."""

    go_message = "identifier is not a layer"


class NotAnIDError(StorageError, LookupError):
    """The identifier names no layer, image or container (Go: ``ErrNotAnID``)."""

    go_message = "identifier is not a layer, image, or container"


class LayerHasChildrenError(StorageError):
    """The layer is the parent of other layers (Go: ``ErrLayerHasChildren``)."""

    go_message = "layer has children"


class LayerUsedByImageError(StorageError):
    """The layer is an image's top layer (Go: ``ErrLayerUsedByImage``)."""

    go_message = "layer is in use by an image"


class LayerUsedByContainerError(StorageError):
    """The layer is a container's layer (Go: ``ErrLayerUsedByContainer``)."""

    go_message = "layer is in use by a container"


class ImageUsedByContainerError(StorageError):
    """A container was made from the image (Go: ``ErrImageUsedByContainer``)."""

    go_message = "image is in use by a container"


class IncompleteOptionsError(StorageError, ValueError):
    """The store options lack a required root (Go: ``ErrIncompleteOptions``)."""

    go_message = "missing necessary StoreOptions"


class SizeUnknownError(StorageError):
    """The size of the item is not known (Go: ``ErrSizeUnknown``)."""

    go_message = "size is not known"


class StoreIsReadOnlyError(StorageError, PermissionError):
    """A write was attempted on a read-only store (Go: ``ErrStoreIsReadOnly``)."""

    go_message = "called a write method on a read-only store"


class LockReadOnlyError(StorageError, PermissionError):
    """A write lock, or a write, was asked of a read-only lock (Go: ``ErrLockReadOnly``)."""

    go_message = "lock is not a read-write lock"


class LockNotHeldError(StorageError, RuntimeError):
    """An operation that needs the lock held ran without it (Go panics here)."""

    go_message = "lock is not held"


class LockUpgradeError(StorageError, RuntimeError):
    """A thread holding the read lock asked for the write lock, which would deadlock."""

    go_message = "cannot take the write lock while holding the read lock"


class DuplicateImageNamesError(StorageError):
    """A read-only image store gives one name to several images.

    Go: ``ErrDuplicateImageNames``.
    """

    go_message = "read-only image store assigns the same name to multiple images"


class DuplicateLayerNamesError(StorageError):
    """A read-only layer store gives one name to several layers.

    Go: ``ErrDuplicateLayerNames``.
    """

    go_message = "read-only layer store assigns the same name to multiple layers"


class InvalidBigDataNameError(StorageError, ValueError):
    """The big-data key is not usable (Go: ``ErrInvalidBigDataName``)."""

    go_message = "not a valid name for a big data item"


class DigestUnknownError(StorageError):
    """The item's digest could not be computed (Go: ``ErrDigestUnknown``)."""

    go_message = "could not compute digest of item"


class DigestMismatchError(StorageError, ValueError):
    """A blob or layer did not have the digest it was announced with (not a Go ``Err*``;
    c/image's words: ``Digest did not match``)."""

    go_message = "digest did not match"


class LayerNotMountedError(StorageError):
    """The layer is not mounted (Go: ``ErrLayerNotMounted``)."""

    go_message = "layer is not mounted"


class NotSupportedError(StorageError):
    """The driver or store does not support the operation (Go: ``ErrNotSupported``)."""

    go_message = "not supported"


class InvalidDigestError(StorageError, ValueError):
    """A digest is malformed or of an algorithm other than sha256 (go-digest's
    ``ErrDigestInvalidFormat``, ``ErrDigestInvalidLength``, ``ErrDigestUnsupported``)."""

    go_message = "invalid checksum digest format"


class InvalidReferenceError(StorageError, ValueError):
    """An image name is not a valid reference (containers/image's storage transport:
    ``ErrInvalidReference``; the text says why, as c/image's does)."""

    go_message = "invalid reference"


class InvalidMappingsError(StorageError, ValueError):
    """The UID/GID mappings are invalid (Go: ``ErrInvalidMappings``)."""

    go_message = "invalid mappings specified"


class AmbiguousPrefixError(StorageError, LookupError):
    """An ID prefix matches more than one item (Go truncindex: ``ErrAmbiguousPrefix``)."""

    go_message = "multiple IDs found with provided prefix"


class ArchiveError(StorageError, ValueError):
    """A layer tarball is malformed, unsupported or over a limit."""

    go_message = "invalid tar archive"


class UnsafePathError(ArchiveError):
    """An archive entry would land, or write, outside the layer directory."""

    go_message = "archive entry escapes the layer directory"
