"""Block devices that are not virtio: parallel NOR flash (pflash_cfi01)."""
