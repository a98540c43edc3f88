//! Files the runtime writes and reads in places another local user may be able to reach: output
//! files, the runtime directory of status records and control commands, the cache directory.
//!
//! - Writes go to an exclusively created temporary file with a random name in the target's
//!   directory (never through a name someone could plant a link at), are flushed to disk, then
//!   renamed over the target. An existing target that is not a regular file (a device node, a
//!   FIFO, a directory, a symbolic link) is refused, never replaced. A write that fails or is
//!   abandoned removes its temporary file.
//! - Reads of files that should be small and regular (records, commands, stored settings) open
//!   without following links and without blocking, check the type and read at most a cap, so a
//!   planted FIFO cannot hang a reader and a link to `/dev/zero` cannot exhaust its memory.
//! - A private directory is one owned by the current user and not writable by anyone else; it is
//!   created with mode 0700.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Who may read a file once it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Mode 0644 for a new file (an output the user asked for); a replaced file keeps its mode.
    Shared,
    /// Mode 0600 (status records, commands, caches).
    Private,
}

/// A file being written: a hidden temporary file in the target's directory until
/// [`AtomicFile::commit`] renames it over the target. Dropped without a commit, it is removed.
pub struct AtomicFile {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// Starts writing `path`. Fails at once when the directory does not exist or `path` names
    /// something other than a regular file.
    pub fn create(path: &Path, visibility: Visibility) -> Result<Self> {
        let dir = parent_dir(path);
        let name = path
            .file_name()
            .ok_or_else(|| Error::Input(format!("{} is not a file path", path.display())))?;
        let existing_mode = check_replaceable(path)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = match (visibility, existing_mode) {
                (Visibility::Private, _) => 0o600,
                (Visibility::Shared, Some(mode)) => mode & 0o7777,
                (Visibility::Shared, None) => 0o644,
            };
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(tmp.path(), e))?;
        }
        #[cfg(not(unix))]
        let _ = (visibility, existing_mode);
        Ok(Self {
            target: path.to_path_buf(),
            tmp,
        })
    }

    /// The hidden temporary file's path (to remove it on an exit that skips destructors).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The file to write to.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Flushes the data to disk and renames the file over the target.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        // The target may have been swapped for something else since `create`: check again.
        check_replaceable(&target)?;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| Error::io(self.tmp.path(), e))?;
        self.tmp.persist(&target).map_err(|e| Error::io(&target, e.error))?;
        sync_dir(parent_dir(&target));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.as_file_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

/// Writes `bytes` to `path` atomically (see the module docs): readers see the old file or the
/// whole new one, and an error leaves no partial file behind.
pub fn write_atomic(path: &Path, bytes: &[u8], visibility: Visibility) -> Result<()> {
    let mut f = AtomicFile::create(path, visibility)?;
    f.file().write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

/// Opens `path` for a file written as it goes (a log that must be readable while the run lasts
/// and keep what it has if the run dies), truncating a regular file already there. Refuses, without
/// touching it, anything else at `path`: a symbolic link (not followed), a FIFO or device (opened
/// without blocking, then checked), a directory, or a regular file with other hard links (writing
/// through one would change another name's contents).
pub fn create_streamed(path: &Path, visibility: Visibility) -> Result<std::fs::File> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "output directory {} does not exist",
            dir.display()
        )));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
        opts.mode(match visibility {
            Visibility::Shared => 0o644,
            Visibility::Private => 0o600,
        });
    }
    #[cfg(not(unix))]
    let _ = visibility;
    let refuse = |what: &str| {
        Error::Input(format!(
            "refusing to write {}: it is {what}, not a regular file",
            path.display()
        ))
    };
    // Checked before opening as well: on some systems opening a link with O_NOFOLLOW is not an
    // error, and a directory must not be opened for writing at all.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(refuse(describe(&meta.file_type())));
        }
    }
    let file = opts.open(path).map_err(|e| {
        #[cfg(unix)]
        if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENXIO)) {
            // ELOOP: a link planted since the check; ENXIO: a FIFO nobody reads.
            return refuse("a symbolic link or a FIFO");
        }
        Error::io(path, e)
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(refuse(describe(&meta.file_type())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(refuse("a file with other hard links"));
        }
    }
    file.set_len(0).map_err(|e| Error::io(path, e))?;
    Ok(file)
}

/// A directory being written (`xlstm quantize`'s output): a hidden temporary directory next to
/// the target until [`AtomicDir::commit`] renames it to the target, so the target holds either
/// nothing or everything. Dropped without a commit, it is removed with everything in it.
pub struct AtomicDir {
    target: PathBuf,
    tmp: tempfile::TempDir,
}

impl AtomicDir {
    /// Starts writing directory `path`, which must not exist or be an empty directory (a
    /// symbolic link, a file or a directory with entries is refused).
    pub fn create(path: &Path) -> Result<Self> {
        check_empty_dir_target(path)?;
        let dir = parent_dir(path);
        let name = path
            .file_name()
            .ok_or_else(|| Error::Input(format!("{} is not a directory path", path.display())))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempdir_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(AtomicDir {
            target: path.to_path_buf(),
            tmp,
        })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes every file in the directory to disk, makes the directory readable by others
    /// (mode 0755), and renames it to the target (which must still be absent or empty).
    pub fn commit(self) -> Result<()> {
        let dir = self.tmp.path();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_file() {
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::io(dir, e))?;
        }
        check_empty_dir_target(&self.target)?;
        std::fs::rename(dir, &self.target).map_err(|e| Error::io(&self.target, e))?;
        // Renamed away: nothing is left for the guard to remove.
        let _ = self.tmp.keep();
        if let Ok(parent) = std::fs::File::open(parent_dir(&self.target)) {
            let _ = parent.sync_all();
        }
        Ok(())
    }
}

/// Refuses a directory target that exists and is anything but an empty directory.
fn check_empty_dir_target(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if !m.file_type().is_dir() => Err(Error::Input(format!(
            "{} exists and is {}, not an empty directory",
            path.display(),
            describe(&m.file_type())
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
            if entries.next().is_some() {
                return Err(Error::Input(format!(
                    "{} exists and is not empty (the output directory must not exist or be empty)",
                    path.display()
                )));
            }
            Ok(())
        }
    }
}

/// The directory a file path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks that `path` can name an output file: its directory exists and nothing but a regular
/// file is there (no directory, symbolic link, FIFO or device: outputs never replace or write
/// through those). Commands call this before any work, so a bad path fails at once, not after a
/// model run; the writers check again when they write.
pub fn check_output_path(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "output directory {} does not exist",
            dir.display()
        )));
    }
    if path.is_dir() || path.file_name().is_none() {
        return Err(Error::Input(format!(
            "output {} is a directory, not a file path",
            path.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(Error::Input(format!(
            "refusing to write {}: it is {}, not a regular file",
            path.display(),
            describe(&meta.file_type())
        ))),
        _ => Ok(()),
    }
}

/// Checks that an output can be written at `path`: its directory exists and `path` is either
/// absent or a regular file. Returns the existing file's mode (Unix), if any.
fn check_replaceable(path: &Path) -> Result<Option<u32>> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "output directory {} does not exist",
            dir.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                Ok(Some(meta.mode()))
            }
            #[cfg(not(unix))]
            Ok(None)
        }
        Ok(meta) => Err(Error::Input(format!(
            "refusing to replace {}: it is {}, not a regular file",
            path.display(),
            describe(&meta.file_type())
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// "a directory", "a symbolic link", ... for error messages.
pub fn describe(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable. Best effort: not every platform or file system can open or sync
    // a directory, and the data itself is already on disk.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// What [`read_regular`] accepts.
#[derive(Clone, Copy, Debug)]
pub struct ReadRules {
    /// Larger files are refused.
    pub max_bytes: u64,
    /// Only files owned by the current user are accepted (Unix).
    pub same_owner: bool,
}

/// Reads a small regular file without following a symbolic link at `path` and without blocking
/// on a FIFO or device, refusing anything that is not a regular file within `rules`.
pub fn read_regular(path: &Path, rules: ReadRules) -> std::io::Result<Vec<u8>> {
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(invalid(format!("{} is a symbolic link", path.display())));
    }
    let (file, meta) = open_regular(path, Links::Refuse)?;
    #[cfg(unix)]
    if rules.same_owner {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != current_uid() {
            return Err(invalid(format!(
                "{} is owned by uid {}, not by this user",
                path.display(),
                meta.uid()
            )));
        }
    }
    if meta.len() > rules.max_bytes {
        return Err(invalid(format!(
            "{} is {} bytes, more than the {} accepted",
            path.display(),
            meta.len(),
            rules.max_bytes
        )));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: read one byte past the cap to notice.
    file.take(rules.max_bytes + 1).read_to_end(&mut out)?;
    if out.len() as u64 > rules.max_bytes {
        return Err(invalid(format!(
            "{} grew past {} bytes",
            path.display(),
            rules.max_bytes
        )));
    }
    Ok(out)
}

/// Whether [`open_regular`] follows a symbolic link at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Files in directories another user may write (records, commands, caches).
    Refuse,
    /// The user's own inputs (model files are often links into a download cache).
    Follow,
}

/// Opens `path` for reading without blocking on a FIFO or device, and checks that what was
/// opened is a regular file. Returns the file and its metadata.
pub fn open_regular(path: &Path, links: Links) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let no_follow = if links == Links::Refuse { libc::O_NOFOLLOW } else { 0 };
        opts.custom_flags(no_follow | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    #[cfg(not(unix))]
    let _ = links;
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(invalid(format!(
            "{} is {}, not a regular file",
            path.display(),
            describe(&meta.file_type())
        )));
    }
    Ok((file, meta))
}

/// Reads a user-supplied input file (a model's JSON files, a token-id list): links are followed,
/// but a FIFO, a device or a file over `max_bytes` is refused instead of hanging or exhausting
/// memory.
pub fn read_input(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path, Links::Follow)?;
    if meta.len() > max_bytes {
        return Err(invalid(format!(
            "{} is {} bytes, more than the {} accepted",
            path.display(),
            meta.len(),
            max_bytes
        )));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_bytes {
        return Err(invalid(format!("{} grew past {} bytes", path.display(), max_bytes)));
    }
    Ok(out)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// The effective user id of this process.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (mode 0700, parents as needed) if it does not exist, then checks that it is a
/// directory, not a symbolic link, owned by the current user, and not writable by group or
/// others. The error says which check failed.
pub fn ensure_private_dir(dir: &Path) -> std::result::Result<(), String> {
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        match b.create(dir) {
            Ok(()) => {}
            // Someone else created it between the check and now: it is judged below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    check_private_dir(dir)
}

/// The checks of [`ensure_private_dir`] on an existing directory.
pub fn check_private_dir(dir: &Path) -> std::result::Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.file_type().is_dir() {
        return Err(format!(
            "{} is {}, not a directory",
            dir.display(),
            describe(&meta.file_type())
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != current_uid() {
            return Err(format!(
                "{} is owned by uid {}, not by this user (uid {})",
                dir.display(),
                meta.uid(),
                current_uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by others (mode {:o}); it must be private (0700)",
                dir.display(),
                meta.mode() & 0o777
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_regular_files_and_refuse_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.bin");
        write_atomic(&out, b"one", Visibility::Shared).unwrap();
        write_atomic(&out, b"two", Visibility::Shared).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(write_atomic(&sub, b"x", Visibility::Shared).is_err());
        #[cfg(unix)]
        {
            let victim = dir.path().join("victim");
            std::fs::write(&victim, b"keep").unwrap();
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&victim, &link).unwrap();
            let e = write_atomic(&link, b"x", Visibility::Shared).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        }
        // No temporary file is left behind, on success or on refusal.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn abandoned_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.bin");
        let mut f = AtomicFile::create(&out, Visibility::Private).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn streamed_files_truncate_regular_files_and_refuse_links_fifos_devices_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.csv");
        std::fs::write(&log, b"old contents").unwrap();
        let mut f = create_streamed(&log, Visibility::Shared).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&log).unwrap(), b"new");

        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = create_streamed(&link, Visibility::Shared).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = create_streamed(&hard, Visibility::Shared).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = create_streamed(&fifo, Visibility::Shared).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = create_streamed(Path::new("/dev/null"), Visibility::Shared).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(create_streamed(dir.path(), Visibility::Shared).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn reads_refuse_links_fifos_devices_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let rules = ReadRules {
            max_bytes: 16,
            same_owner: true,
        };
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"small").unwrap();
        assert_eq!(read_regular(&ok, rules).unwrap(), b"small");
        let big = dir.path().join("big");
        std::fs::write(&big, [0u8; 17]).unwrap();
        assert!(read_regular(&big, rules).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert!(read_regular(&link, rules).is_err());
        assert!(read_regular(Path::new("/dev/zero"), rules).is_err());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_regular(&fifo, rules).is_err(), "a FIFO must not block the reader");
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_are_created_0700_and_open_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("a").join("rt");
        ensure_private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_private_dir(&d).unwrap_err().contains("writable by others"));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_private_dir(&link).unwrap_err().contains("symbolic link"));
    }
}
