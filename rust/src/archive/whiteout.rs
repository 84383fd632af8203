//! AUFS whiteouts as OCI layers carry them, their overlayfs form, and the choice between the
//! two when applying ([`WhiteoutFormat`]).

/// Prefix of a whiteout: `.wh.NAME` deletes `NAME` (Go: `archive.WhiteoutPrefix`).
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata entries, which are not content (Go: `WhiteoutMetaPrefix`).
pub const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker (Go: `WhiteoutOpaqueDir`).
pub const WHITEOUT_OPAQUE_DIR: &[u8] = b".wh..wh..opq";
/// overlayfs xattr marking an opaque directory as the kernel reads it here:
/// `user.overlay.opaque` when rootless (mounted with `userxattr`), else
/// `trusted.overlay.opaque` (Go's `GetOverlayXattrName`). A constant, not a string made per
/// call: it is asked for every directory a diff or changes walk visits.
pub fn overlay_opaque_xattr() -> &'static str {
    if crate::fsutil::rootless() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// How whiteouts in the layer are written to the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// The target holds a copy of the parent layer: whiteouts delete (vfs driver).
    #[default]
    Vfs,
    /// overlayfs: `.wh.NAME` becomes a 0:0 character device, `.wh..wh..opq` the
    /// `trusted.overlay.opaque=y` xattr (`user.overlay.opaque` when rootless).
    Overlay,
    /// Keep `.wh.` entries as the files they are.
    Aufs,
}

/// What a member's base name says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout.
    None,
    /// `.wh..wh..opq`: the directory hides what lower layers had.
    Opaque,
    /// Another `.wh..wh.` AUFS metadata entry: skipped.
    Meta,
    /// `.wh.NAME`: deletes `NAME`.
    Delete(&'a [u8]),
    /// A whiteout whose name is not a usable file name (`.wh.`, `.wh..`, `.wh...`).
    Invalid,
}

/// Classifies a member's base name.
pub fn classify(base: &[u8]) -> Whiteout<'_> {
    if !base.starts_with(WHITEOUT_PREFIX) {
        return Whiteout::None;
    }
    if base == WHITEOUT_OPAQUE_DIR {
        return Whiteout::Opaque;
    }
    if base.starts_with(WHITEOUT_META_PREFIX) && base.len() > WHITEOUT_META_PREFIX.len() {
        return Whiteout::Meta;
    }
    let name = &base[WHITEOUT_PREFIX.len()..];
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Whiteout::Invalid;
    }
    Whiteout::Delete(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"file"), Whiteout::None);
        assert_eq!(classify(b".wh.file"), Whiteout::Delete(b"file"));
        assert_eq!(classify(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify(b".wh..wh.plnk"), Whiteout::Meta);
        assert_eq!(classify(b".wh."), Whiteout::Invalid);
        assert_eq!(classify(b".wh.."), Whiteout::Invalid);
        assert_eq!(classify(b".wh..."), Whiteout::Invalid);
        assert_eq!(classify(b".wh..wh."), Whiteout::Delete(b".wh."));
    }
}
