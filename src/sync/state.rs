//! Sync state in `sync.state_dir`, written atomically: write a temporary
//! file, fsync it, rename it over the old one, fsync the directory. A kill
//! at any moment leaves either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sync state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sync state {path} is corrupt ({reason}); remove it or run `ldapgate sync rearm`")]
    Corrupt { path: PathBuf, reason: String },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_owned(),
        }
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
        let path = path.to_owned();
        move |source| StateError::Io { path, source }
    }

    /// Replaces `name` with `bytes`, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.write_with(name, |w| w.write_all(bytes))
    }

    /// Replaces `name` with what `fill` writes, atomically; large state is
    /// streamed to the file rather than built in memory first.
    pub fn write_with(
        &self,
        name: &str,
        fill: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(self.io(&tmp))?;
        let mut writer = std::io::BufWriter::new(file);
        fill(&mut writer).map_err(self.io(&tmp))?;
        let file = writer.into_inner().map_err(|e| StateError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(self.io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        // The rename itself is durable only once the directory is synced.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(&self.dir))
    }

    /// The contents of `name`, or None when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    pub fn remove(&self, name: &str) -> Result<bool, StateError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The JSON value in `name`, if the file exists. Parsed as it is read:
    /// a snapshot of a large directory is not held twice (file and value).
    pub fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        self.write_with(name, |w| {
            serde_json::to_writer(w, value).map_err(std::io::Error::other)
        })
    }
}

/// File holding the base DN's recorded fingerprint.
pub const BASE_FINGERPRINT: &str = "base_dn.json";

/// The stable id the base DN resolved to when sync first ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseFingerprint {
    /// The normalised base DN it was recorded for.
    pub base_dn: String,
    pub id: String,
    /// Seconds since the epoch.
    pub recorded_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_atomically_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&dir.path().join("nested"));
        assert_eq!(state.read("x").unwrap(), None);
        state.write("x", b"one").unwrap();
        state.write("x", b"two").unwrap();
        assert_eq!(state.read("x").unwrap().as_deref(), Some(&b"two"[..]));
        let names: Vec<_> = fs::read_dir(dir.path().join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["x"]);
        assert!(state.remove("x").unwrap());
        assert!(!state.remove("x").unwrap());
    }

    #[test]
    fn a_leftover_temporary_does_not_count_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        // What a kill between write and rename leaves behind.
        fs::write(dir.path().join(".base_dn.json.tmp"), b"{half").unwrap();
        assert_eq!(
            state
                .read_json::<BaseFingerprint>(BASE_FINGERPRINT)
                .unwrap(),
            None
        );
        fs::write(dir.path().join(BASE_FINGERPRINT), b"{half").unwrap();
        assert!(matches!(
            state.read_json::<BaseFingerprint>(BASE_FINGERPRINT),
            Err(StateError::Corrupt { .. })
        ));
    }
}
