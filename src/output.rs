//! One rule for every file a user names as output (`store export`,
//! `report --out`/`--plots`, the trace pages of `program run` and `show`):
//! never inside the store, never through a symbolic link or onto a device,
//! a folder or a pipe, never over an existing file without `--force`, and
//! written through a synced temporary file and a rename, so that a failed
//! write leaves nothing half-written.

use std::path::{Path, PathBuf};

/// Why a user-named output was refused or could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to {}: {why}", path.display())]
pub struct OutputError {
    /// The file the user named.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

/// Why `file` may not be written, if it may not. `store` is the store
/// folder of the command (checked whether or not it exists yet).
pub fn check(file: &Path, force: bool, store: Option<&Path>) -> Result<(), OutputError> {
    let refuse = |why: String| {
        Err(OutputError {
            path: file.to_path_buf(),
            why,
        })
    };
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(dir) = dir.canonicalize() else {
        return refuse("its folder does not exist".into());
    };
    if let Some(root) = store.and_then(|s| s.canonicalize().ok()) {
        if dir.starts_with(&root) {
            return refuse(format!(
                "it is inside the store {} (outputs are written outside it)",
                root.display()
            ));
        }
    }
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => refuse(e.to_string()),
        Ok(m) if m.file_type().is_symlink() => {
            refuse("it is a symbolic link (outputs are regular files only)".into())
        }
        Ok(m) if !m.is_file() => refuse(format!(
            "it is {} (outputs are regular files only)",
            if m.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, a pipe or a socket)"
            }
        )),
        Ok(_) if !force => refuse("it exists; --force replaces it".into()),
        Ok(_) => Ok(()),
    }
}

/// Refuses a folder for outputs (made when missing) that is, or would be,
/// inside the store.
pub fn check_folder(dir: &Path, store: Option<&Path>) -> Result<(), OutputError> {
    let Some(root) = store.and_then(|s| s.canonicalize().ok()) else {
        return Ok(());
    };
    // The nearest folder that exists decides where the new ones go.
    let mut at = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    loop {
        if let Ok(c) = at.canonicalize() {
            if c.starts_with(&root) {
                return Err(OutputError {
                    path: dir.to_path_buf(),
                    why: format!(
                        "it is inside the store {} (outputs are written outside it)",
                        root.display()
                    ),
                });
            }
            return Ok(());
        }
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ if at != Path::new(".") => at = Path::new("."),
            _ => return Ok(()),
        }
    }
}

/// Checks `file` by [`check`], then writes `bytes` to it atomically.
pub fn write(
    file: &Path,
    bytes: &[u8],
    force: bool,
    store: Option<&Path>,
) -> Result<(), OutputError> {
    check(file, force, store)?;
    write_atomic(file, bytes).map_err(|e| OutputError {
        path: file.to_path_buf(),
        why: e.to_string(),
    })
}

/// Writes `bytes` to `path` through a synced temporary file of vpd's own
/// beside it and a rename; the temporary file is removed when it fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_written_and_an_old_one_only_with_force() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.html");
        write(&f, b"one", false, None).unwrap();
        let e = write(&f, b"two", false, None).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        write(&f, b"two", true, None).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let st = d.path().join("st");
        std::fs::create_dir_all(st.join("db")).unwrap();
        let e = write(&st.join("db/conf"), b"x", true, Some(&st)).unwrap_err();
        assert!(e.to_string().contains("inside the store"), "{e}");
        assert!(!st.join("db/conf").exists());
    }
}
