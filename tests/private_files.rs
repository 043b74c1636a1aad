//! The data directory and every SQLite file in it (databases, WAL, shared
//! memory) are readable by their owner only, whatever the umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use modelbus::bus::Bus;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn data_directories_are_0700_and_database_files_0600() {
    // The usual umask, which would make them world-readable.
    unsafe { libc::umask(0o022) };
    // Two levels the process creates, both private.
    let claims = common::claims(|text| text.replace("data_dir = \"data\"", "data_dir = \"state/data\""));
    let data = claims.config.data_dir.clone();
    let bus = Bus::open(&claims.config).unwrap();
    bus.publish("claims", vec![common::raw(b"{}", "C00042")]).await.unwrap();
    let _dedup = modelbus::dedup::Dedup::open(&data, "claims-risk", Duration::from_secs(60)).unwrap();

    assert_eq!(mode(data.parent().unwrap()), 0o700);
    assert_eq!(mode(&data), 0o700);
    // The bus is open, so its WAL and shared-memory files exist.
    for file in ["bus.sqlite", "bus.sqlite-wal", "bus.sqlite-shm", "features.sqlite", "dedup.sqlite"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    // Whatever else SQLite left there (a features WAL) is private too.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path) & 0o077, 0, "{}", path.display());
    }
}
