//! Reading a topology file from disk, the one way every command and the
//! watcher do it: only regular files, and never more than the size cap,
//! counted while reading (a device, a FIFO or `/proc` file reports size 0,
//! and a file can grow between a `stat` and a read).

use super::yaml::MAX_FILE_BYTES;
use std::io::Read;
use std::path::Path;

/// Why a topology file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: cannot read: {kind}, not a regular file")]
    NotAFile { file: String, kind: &'static str },
    #[error("{file}: too large; {what} are limited to {} MiB", cap >> 20)]
    TooLarge {
        file: String,
        what: &'static str,
        cap: usize,
    },
}

/// Reads `path` (symlinks followed) into memory: at most `MAX_FILE_BYTES`,
/// never blocking on a FIFO that has no writer.
pub fn read_topology(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_capped(path, MAX_FILE_BYTES, "topology files")
}

/// A CA bundle is kilobytes; the cap keeps `ca: /dev/zero` harmless.
pub const MAX_CA_BYTES: usize = 1024 * 1024;

/// Reads a `ca:` certificate bundle, bounded like a topology file.
pub fn read_certificate(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_capped(path, MAX_CA_BYTES, "certificate files")
}

fn read_capped(path: &Path, cap: usize, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let file = path.display().to_string();
    let io = |source| ReadError::Io {
        file: file.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer; non-blocking open
    // returns at once, and the type check below refuses it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let handle = options.open(path).map_err(io)?;
    // The type of what was opened, not of what the path named a moment ago.
    let metadata = handle.metadata().map_err(io)?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotAFile {
            file,
            kind: describe(&kind),
        });
    }
    // Sized by the file (never past the cap): growing by doubling would
    // leave up to twice the file's size allocated for the whole check.
    let size = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(size.min(cap) + 1);
    handle
        .take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > cap {
        return Err(ReadError::TooLarge { file, what, cap });
    }
    Ok(bytes)
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        return "a directory";
    }
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let e = read_topology(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, ReadError::NotAFile { .. }), "{e}");
        assert!(e.to_string().starts_with("/dev/zero: "), "{e}");
        let e = read_topology(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn the_cap_is_counted_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_capped(&path, 10, "t").unwrap().len(), 10);
        let e = read_capped(&path, 9, "t").unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
    }
}
