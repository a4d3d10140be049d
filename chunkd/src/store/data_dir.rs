//! Housekeeping of the data directory, below the chunk level: the process lock, the node id,
//! small files replaced atomically, directories created durably, sorted listings, and the size
//! of the file system. Blocking, like everything in [`super`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{io_err, StoreError};

/// Takes an exclusive flock on `root/lock`, held until the returned file is closed (also by
/// the kernel when the process dies, so a crashed node never blocks its restart).
pub(super) fn lock_data_dir(root: &Path) -> Result<File, StoreError> {
    let path = root.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StoreError::Locked {
                path: root.to_owned(),
            });
        }
        return Err(io_err("locking", &path)(err));
    }
    Ok(file)
}

pub(super) fn load_or_create_node_id(root: &Path) -> Result<String, StoreError> {
    let path = root.join("node_id");
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(StoreError::Io {
                    context: "invalid node id in",
                    path,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "expected letters, digits and '-'; restore the file or remove it to make this a new node",
                    ),
                });
            }
            Ok(id.to_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_file_atomically(root, "node_id", format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(io_err("reading", &path)(e)),
    }
}

/// Writes `dir/name` so that a crash leaves either the old or the new content.
pub(super) fn write_file_atomically(
    dir: &Path,
    name: &str,
    content: &[u8],
) -> Result<(), StoreError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    file.write_all(content).map_err(io_err("writing", &tmp))?;
    file.sync_all().map_err(io_err("fsyncing", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
    fsync_dir(dir)
}

/// Creates `dir` if missing and makes its entry durable in its parent.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("creating directory", dir)(e)),
    }
}

/// Creates `dir` if missing; the caller makes the new entry durable (fsync of the parent).
pub(super) fn create_dir_if_missing(dir: &Path) -> Result<(), StoreError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("creating directory", dir)(e)),
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing directory", dir))
}

pub(super) fn empty_dir(dir: &Path) -> Result<(), StoreError> {
    for name in sorted_names(dir)? {
        let path = dir.join(name);
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(io_err("removing leftover", &path))?;
    }
    Ok(())
}

/// Whether `name` can be a fan-out directory: two lowercase hex characters.
pub(super) fn is_fanout_name(name: &str) -> bool {
    name.len() == 2 && crate::wire::is_lower_hex(name)
}

/// Names in `dir`, sorted; an absent directory (or a file where a directory was expected)
/// is empty.
pub(super) fn sorted_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

pub(super) fn filesystem_size(path: &Path) -> Result<u64, StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| StoreError::Io {
            context: "measuring the file system of",
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        })?;
    // SAFETY: statvfs writes into the zeroed struct we pass; c_path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io_err("measuring the file system of", path)(
            io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_blocks as u64 * stat.f_frsize as u64)
}
