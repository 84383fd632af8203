//! Container <-> host ID maps (containers/storage `idtools.IDMap`).

/// One range: container IDs `container..container+size` are host IDs `host..host+size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First ID inside the container.
    pub container: u64,
    /// First ID on the host.
    pub host: u64,
    /// Number of IDs.
    pub size: u64,
}

/// A list of ranges; empty means the identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// True for the identity map.
    pub fn is_identity(&self) -> bool {
        self.0.is_empty()
    }

    /// The host ID of container ID `id`, or `None` when no range holds it.
    pub fn to_host(&self, id: u64) -> Option<u64> {
        if self.0.is_empty() {
            return Some(id);
        }
        self.0
            .iter()
            .find(|r| id >= r.container && id - r.container < r.size)
            .map(|r| r.host + (id - r.container))
    }

    /// The container ID of host ID `id`, or `None` when no range holds it.
    pub fn to_container(&self, id: u64) -> Option<u64> {
        if self.0.is_empty() {
            return Some(id);
        }
        self.0
            .iter()
            .find(|r| id >= r.host && id - r.host < r.size)
            .map(|r| r.container + (id - r.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let m = IdMap(vec![
            IdRange {
                container: 0,
                host: 100_000,
                size: 65536,
            },
            IdRange {
                container: 70_000,
                host: 1000,
                size: 1,
            },
        ]);
        assert_eq!(m.to_host(0), Some(100_000));
        assert_eq!(m.to_host(65535), Some(165_535));
        assert_eq!(m.to_host(65536), None);
        assert_eq!(m.to_host(70_000), Some(1000));
        assert_eq!(m.to_container(1000), Some(70_000));
        assert_eq!(IdMap::default().to_host(42), Some(42));
    }
}
