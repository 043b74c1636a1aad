//! Data directories (0700) and SQLite database files (0600) that only their
//! owner can read: they hold every event, dead letter and feature row, and
//! other users of the host have no business reading them. Under the usual
//! umask (022) `create_dir_all` and SQLite would make them world-readable.
//!
//! SQLite gives the `-wal` and `-shm` files it creates next to a database
//! the database file's permissions, so creating the database file first,
//! with 0600, covers them too. Directories and files that already exist are
//! left as they are: their owner chose.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates the empty database file `path` with mode 0600 unless it exists,
/// so that SQLite opens it instead of creating it with the umask's mode.
pub fn create_db_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`create_dir`] for the database's directory, then [`create_db_file`].
pub fn prepare_db(dir: &Path, file_name: &str) -> io::Result<std::path::PathBuf> {
    create_dir(dir)?;
    let path = dir.join(file_name);
    create_db_file(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_dirs_and_files_and_leaves_existing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let db = prepare_db(&dir, "x.sqlite").unwrap();
        assert_eq!((mode(&tmp.path().join("a")), mode(&dir), mode(&db)), (0o700, 0o700, 0o600));

        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(&db, b"kept").unwrap();
        prepare_db(&dir, "x.sqlite").unwrap();
        assert_eq!((mode(&db), std::fs::read(&db).unwrap()), (0o640, b"kept".to_vec()));
    }
}
